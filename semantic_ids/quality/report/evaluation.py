"""What the report measures: its inputs (export, catalog, embeddings, baselines) and numbers.

Everything here is plain data for :mod:`.html` and :mod:`.plots`: the quality
table (``metrics.json``, or :func:`semantic_ids.evaluate.evaluate_catalog` when
a catalog is given), the raw model codes behind the collision plot, the
baseline rows for the export's catalog and this export's values in their
columns, and the churn since a previous export (:mod:`semantic_ids.churn`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..churn import ChurnReport, churn
from ...export.io import Export
from ...errors import ReportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quality:
    """The quality table and where it comes from.

    Attributes
    ----------
    values : metric name -> value (``metrics.json`` keys, or ``evaluate_catalog``'s).
    source : one sentence naming the source, shown above the table.
    evaluated : True when measured against a catalog now, False for build-time metrics.
    inputs : (N, D) float32 model inputs in the export's item set (any order), or None;
        lets the raw codes of a rebalanced export be recomputed.
    input_ids : (N,) the ids of ``inputs``' rows.
    """

    values: dict
    source: str
    evaluated: bool
    inputs: np.ndarray | None = field(default=None, repr=False)
    input_ids: np.ndarray | None = field(default=None, repr=False)


QUALITY_KEYS = (
    "n_items", "codes_used", "codebook_sizes", "perplexity", "collision_rate", "n_collided_items", "largest_group",
    "collision_rate_by_depth", "collision_rate_after_rebalancing", "items_moved_by_rebalancing", "reconstruction_mse",
)


def measure(exp: Export, export_dir: Path, *, catalog: Any = None, sequences: str | Path | None = None,
            embeddings: str | Path | np.ndarray | None = None, category_column: str | None = None,
            show_progress: bool = True) -> Quality:
    """The quality table: evaluated against ``catalog`` (and ``sequences``) when given,
    else the build-time metrics; the model inputs come along when they cover the export."""
    if sequences is not None and catalog is None:
        raise ReportError("sequences need a catalog (the co-interaction metrics are computed by evaluate_export)")
    if catalog is None:
        inputs = None
        if embeddings is not None and exp.config.collision.strategy != "counter":
            inputs = model_inputs_of(exp, exp.ids, embeddings, None, show_progress)
        values = {k: exp.metrics[k] for k in QUALITY_KEYS if k in exp.metrics}
        return Quality(values, "build-time metrics from metrics.json", False, inputs, exp.ids)

    from ...stages.catalog import load_catalog
    from ..evaluate import evaluate_catalog, export_rows

    cat = load_catalog(catalog, exp.config.catalog)
    item_rows = export_rows(exp.ids, cat)  # fail before embedding
    inputs = model_inputs_of(exp, cat.ids, embeddings, cat.texts, show_progress)
    log.info("evaluating %s against %s", export_dir, describe(catalog))
    # the export and catalog already loaded here, and the same inputs, serve the
    # evaluation and the raw codes
    values = evaluate_catalog(
        item_rows, exp.codes, exp.model.codebook_sizes, cat, embeddings=inputs, sequences=sequences,
        category_column=category_column, reconstruction_mse=exp.metrics.get("reconstruction_mse"),
    )
    source = f"evaluated against {describe(catalog)}" + (f" and sequences {sequences}" if sequences else "")
    if len(cat) != len(exp.ids):
        inputs = None  # a partial catalog: its codes are not the export's collision groups
    return Quality(values, source, True, inputs, cat.ids)


def model_inputs_of(exp: Export, ids: np.ndarray, embeddings: Any, texts: list[str] | None,
                    show_progress: bool) -> np.ndarray:
    """(N, D) the model's inputs in the order of ``ids``: embeddings given (path or
    array), else computed from ``texts``; through :func:`semantic_ids.collab.model_inputs`
    (fused with behaviour for a build with sequences)."""
    from ...model.collab import model_inputs
    from ...stages.embed import item_embeddings

    if embeddings is None and texts is None:
        raise ReportError("no embeddings given and no texts to compute them from")
    emb = item_embeddings(ids, texts, exp.config.embedding, given=embeddings, id_column=exp.config.catalog.id_column,
                          show_progress=show_progress)[0]
    return model_inputs(exp.fusion, emb, exp.model.input_dim, ids)


def raw_codes(exp: Export, embeddings: np.ndarray | None,
              ids: np.ndarray | None = None) -> tuple[np.ndarray | None, str]:
    """(N, L) int64 model codes before collision resolution (or None), and a note on where they come from.

    With the counter strategy they are the exported codes minus the collision
    level. Rebalancing moves items on the last level and the raw codes are not
    stored, so they are recomputed with the frozen model from ``embeddings``
    (text embeddings or model inputs of the items ``ids``, default the export's
    order) when given.
    """
    if exp.config.collision.strategy == "counter":
        return exp.codes[:, :-1], "the exported codes without the collision level"
    if embeddings is None:
        return None, ("raw codes are not stored for the 'balanced' strategy; pass the full catalog (or embeddings) "
                      "to recompute them; shown: the groups left after rebalancing")
    from ...model.collab import model_inputs
    from ...stages.encode import encode_all

    x = model_inputs(exp.fusion, embeddings, exp.model.input_dim, exp.ids if ids is None else ids)
    raw = encode_all(exp.model, x).numpy()
    return raw, "recomputed with the export's frozen model from the embeddings (before rebalancing)"


def describe(catalog: Any) -> str:
    return str(catalog) if isinstance(catalog, (str, Path)) else f"a {type(catalog).__name__} of the catalog"


# -- baselines -------------------------------------------------------------------------


@dataclass(frozen=True)
class Baselines:
    """Baseline rows to show beside the export: ``rows`` (flat dicts), a ``note``
    saying which and from where, and the ``catalog`` they were filtered to (or None)."""

    rows: list[dict]
    note: str
    catalog: str | None


def select_baselines(baselines: str | Path | Sequence[dict], exp: Export, catalog: str | None = None) -> Baselines:
    """The rows of ``baselines`` for this export's catalog.

    The catalog is ``catalog`` when given, else the one catalog name whose rows
    have the export's item count (an ``items`` or ``n_items`` column). When
    neither settles it, every row is kept and the note says so.
    """
    rows = load_baselines(baselines)
    name = catalog if catalog is not None else catalog_by_items(rows, int(exp.info.get("n_items", len(exp.ids))))
    if name is not None:
        kept = [r for r in rows if str(r.get("catalog")) == name]
        note = f"{len(kept)} of {len(rows)} baseline rows, catalog {name!r}"
    else:
        kept = rows
        note = (f"all {len(rows)} baseline rows (no single catalog has the export's item count; "
                "name one with baselines_catalog to filter)")
    if isinstance(baselines, (str, Path)):
        note += f", from {baselines}"
    return Baselines(kept, note, name)


def load_baselines(baselines: str | Path | Sequence[dict]) -> list[dict]:
    """Rows from a JSON file (a list, or ``{"rows": [...]}``) or the rows themselves."""
    if isinstance(baselines, (str, Path)):
        path = Path(baselines)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReportError(f"{path}: baselines file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReportError(f"{path}: baselines file is not valid JSON ({exc})") from None
    else:
        path, data = "baselines", list(baselines)
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ReportError(f"{path}: baselines should be a JSON list of row objects (or {{\"rows\": [...]}})")
    return data


def catalog_by_items(rows: list[dict], n_items: int) -> str | None:
    """The one catalog name whose rows count ``n_items`` items, else None (none or several)."""
    names = {str(r["catalog"]) for r in rows if r.get("catalog") is not None and _items(r) == n_items}
    return names.pop() if len(names) == 1 else None


def _items(row: dict) -> int | None:
    for key in ("items", "n_items"):
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return int(v)
    return None


def export_value(col: str, quality: dict, exp: Export) -> Any:
    """This export's value for a baselines column, when one of its metrics matches by name."""
    m = exp.metrics
    for src in (quality, m):
        if col in src and not isinstance(src[col], dict):
            return src[col]
    if col in ("items", "n_items"):
        return quality.get("n_items", m.get("n_items"))
    if col == "seed":
        return exp.config.seed
    stages = m.get("stages") or {}
    if col == "stages":
        return stages
    if col == "peak_rss_mb" and stages:
        return max(s.get("peak_rss_mb", 0) for s in stages.values())
    hit = re.fullmatch(r"(.+)_l(\d+)", col)
    if hit:
        base, d = hit.group(1), int(hit.group(2))
        if f"{base}@{d}" in quality:
            return quality[f"{base}@{d}"]
        for src in (quality, m):
            seq = src.get(base)
            if isinstance(seq, list) and 0 < d <= len(seq):
                return seq[d - 1]
    hit = re.fullmatch(r"(.+)_seconds", col)
    if hit and isinstance(stages.get(hit.group(1)), dict):
        return stages[hit.group(1)].get("seconds")
    return None


# -- churn -------------------------------------------------------------------------------


def churn_since(previous: str | Path | None, export_dir: Path) -> ChurnReport | None:
    """:func:`semantic_ids.churn.churn` from ``previous`` (an earlier export to compare
    with; ``report --previous``) to this export (None without one), the numbers
    ``semantic-ids diff PREVIOUS DIR`` prints."""
    if previous is None:
        return None
    rep = churn(previous, export_dir)
    log.info("churn since %s: %.2f%% of %d common items changed ID", previous, 100 * rep.full_id_changed, rep.n_common)
    return rep
