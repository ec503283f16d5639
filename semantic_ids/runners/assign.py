"""New items: codes under the frozen model, collisions resolved against the
existing IDs so that no existing item's ID ever changes, appended atomically.

Rule: a new item whose model codes match an existing group gets the next free
collision number after that group's largest; new items of one call that share
codes are numbered in ascending item-id order. So within one call the result
does not depend on input order or batch size; across calls, earlier calls'
items keep their numbers (first come, first numbered).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .estimator import SemanticIDs
from ..export.atomic import dir_lock
from ..stages.catalog import Catalog, CatalogError, load_catalog
from ..stages.resolve import number_collisions
from ..stages.embed import item_embeddings
from ..export.io import ExportError, write_export
from ..export.outdir import check_out_dir
from ..model.keys import rows_of
from ..stages.encode import encode_all
from ..errors import EmbeddingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssignResult:
    n_new: int
    n_already_present: int
    n_collided: int  # new items whose model codes were already taken
    new_ids: np.ndarray
    new_codes: np.ndarray  # (n_new, L + 1)


def resolve_against(existing: np.ndarray, new_raw: np.ndarray, new_ids: np.ndarray) -> np.ndarray:
    """Collision level for new items given existing resolved codes (N, L + 1).

    Returns (M, L + 1) codes for the new items; existing codes are untouched
    (:func:`~semantic_ids.stages.resolve.number_collisions` with ``existing``).
    """
    return number_collisions(new_raw, new_ids, existing=existing).codes


def assign_new_items(
    export_dir: str | Path,
    *,
    catalog: str | Path | pd.DataFrame | Catalog,
    embeddings: str | Path | np.ndarray | None = None,
    batch_size: int = 65536,
    show_progress: bool = True,
) -> AssignResult:
    """Add the catalog's new items to the export at ``export_dir`` (atomically).

    Items already in the export are left as they are and counted. The export
    directory must hold nothing this tool did not write (checked before any
    embedding; see :func:`semantic_ids.outdir.check_out_dir`).
    """
    if not Path(export_dir).is_dir():
        raise ExportError(f"{export_dir}: export directory not found")
    export_dir = check_out_dir(export_dir, inputs=[catalog, embeddings])
    with dir_lock(export_dir):  # read-modify-write: no other writer in between
        return _assign(export_dir, catalog, embeddings, batch_size, show_progress)


def _new_catalog(sid: SemanticIDs, catalog, embeddings) -> Catalog:
    """The new catalog, its item text built exactly as the export's was.

    The export's template or text columns are used; when the export detected its
    columns automatically, the columns it used (``metrics.json``) are used again,
    so a catalog with extra text columns gets the same text. A catalog that lacks
    one of them, or a ready Catalog whose text columns differ, is refused: new
    items embedded from other text would get codes that do not compare with the
    existing ones.
    """
    cfg = sid.config_.catalog
    if embeddings is not None:  # the text is not used
        return catalog if isinstance(catalog, Catalog) else load_catalog(catalog, cfg, require_text=False)
    used = sid.metrics_.get("text_columns")
    if cfg.template is None and cfg.text_columns is None and used is not None:
        if not used:
            raise EmbeddingError(
                "the export was built from given embeddings (no text columns); pass embeddings for the new items"
            )
        cfg = dataclasses.replace(cfg, text_columns=tuple(used))
    elif cfg.template is None and cfg.text_columns is None:
        log.warning("the export does not record its text columns (an older or streaming export); detecting them again")
    where = f"template {cfg.template!r}" if cfg.template is not None else f"columns {list(cfg.text_columns or [])}"
    if isinstance(catalog, Catalog):
        if used is not None and list(catalog.text_columns) != list(used):
            raise CatalogError(
                f"the catalog's item text comes from columns {list(catalog.text_columns)}, the export's from "
                f"{list(used)}; new items must be embedded from the same text (or pass embeddings)"
            )
        return catalog
    try:
        return load_catalog(catalog, cfg)
    except CatalogError as exc:
        raise CatalogError(f"{exc}; the export's item text comes from {where}, and new items must be embedded from "
                           "the same text (or pass embeddings)") from None


def _ids_like_export(cat: Catalog, export_ids: np.ndarray) -> Catalog:
    """String ids such as "3003" for an export with integer ids are read as integers, as
    ``lookup`` and the sequences reader read them; anything else is refused, naming ids."""
    import dataclasses

    if export_ids.dtype.kind in "iu":
        conv, bad = [], []
        for v in cat.ids.tolist():
            try:
                conv.append(int(v))
            except (TypeError, ValueError):
                bad.append(v)
        if not bad:
            ids = np.asarray(conv, dtype=np.int64)
            if len(np.unique(ids)) == len(ids):
                return dataclasses.replace(cat, ids=ids)
            values, counts = np.unique(ids, return_counts=True)
            bad = [v for v in cat.ids.tolist() if int(v) in set(values[counts > 1].tolist())][:5]
            raise CatalogError(f"new catalog ids read as integers (the export's ids are integers) repeat: {bad}")
        raise CatalogError(f"the export's item ids are integers, but {len(bad)} new catalog id(s) are not: {bad[:5]}")
    raise CatalogError(f"the export's item ids are strings, but the new catalog's are integers (e.g. {cat.ids[:3].tolist()}); "
                     "write them as strings, exactly as the export has them")


def _assign(export_dir, catalog, embeddings, batch_size: int, show_progress: bool) -> AssignResult:
    start = time.perf_counter()
    sid = SemanticIDs.load(export_dir, show_progress=show_progress)
    cfg = sid.config_
    cat = _new_catalog(sid, catalog, embeddings)
    if len(cat.ids) and len(sid.ids_) and (cat.ids.dtype.kind in "iu") != (sid.ids_.dtype.kind in "iu"):
        cat = _ids_like_export(cat, sid.ids_)
    present = rows_of(cat.ids, sid.ids_, missing="-1") >= 0
    new_pos = np.flatnonzero(~present)
    new_ids = cat.ids[new_pos]
    # keyed files are read for the new items alone; a .npy or an array follows the catalog's order
    emb = item_embeddings(cat.ids, None if embeddings is not None else cat.texts, cfg.embedding, given=embeddings,
                          id_column=cfg.catalog.id_column, rows=new_pos, show_progress=show_progress)[0]
    if len(new_pos) and emb.shape[1] != sid.embedding_dim_:
        raise EmbeddingError(f"embeddings have dim {emb.shape[1]}, the export's model expects {sid.embedding_dim_}")
    if len(new_pos) == 0:
        log.info("no new items: all %d catalog items are already in %s", len(cat), export_dir)
        return AssignResult(0, int(present.sum()), 0, new_ids, np.zeros((0, sid.codes_.shape[1]), np.int64))
    # new items have no interactions: with a build that used sequences, behaviour is predicted from text
    raw = encode_all(sid.model_, sid.features(emb), batch_size).numpy()
    new_codes = resolve_against(sid.codes_, raw, new_ids)
    n_collided = int((new_codes[:, -1] > 0).sum())
    all_ids = np.concatenate([sid.ids_, new_ids]) if sid.ids_.dtype == new_ids.dtype else np.array(
        [*sid.ids_.tolist(), *new_ids.tolist()], dtype=object
    )
    all_codes = np.concatenate([sid.codes_, new_codes])
    record = {
        "n_new": int(len(new_ids)),
        "n_already_present": int(present.sum()),
        "n_collided": n_collided,
        "seconds": round(time.perf_counter() - start, 3),
    }
    metrics = {**sid.metrics_, "assignments": [*sid.metrics_.get("assignments", []), record]}
    metrics["n_items_total"] = int(len(all_ids))
    write_export(export_dir, config=cfg, ids=all_ids, codes=all_codes, model=sid.model_, metrics=metrics, fusion=sid.fusion_)
    log.info("assigned %d new items (%d collided) to %s", len(new_ids), n_collided, export_dir)
    return AssignResult(len(new_ids), int(present.sum()), n_collided, new_ids, new_codes)
