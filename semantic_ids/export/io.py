"""Export directory: write and read a build's artifacts, atomically and without pickle.

Layout of ``DIR``::

    semantic_ids.parquet   one row per item: item_id, codes, level_0.., semantic_id
    model.safetensors      RQ-VAE weights and buffers
    collab.safetensors     only for builds with sequences: collaborative vectors
                           of the built items and the text -> behaviour map
    config.json            BuildConfig (portable part), input dim, codebook sizes, versions
    metrics.json           quality, timings, peak memory, training history
    manifest.json          sha256 and size of every file above (written last)

The whole directory is staged and swapped in (see :mod:`semantic_ids.atomic`):
a run that fails halfway leaves an earlier export untouched.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from ..version import __version__
from .atomic import staged_dir
from .. import faults
from .manifest import (  # noqa: F401 - re-exported: users import these from semantic_ids.export
    CONFIG_FILE,
    FORMAT_VERSION,
    IDS_FILE,
    MANIFEST_FILE,
    METADATA_KEY,
    METRICS_FILE,
    MODEL_FILE,
    ExportError,
    _sha256,
    parse_ids,
    read_verified,
    upgrade_config,
    verify_export,
)
from ..config import BuildConfig
from .outdir import check_out_dir
from ..model.rqvae import RQVAE
from .tokens import format_sids

log = logging.getLogger(__name__)

COLLAB_FILE = "collab.safetensors"


@dataclass(frozen=True)
class Export:
    """What an export directory holds, loaded."""

    config: BuildConfig
    ids: np.ndarray  # (N,) item ids as in the catalog
    codes: np.ndarray  # (N, L + 1) int64, model levels + collision level
    model: RQVAE
    info: dict[str, Any]  # config.json contents
    metrics: dict[str, Any]
    fusion: Any = None  # collab.Fusion for builds with sequences, else None


def ids_table(ids: np.ndarray, codes: np.ndarray, id_column: str, metadata: dict[str, Any]) -> pa.Table:
    """The ``semantic_ids.parquet`` table for resolved codes (N, L)."""
    codes = np.asarray(codes, dtype=np.int64)
    n, levels = codes.shape
    id_array = pa.array(ids.tolist() if ids.dtype == object else ids)
    columns = {
        id_column: id_array,
        "codes": pa.FixedSizeListArray.from_arrays(pa.array(codes.reshape(-1)), levels)
        if n
        else pa.array([], type=pa.list_(pa.int64(), levels)),
    }
    for i in range(levels):
        columns[f"level_{i}"] = pa.array(codes[:, i])
    columns["semantic_id"] = pa.array(format_sids(codes), type=pa.string())
    table = pa.table(columns)
    # A plain list<int64> type reads everywhere (fixed-size lists do not in every tool).
    table = table.set_column(1, "codes", table.column("codes").cast(pa.list_(pa.int64())))
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})


def export_info(
    config: BuildConfig, model: RQVAE, n_items: int, n_levels: int, extra_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The contents of ``config.json``, also stored in the Parquet schema metadata.
    ``n_levels`` counts the model levels plus the collision level. The model must
    have been built with the config's experiment switches (ValueError otherwise),
    since a reader rebuilds it from them."""
    if model.experimental != config.experimental:
        raise ValueError(f"the model was built with {model.experimental}, the config has {config.experimental}; "
                         "pass config.experimental to train_rqvae / RQVAE")
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "config": config.portable_dict(),  # machine-local settings change no result: not recorded
        "input_dim": model.input_dim,
        "n_levels": int(n_levels),
        "embedding_model": config.embedding.model,
        "id_column": config.catalog.id_column,
        "n_items": int(n_items),
        **(extra_info or {}),
    }


