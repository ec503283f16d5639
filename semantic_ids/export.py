"""Export directory: write and read a build's artifacts, atomically and without pickle.

Layout of ``DIR``::

    semantic_ids.parquet   one row per item: item_id, codes, level_0.., semantic_id
    model.safetensors      RQ-VAE weights and buffers
    config.json            BuildConfig, input dim, codebook sizes, versions
    metrics.json           quality, timings, peak memory, training history
    manifest.json          sha256 and size of every file above (written last)

The whole directory is staged and swapped in (see :mod:`semantic_ids.atomic`):
a run that fails halfway leaves an earlier export untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from . import __version__
from .atomic import restore_if_missing, staged_dir
from .config import BuildConfig
from .rqvae import RQVAE
from .tokens import format_sids

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
IDS_FILE = "semantic_ids.parquet"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"
METADATA_KEY = b"semantic_ids"


class ExportError(ValueError):
    """An export directory is missing, damaged, or from an incompatible version."""


@dataclass(frozen=True)
class Export:
    """What an export directory holds, loaded."""

    config: BuildConfig
    ids: np.ndarray  # (N,) item ids as in the catalog
    codes: np.ndarray  # (N, L + 1) int64, model levels + collision level
    model: RQVAE
    info: dict[str, Any]  # config.json contents
    metrics: dict[str, Any]


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_info(
    config: BuildConfig, model: RQVAE, n_items: int, n_levels: int, extra_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The contents of ``config.json``, also stored in the Parquet schema metadata.
    ``n_levels`` counts the model levels plus the collision level."""
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "config": config.to_dict(),
        "input_dim": model.input_dim,
        "codebook_sizes": list(model.codebook_sizes),
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
) -> Path:
    """Write all artifacts to ``out`` atomically; return ``out``.

    Either ``ids`` and resolved ``codes`` (N, L + 1) in memory, or
    ``write_ids(path, info)`` that writes ``semantic_ids.parquet`` itself (the
    streaming build writes it partition by partition) with ``n_items``.
    """
    out = Path(out)
    if write_ids is None:
        if ids is None or codes is None:
            raise ValueError("write_export needs ids and codes, or write_ids")
        n_items = len(ids)

        def write_ids(path: Path, meta: dict[str, Any]) -> None:
            pq.write_table(ids_table(ids, codes, config.catalog.id_column, meta), path)

    elif n_items is None:
        raise ValueError("write_export with write_ids needs n_items")
    n_levels = int(codes.shape[1]) if codes is not None else model.n_levels + 1
    info = export_info(config, model, n_items, n_levels, extra_info)
    with staged_dir(out) as stage:
        write_ids(stage / IDS_FILE, info)
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(stage / MODEL_FILE), metadata={"format_version": str(FORMAT_VERSION)})
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


def _read_verified(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read the manifest and every file it lists, once, and check their checksums.

    A concurrent writer swaps the whole directory; if that happens between two
    reads the checksums disagree, so the read is retried a few times before a
    mismatch is reported as damage.
    """
    restore_if_missing(path)
    if not path.is_dir():
        raise ExportError(f"{path}: export directory not found")
    last_error: ExportError | None = None
    for attempt in range(4):
        mpath = path / MANIFEST_FILE
        try:
            raw = mpath.read_bytes()
        except FileNotFoundError:
            raise ExportError(f"{path}: no {MANIFEST_FILE}; not a semantic-ids export, or an incomplete one") from None
        try:
            manifest = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ExportError(f"{mpath}: damaged manifest ({exc})") from None
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ExportError(
                f"{path}: export format version {version!r} (library {manifest.get('library_version')!r}) "
                f"is not supported by semantic-ids {__version__} (format {FORMAT_VERSION}); rebuild it"
            )
        files: dict[str, bytes] = {}
        last_error = None
        for name, meta in manifest.get("files", {}).items():
            f = path / name
            try:
                data = f.read_bytes()
            except FileNotFoundError:
                last_error = ExportError(f"{f}: file listed in the manifest is missing")
                break
            if len(data) != meta["bytes"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
                last_error = ExportError(f"{f}: checksum mismatch; the file is truncated, corrupted or was edited")
                break
            files[name] = data
        if last_error is None:
            return manifest, files
        time.sleep(0.05 * (attempt + 1))
    assert last_error is not None
    raise last_error


def verify_export(path: str | Path) -> dict[str, Any]:
    """Check the manifest's checksums; raise ExportError naming a bad file."""
    return _read_verified(Path(path))[0]


def _upgrade_config(data: dict[str, Any]) -> dict[str, Any]:
    """Configs saved before ``model.first_level`` existed describe TIGER's all-latent
    model, and ``first_level = "kmeans"`` (one release) meant progressive-dimension
    k-means: say so explicitly, since today's default differs."""
    model = data.get("model")
    if isinstance(model, dict) and "first_level" not in model:
        data = {**data, "model": {**model, "first_level": "latent"}}
    elif isinstance(model, dict) and model.get("first_level") == "kmeans":
        data = {**data, "model": {**model, "first_level": "progressive"}}
    return data


def read_export(path: str | Path, *, verify: bool = True) -> Export:
    """Load an export directory (no pickle anywhere); every file is parsed from
    the very bytes whose checksum was verified."""
    path = Path(path)
    if verify:
        _, files = _read_verified(path)
    else:
        files = {f.name: f.read_bytes() for f in path.iterdir() if f.is_file()}
    missing = [n for n in (IDS_FILE, MODEL_FILE, CONFIG_FILE, METRICS_FILE) if n not in files]
    if missing:
        raise ExportError(f"{path}: missing from the export: {missing}")
    try:
        info = json.loads(files[CONFIG_FILE])
        metrics = json.loads(files[METRICS_FILE])
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: damaged JSON ({exc})") from None
    config = BuildConfig.from_dict(_upgrade_config(info["config"]))
    model = RQVAE(int(info["input_dim"]), config.model)
    model.load_state_dict(load_bytes(files[MODEL_FILE]))
    model.eval()
    table = pq.read_table(pa.BufferReader(files[IDS_FILE]))
    id_col = info["id_column"]
    frame = table.select([id_col]).to_pandas()
    ids = frame[id_col].to_numpy(dtype=object if not pd.api.types.is_integer_dtype(frame[id_col]) else np.int64)
    n_levels = int(info["n_levels"])
    codes = np.column_stack([table.column(f"level_{i}").to_numpy() for i in range(n_levels)]).astype(np.int64)
    return Export(config=config, ids=ids, codes=codes, model=model, info=info, metrics=metrics)
