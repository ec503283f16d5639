"""Warm-started rebuilds: retrain on a grown catalog without reshuffling the IDs.

A fresh build of a grown catalog starts its k-means and codebooks from scratch,
so code numbers come out in a new order and almost every item's ID moves, even
where the new model groups items exactly as the old one did. A rebuild with a
previous export (``build --previous DIR``, ``SemanticIDs.fit(..., previous=DIR)``)
keeps them in four steps:

1. **Warm start** (:func:`warm_init`, :func:`anchor_codes`): the new RQ-VAE
   starts from the old one's weights, buffers and codebooks instead of k-means;
   the k-means first level keeps the old centroids (``WARM_FIRST_LEVEL_ITERS``
   Lloyd iterations may refine them); training then runs as usual, at a
   hundredth of the learning rate (``WARM_LR_SCALE``), with the old items
   anchored: they are quantized to their old codes instead of the nearest, so
   the codebooks and the encoder keep serving them there.
2. **Alignment** (:func:`align_levels`): training may still swap what two codes
   stand for (a dead-code restart, a drifting centroid). Per level, the codes
   are matched to the old ones by maximum co-assignment: ``C[i, j]`` counts the
   items present in both builds with old code ``i`` and new code ``j``, and the
   Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) picks the
   permutation that keeps the most items' codes at that level. The codebook rows
   are permuted accordingly, so the saved model and the codes agree. Each level's
   codebook is global (the same for every prefix), so a permutation of one level
   changes no other level's codes.
3. **Hysteresis** (:func:`sticky_codes`): the deepest codes sit near ties, so
   even gentle training flips many. An old item keeps its old code at a level
   while that code is nearly as close as the nearest (``STICKY_MARGIN``); new
   items, and old items that moved farther, get the model's nearest codes. As
   with the balanced collision strategy, an exported code is then not always the
   nearest one.
4. **Counter carry-over** (:func:`carry_over_counter`): an old item whose model
   codes did not change keeps its collision number (it is free: old IDs were
   unique); new items, and old items whose codes changed, take the smallest free
   numbers of their group in ascending item-id order.

Everything is deterministic: the same catalog, embeddings, previous export, config
and seed give byte-identical ``semantic_ids.parquet`` and ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from ..resolve import Resolution, number_collisions
from ...config import ModelConfig
from ...model.kmeans import lloyd
from ...model.sizing import sized_model
from ...model.keys import kept_prefixes, rows_of
from ...errors import ExportError

log = logging.getLogger(__name__)

# How the three constants below were chosen, with the one-off measurements behind
# them: docs/warmstart.md, "How the constants were chosen".
# A warm start fine-tunes a trained model: both learning rates are scaled by this.
# AdamW steps are about lr in size whatever the gradient, and the deepest codes sit
# near ties, so a larger step flips more of them; a smaller one collides more.
WARM_LR_SCALE = 0.01
# Lloyd iterations that refine the old level-1 centroids on the new catalog (0: keep
# them). Moving a centroid shifts the residual of every item under it, hence its
# deeper codes.
WARM_FIRST_LEVEL_ITERS = 0
# Hysteresis of the final codes (:func:`sticky_codes`): an old item keeps its old code
# at a level while its squared distance is at most (1 + margin) times the nearest
# code's. A larger margin keeps more IDs and lets more items sit off their nearest code.
STICKY_MARGIN = 1.0


def load_previous(path: str | Path):
    """The previous export (:class:`~semantic_ids.export.Export`), checksums verified.

    Raises :class:`~semantic_ids.export.ExportError` naming ``path`` when it is
    missing or not an export, or for a model a warm start cannot
    continue (``method = "rq-kmeans"`` has no trained weights to start from).
    """
    from ...export.io import ExportError, read_export

    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: previous export not found")
    exp = read_export(path)
    if exp.config.model.method != "rqvae":
        raise ExportError(f"{path}: a warm start needs an RQ-VAE export, this one used method={exp.config.model.method!r}")
    return exp


def warm_model_config(model: ModelConfig, previous: ModelConfig, path: str | Path) -> ModelConfig:
    """The model config of a warm-started rebuild on the ``previous`` export's model config:
    its codebook sizes when ``model`` leaves them unset (:func:`~semantic_ids.model.sizing.choose_codebook_sizes`);
    any other difference from the previous model (sizes, layers, first level...) is
    refused, naming the fields."""
    model = sized_model(model, previous=previous)
    diff = [
        f"{f.name}={getattr(model, f.name)!r} (previous {getattr(previous, f.name)!r})"
        for f in dataclasses.fields(ModelConfig)
        if tuple_or(getattr(model, f.name)) != tuple_or(getattr(previous, f.name))
    ]
    if diff:
        raise ExportError(f"{path}: the previous export's model differs from this build's: {', '.join(diff)}; "
                         "a warm start needs the same model config")
    return model


def tuple_or(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def check_input_dim(previous, dim: int, path: str | Path) -> None:
    """The previous export's model (``previous``) must take inputs of this build's dimension."""
    if int(previous.input_dim) != int(dim):
        raise ExportError(f"{path}: the previous export's model takes inputs of dim {previous.input_dim}, "
                         f"this build's embeddings have dim {dim}; a warm start needs the same embedding model "
                         "(and sequences fused in both builds or in neither)")


@torch.no_grad()
def warm_init(model, previous, x: torch.Tensor, *, iters: int | None = None) -> torch.Tensor | None:
    """Start ``model`` from ``previous`` (same architecture) for training on ``x`` (N, D).

    Copies every weight and buffer, marks the codebooks initialised (no k-means
    init), and with the k-means first level refines the old centroids with up to
    ``iters`` Lloyd iterations on ``x`` (default ``WARM_FIRST_LEVEL_ITERS``;
    the old residual scale is kept). Returns
    the level-1 codes of ``x`` (k-means first level) or None. The experiment
    switches that shape the model must match the previous model's (ValueError).
    """
    diff = [
        f"experimental.{name}={getattr(model.experimental, name)!r} (previous {getattr(previous.experimental, name)!r})"
        for name in ("layer_norm_residuals", "normalize_latent")
        if getattr(model.experimental, name) != getattr(previous.experimental, name)
    ]
    if diff:
        raise ExportError(f"the previous export's model differs from this build's: {', '.join(diff)}; "
                         "a warm start needs the same model config")
    model.load_state_dict(previous.state_dict())
    q = model.quantizer
    q.initialized.fill_(True)
    q.usage.zero_()
    if not model.kmeans_first:
        return None
    iters = WARM_FIRST_LEVEL_ITERS if iters is None else iters
    model.first_codebook.copy_(lloyd(x, previous.first_codebook.detach().clone(), iters))
    # the residual scale stays the old one: the encoder's inputs keep their meaning
    return model.first_codes(x)


def matching(old: np.ndarray, new: np.ndarray, k: int, old_book=None, new_book=None) -> np.ndarray:
    """Permutation ``p`` (k,) of one level's codes: new code ``j`` becomes ``p[j]``.

    Maximises the number of items whose code at this level is unchanged (``old``,
    ``new``: (M,) codes of the items both builds hold). Codes no common item
    uses are paired by codebook-vector distance when the books are given (a tie
    breaker far below one item), else in index order.
    """
    from scipy.optimize import linear_sum_assignment

    counts = np.zeros((k, k), dtype=np.float64)  # [new, old]
    np.add.at(counts, (np.asarray(new, np.int64), np.asarray(old, np.int64)), 1.0)
    cost = -counts
    if old_book is not None and new_book is not None:
        d = torch.cdist(new_book.double(), old_book.double()).numpy()
        cost = cost + 1e-3 * d / max(float(d.max()), 1e-12)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(k, dtype=np.int64)
    perm[rows] = cols
    return perm


@torch.no_grad()
def align_levels(model, previous, x_common: torch.Tensor, old_codes: np.ndarray) -> list[np.ndarray]:
    """Permute ``model``'s codebooks, level by level, so its codes of ``x_common``
    agree with ``old_codes`` (M, L) (the previous export's model codes of those
    items) as often as possible. Returns the permutation of each level (new -> old)."""
    from ..encode import encode_all

    new_codes = encode_all(model, x_common).numpy() if len(x_common) else np.zeros((0, model.n_levels), np.int64)
    perms = []
    old_books, new_books = previous.code_books(), model.code_books()
    for lvl, k in enumerate(model.codebook_sizes):
        perm = matching(old_codes[:, lvl], new_codes[:, lvl], k, old_books[lvl], new_books[lvl])
        inverse = np.argsort(perm)  # old index -> new row
        idx = torch.from_numpy(inverse)
        if model.kmeans_first and lvl == 0:
            model.first_codebook.copy_(model.first_codebook[idx].clone())
        else:
            book = model.quantizer.codebooks[lvl - model.fixed_levels]
            book.data.copy_(book.data[idx].clone())
        perms.append(perm)
    moved = [int((p != np.arange(len(p))).sum()) for p in perms]
    log.info("aligned codes with the previous export: %s codes renumbered per level", moved)
    return perms


def carry_over_counter(raw: np.ndarray, ids: np.ndarray, old_ids, old_codes: np.ndarray) -> Resolution:
    """Collision level that keeps old items' numbers where their model codes did not change.

    Parameters
    ----------
    raw : (N, L) model codes of this build's items.
    ids : (N,) their ids.
    old_ids : (M,) ids of the previous export (or an :class:`~semantic_ids.model.keys.IdRows` of them).
    old_codes : (M, L + 1) the previous export's resolved codes.

    An item whose id and L model codes are those of an old item keeps that
    item's number (old full IDs are unique, so keepers never clash); the other
    items of each group take the free numbers 0, 1, 2... that no keeper holds, in
    ascending item-id order: :func:`~semantic_ids.stages.resolve.number_collisions`
    with ``keep``. Without keepers this is exactly
    :func:`~semantic_ids.stages.resolve.resolve_counter`.
    """
    raw = np.asarray(raw, dtype=np.int64)
    n, L = raw.shape
    old_codes = np.asarray(old_codes, dtype=np.int64)
    row = common_rows(ids, old_ids)
    has_old = row >= 0
    keep = np.full(n, -1, dtype=np.int64)
    if n and old_codes.shape[1] == L + 1:
        keeper = has_old.copy()
        keeper[has_old] = (raw[has_old] == old_codes[row[has_old], :L]).all(axis=1)
        keep[keeper] = old_codes[row[keeper], L]
    return number_collisions(raw, ids, keep=keep)


def common_rows(ids: np.ndarray, old_ids) -> np.ndarray:
    """For each id, its row in ``old_ids`` (ids, or an :class:`~semantic_ids.model.keys.IdRows`
    built once) or -1 (ids of another type never match)."""
    return rows_of(ids, old_ids, missing="-1")


def kept_shares(new_codes: np.ndarray, row: np.ndarray, old_codes: np.ndarray) -> dict:
    """How many of the items both builds hold kept their ID and each prefix."""
    m, kept = kept_prefixes(new_codes, row, old_codes)
    out = {"common_items": m}
    if m == 0 or new_codes.shape[1] != old_codes.shape[1]:
        return out
    out["kept_prefix"] = [round(k, 6) for k in kept]
    out["kept_full_id"] = out["kept_prefix"][-1]
    return out


def previous_codes_of(ids: np.ndarray, previous) -> tuple[np.ndarray, np.ndarray]:
    """Rows of this build (positions in ``ids``) that the previous export holds,
    and those items' previous model codes (M, L)."""
    row = common_rows(ids, previous.ids)
    pos = np.flatnonzero(row >= 0)
    return pos, previous.codes[row[pos], :-1]