def write_export(
    out: str | Path,
    *,
    config: BuildConfig,
    model: RQVAE,
    metrics: dict[str, Any] | Callable[[], dict[str, Any]],
    ids: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    write_ids: Callable[[Path, dict[str, Any]], None] | None = None,
    n_items: int | None = None,
    extra_info: dict[str, Any] | None = None,
    fusion: Any = None,
) -> Path:
    """Write all artifacts to ``out`` atomically; return ``out``.

    Either ``ids`` and resolved ``codes`` (N, L + 1) in memory, or
    ``write_ids(path, info)`` that writes ``semantic_ids.parquet`` itself (the
    streaming build writes it partition by partition) with ``n_items``.

    Only a new path, an empty directory or an earlier export (holding nothing
    else) is replaced; anything else raises
    :class:`~semantic_ids.outdir.OutputPathError` and is left untouched.
    """
    out = check_out_dir(out)
    if write_ids is None:
        if ids is None or codes is None:
            raise ValueError("write_export needs ids and codes, or write_ids")
        n_items = len(ids)

        def write_ids(path: Path, meta: dict[str, Any]) -> None:
            pq.write_table(ids_table(ids, codes, config.catalog.id_column, meta), path)

    elif n_items is None:
        raise ValueError("write_export with write_ids needs n_items")
    n_levels = int(codes.shape[1]) if codes is not None else model.n_levels + 1
    if fusion is not None:
        extra_info = {**(extra_info or {}), "collab_items": int(len(fusion.ids)), "text_dim": fusion.text_dim}
    info = export_info(config, model, n_items, n_levels, extra_info)
    with staged_dir(out) as stage:
        write_ids(stage / IDS_FILE, info)
        faults.point("export.ids_written")
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        # written with open() like the other files, so its mode follows the umask (save_file made it 0600)
        (stage / MODEL_FILE).write_bytes(save_bytes(state, metadata={"format_version": str(FORMAT_VERSION)}))
        if fusion is not None:
            from safetensors.numpy import save as save_arrays

            (stage / COLLAB_FILE).write_bytes(save_arrays({k: np.ascontiguousarray(v) for k, v in fusion.tensors().items()}))
        (stage / CONFIG_FILE).write_text(json.dumps(info, indent=2))
        # metrics may be a callable so that it can include the time spent writing the rest
        (stage / METRICS_FILE).write_text(json.dumps(metrics() if callable(metrics) else metrics, indent=2))
        manifest = {
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "files": {
                f.name: {"sha256": _sha256(f), "bytes": f.stat().st_size}
                for f in sorted(stage.iterdir())
                if f.name != MANIFEST_FILE
            },
        }
        (stage / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    log.info("wrote export %s (%d items)", out, n_items)
    return out


def read_export(path: str | Path, *, verify: bool = True) -> Export:
    """Load an export directory (no pickle anywhere); every file is parsed from
    the very bytes whose checksum was verified."""
    path = Path(path)
    if verify:
        _, files = read_verified(path)
    else:
        files = {f.name: f.read_bytes() for f in path.iterdir() if f.is_file()}
    ids, codes, info = parse_ids(path, files)
    try:
        metrics = json.loads(files[METRICS_FILE])
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: damaged JSON ({exc})") from None
    config = BuildConfig.from_dict(upgrade_config(info["config"]))
    model = RQVAE(int(info["input_dim"]), config.model, config.experimental)
    model.load_state_dict(load_bytes(files[MODEL_FILE]))
    model.eval()
    fusion = None
    if "collab_items" in info:
        from safetensors.numpy import load as load_arrays

        from ..model.collab import Fusion

        if COLLAB_FILE not in files:
            raise ExportError(f"{path}: {COLLAB_FILE} is missing (the build used sequences)")
        n = int(info["collab_items"])
        fusion = Fusion.from_tensors(config.collab, ids[:n], load_arrays(files[COLLAB_FILE]))
        if len(fusion.vectors) != n or fusion.dim != model.input_dim:
            raise ExportError(f"{path}: {COLLAB_FILE} does not match the model ({len(fusion.vectors)} items, dim {fusion.dim})")
    return Export(config=config, ids=ids, codes=codes, model=model, info=info, metrics=metrics, fusion=fusion)
