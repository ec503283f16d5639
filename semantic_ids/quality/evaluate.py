"""Quality of a set of semantic IDs, with definitions that compare across tools.

- collision rate over the first n levels = 1 − distinct n-code tuples / items;
- purity at depth d = Σ over prefix groups of the count of the group's most
  common label / items; chance purity = the mean purity of the same groups
  (same sizes) over 20 seeded random shuffles of the labels, so a purity near it
  means nothing (a group of one item is always pure); NMI between prefix groups
  and labels (arithmetic mean);
- neighbour share at depth d = mean over items of the share of their 10 nearest
  embedding neighbours (cosine) whose prefix of depth d equals theirs;
- co-interaction share at depth d = share of consecutive pairs (a, b) in user
  sequences whose prefixes are equal; lift = share / Σ_g p_g², p_g the share of
  items in prefix group g (the share expected by chance).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..model.keys import rows_of
from ..stages.metrics import code_stats
from ..errors import CatalogError, SequenceError

log = logging.getLogger(__name__)


def prefix_groups(codes: np.ndarray, depth: int) -> np.ndarray:
    """Group number of each item's first ``depth`` codes, (N, L) -> (N,)."""
    _, inverse = np.unique(np.ascontiguousarray(codes[:, :depth]), axis=0, return_inverse=True)
    return inverse.ravel()


def purity(groups: np.ndarray, labels: np.ndarray) -> float:
    frame = pd.DataFrame({"g": groups, "y": labels})
    top = frame.groupby(["g", "y"], sort=False).size().groupby(level=0).max()
    return float(top.sum() / len(frame))