def anchor_codes(ids: np.ndarray, previous) -> np.ndarray:
    """(N, L) int64: each item's previous model codes, -1 for items the previous
    export does not hold. Training uses these instead of the nearest codes
    (:func:`semantic_ids.train.train_rqvae`'s ``anchor``), so the retrained model
    learns to keep serving old items where they were."""
    pos, codes = previous_codes_of(ids, previous)
    out = np.full((len(ids), previous.codes.shape[1] - 1), -1, dtype=np.int64)
    out[pos] = codes
    return out


@torch.no_grad()
def sticky_codes(model, x: torch.Tensor, old: np.ndarray, margin: float, nearest_codes: np.ndarray | None = None) -> np.ndarray:
    """Model codes (N, L) of ``x`` where an old item keeps its old code at a level
    when that code is nearly as close as the nearest one (hysteresis).

    ``old`` (N, L): each row's previous model codes, -1 for new items. Level by
    level, with the prefix chosen so far, an old item keeps its old code ``o``
    when ``d(r, o) <= (1 + margin) * d(r, nearest)`` (squared distances, as the
    quantizer compares them); new items, and old items whose old code is farther,
    take the nearest code, exactly as :meth:`RQVAE.encode`. ``margin = 0`` keeps
    only exact ties, i.e. gives the model's own codes. ``nearest_codes``: the model's
    own codes of ``x`` when the caller has them (``encode_all(model, x)``).
    """
    from ...model.kmeans import nearest, sq_dists
    from ..encode import encode_all

    codes = (encode_all(model, x).numpy() if nearest_codes is None else nearest_codes).copy()
    if margin <= 0 or len(x) == 0:
        return codes
    old = torch.from_numpy(np.asarray(old, dtype=np.int64))
    fixed = model.fixed_levels
    if fixed:  # the k-means first level: the old centroid when nearly as close
        d = sq_dists(x, model.first_codebook)
        codes[:, 0] = _prefer_old(d, old[:, 0], nearest(x, model.first_codebook), margin).numpy()
    first = torch.from_numpy(codes[:, 0]) if fixed else None
    z = torch.cat([model.latent(x[s : s + 65536], None if first is None else first[s : s + 65536])
                   for s in range(0, len(x), 65536)])
    q = model.quantizer
    residual = z
    for n in range(q.n_levels):
        book = q.codebooks[n].detach()
        d = q.level_distances(residual, n)
        chosen = _prefer_old(d, old[:, fixed + n], q.level_codes(residual, n), margin)  # the quantizer's own rule
        codes[:, fixed + n] = chosen.numpy()
        residual = residual - book[chosen]
    return codes


def _prefer_old(d: torch.Tensor, old: torch.Tensor, nearest_: torch.Tensor, margin: float) -> torch.Tensor:
    """Per row of squared distances ``d`` (N, K), the old code where it is within
    ``(1 + margin)`` of the nearest code's distance, else the nearest."""
    rows = torch.arange(len(d))
    o = old.clamp_min(0)
    keep = (old >= 0) & (d[rows, o] <= (1.0 + margin) * d[rows, nearest_])
    return torch.where(keep, o, nearest_)