def chance_purity(groups: np.ndarray, labels: np.ndarray, *, rounds: int = 20, seed: int = 0) -> float:
    """Expected purity of a random assignment with the same group sizes.

    Estimated as the mean purity over ``rounds`` seeded shuffles of ``labels``
    (N,) against ``groups`` (N,); deterministic for a given seed.
    """
    if len(groups) == 0:
        return float("nan")
    _, g = np.unique(groups, return_inverse=True)
    _, y = np.unique(labels.astype(str) if labels.dtype == object else labels, return_inverse=True)
    g, y = g.ravel().astype(np.int64), y.ravel().astype(np.int64)
    n_labels = int(y.max()) + 1
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(rounds):
        key, counts = np.unique(g * n_labels + rng.permutation(y), return_counts=True)
        top = np.zeros(int(g.max()) + 1, dtype=np.int64)
        np.maximum.at(top, key // n_labels, counts)
        total += top.sum() / len(g)
    return float(total / rounds)


def nmi(groups: np.ndarray, labels: np.ndarray) -> float:
    """Normalised mutual information, arithmetic-mean normalisation."""
    _, g = np.unique(groups, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    n = len(g)
    joint = pd.Series(1, index=pd.MultiIndex.from_arrays([g, y])).groupby(level=[0, 1]).sum()
    pg = np.bincount(g) / n
    py = np.bincount(y) / n
    pij = joint.to_numpy() / n
    gi = joint.index.get_level_values(0).to_numpy()
    yi = joint.index.get_level_values(1).to_numpy()
    mi = float((pij * np.log(pij / (pg[gi] * py[yi]))).sum())
    hg = float(-(pg[pg > 0] * np.log(pg[pg > 0])).sum())
    hy = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    return 0.0 if hg + hy == 0 else 2 * mi / (hg + hy)


def neighbour_share(codes: np.ndarray, embeddings: np.ndarray, depths: Sequence[int] = (1, 2), k: int = 10) -> dict[int, float]:
    """Share of each item's k nearest embedding neighbours that share its prefix."""
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, nn = index.search(x, min(k + 1, len(x)))
    # Drop the item itself wherever it landed (duplicates can push it off
    # column 0), keep k neighbours, ignore -1 (fewer than k others exist).
    rows = np.arange(len(x))[:, None]
    keep = (nn != rows) & (nn >= 0)
    keep &= np.cumsum(keep, axis=1) <= k
    out = {}
    for d in depths:
        g = prefix_groups(codes, d)
        same = (g[np.maximum(nn, 0)] == g[:, None]) & keep
        per_item = same.sum(1) / np.maximum(keep.sum(1), 1)
        has = keep.sum(1) > 0
        out[d] = float(per_item[has].mean()) if has.any() else float("nan")
    return out


def co_interaction(codes: np.ndarray, pairs: np.ndarray, depths: Sequence[int] = (1, 2)) -> dict[int, dict[str, float]]:
    """Share of consecutive pairs (rows of ``pairs``) whose prefixes are equal, and its lift."""
    out = {}
    n = len(codes)
    for d in depths:
        g = prefix_groups(codes, d)
        share = float((g[pairs[:, 0]] == g[pairs[:, 1]]).mean()) if len(pairs) else float("nan")
        p = np.bincount(g) / n
        chance = float((p**2).sum())
        out[d] = {"share": share, "lift": share / chance if chance else float("nan")}
    return out


def sequence_pairs(sequences: str | Path, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Consecutive (row, row) pairs of the users' sequences (the strict reader,
    :func:`semantic_ids.stages.sequences.read_sequences`), rows into ``ids``.

    Item ids that ``ids`` lacks are skipped (a partial catalog), and a pair that
    touches one is dropped (its neighbours are not consecutive); the number of
    such unknown occurrences is returned. Anything else the reader refuses (a bad
    line, a duplicate user, an id that is not an integer or a string) raises
    :class:`~semantic_ids.stages.sequences.SequenceError`.
    """
    from ..stages.sequences import read_sequences

    seqs = read_sequences(sequences, ids, min_length=1, unknown="skip")
    rows = [s for s in seqs.items if len(s) > 1]
    a = np.concatenate([s[:-1] for s in rows]) if rows else np.zeros(0, np.int64)
    b = np.concatenate([s[1:] for s in rows]) if rows else np.zeros(0, np.int64)
    ok = (a >= 0) & (b >= 0)
    return np.column_stack([a[ok], b[ok]]).astype(np.int64), seqs.n_unknown


def category_labels(frame: pd.DataFrame, column: str | None = None) -> tuple[str, np.ndarray] | None:
    """Labels for purity/NMI: a list column joined with " > " (the full path), or a
    string column; missing values and empty lists give ``None`` (left out of
    purity and NMI). ``None`` when the catalog has no category column."""
    candidates = [column] if column else [c for c in ("categories", "category", "genres", "genre") if c in frame.columns]
    for col in candidates:
        if col not in frame.columns:
            raise CatalogError(f"category column {col!r} not in the catalog; columns are {list(frame.columns)}")
        values = frame[col].tolist()
        labels = []
        for v in values:
            if isinstance(v, (list, tuple, np.ndarray)):
                parts = [str(x) for x in v if x is not None and not (isinstance(x, float) and np.isnan(x))]
                labels.append(" > ".join(parts) if parts else None)
            elif v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
                labels.append(None)
            else:
                labels.append(str(v))
        return col, np.asarray(labels, dtype=object)
    return None


def evaluate_codes(
    codes: np.ndarray,
    codebook_sizes: Sequence[int],
    *,
    labels: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    pairs: np.ndarray | None = None,
    depths: Sequence[int] = (1, 2),
) -> dict:
    """Every metric above for model codes (N, L) (without the collision level)."""
    codes = np.asarray(codes, dtype=np.int64)
    out: dict = code_stats(codes, tuple(codebook_sizes))
    if labels is not None:
        labelled = np.array([v is not None for v in labels], dtype=bool)
        out["n_labelled"] = int(labelled.sum())
        for d in depths:
            g = prefix_groups(codes, d)[labelled]
            out[f"purity@{d}"] = purity(g, labels[labelled]) if labelled.any() else float("nan")
            out[f"chance_purity@{d}"] = chance_purity(g, labels[labelled]) if labelled.any() else float("nan")
            out[f"nmi@{d}"] = nmi(g, labels[labelled]) if labelled.any() else float("nan")
    if embeddings is not None:
        for d, v in neighbour_share(codes, embeddings, depths).items():
            out[f"neighbour_share@{d}"] = v
    if pairs is not None:
        for d, v in co_interaction(codes, pairs, depths).items():
            out[f"co_share@{d}"] = v["share"]
            out[f"lift@{d}"] = v["lift"]
    return out


def evaluate_export(
    export_dir: str | Path,
    *,
    catalog,
    sequences: str | Path | None = None,
    embeddings: str | Path | np.ndarray | None = None,
    category_column: str | None = None,
    show_progress: bool = True,
) -> dict:
    """Evaluate an export against its catalog (labels, embeddings) and user sequences.

    Embeddings come from ``embeddings`` or are computed with the export's own
    model and settings (through the cache). Rows are matched by item id.
    """
    from ..runners.estimator import SemanticIDs
    from ..stages.catalog import load_catalog
    from ..stages.embed import item_embeddings

    sid = SemanticIDs.load(export_dir, show_progress=show_progress)
    cat = load_catalog(catalog, sid.config_.catalog)
    rows = export_rows(sid.ids_, cat)  # fail before embedding
    emb = item_embeddings(cat.ids, cat.texts, sid.config_.embedding, given=embeddings,
                          id_column=sid.config_.catalog.id_column, show_progress=show_progress)[0]
    emb = sid.features(emb, cat.ids)  # the model's input space (text and behaviour for builds with sequences)
    return evaluate_catalog(
        rows, sid.codes_, sid.model_.codebook_sizes, cat, embeddings=emb, sequences=sequences,
        category_column=category_column, reconstruction_mse=sid.metrics_.get("reconstruction_mse"),
    )


def export_rows(ids: np.ndarray, cat) -> np.ndarray:
    """The export row of each catalog item; a ValueError names items the export lacks."""
    return rows_of(cat.ids, ids, what="catalog item(s) are not in the export")


def evaluate_catalog(
    rows: np.ndarray,
    codes: np.ndarray,
    codebook_sizes: Sequence[int],
    cat,
    *,
    embeddings: np.ndarray | None,
    sequences: str | Path | None = None,
    category_column: str | None = None,
    reconstruction_mse: float | None = None,
) -> dict:
    """Evaluate an export's resolved ``codes`` (N, L + 1) against a loaded catalog
    ``cat``: ``rows`` = :func:`export_rows`, the export row of each catalog item;
    ``embeddings`` in the catalog's order."""
    found = category_labels(cat.frame, category_column)
    pairs, unknown = sequence_pairs(sequences, cat.ids) if sequences else (None, 0)
    out = evaluate_codes(
        codes[rows, :-1],
        codebook_sizes,
        labels=found[1] if found else None,
        embeddings=embeddings,
        pairs=pairs,
    )
    out["reconstruction_mse"] = reconstruction_mse
    out["category_column"] = found[0] if found else None
    # every metric above covers only the catalog's items: say how many of the export's
    out["n_scored"] = int(len(rows))
    out["n_export_items"] = int(len(codes))
    if len(rows) < len(codes):
        log.warning("evaluated %d of the export's %d items (the catalog covers only those)", len(rows), len(codes))
    if sequences:
        out["sequence_pairs"] = int(len(pairs))
        out["sequence_items_not_in_catalog"] = unknown
    return out
