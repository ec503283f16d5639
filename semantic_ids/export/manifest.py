"""An export directory's files, checked and parsed without torch (see :mod:`semantic_ids.export.io`).

Exact lookups (item <-> semantic ID, prefixes) need only ``semantic_ids.parquet``
and ``config.json``; :func:`~semantic_ids.export.io.read_export` with
``model=False`` reads them through here, which keeps ``semantic-ids lookup --item``
free of torch, safetensors and sentence-transformers. Every file is still checked
against the manifest's sha256.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..version import __version__
from .atomic import restore_if_missing
from ..config import machine_local_keys, moved_keys
from ..errors import ExportError

FORMAT_VERSION = 1
IDS_FILE = "semantic_ids.parquet"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"
METADATA_KEY = b"semantic_ids"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_verified(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
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


def verify_export(export_dir: str | Path) -> dict[str, Any]:
    """Check the manifest's checksums; raise ExportError naming a bad file."""
    return read_verified(Path(export_dir))[0]


def parse_ids(path: Path, files: dict[str, bytes]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Ids, codes and info from the verified bytes of an export's files."""
    import pyarrow as pa  # not pandas: exact lookups start faster without it
    import pyarrow.parquet as pq

    missing = [n for n in (IDS_FILE, MODEL_FILE, CONFIG_FILE, METRICS_FILE) if n not in files]
    if missing:
        raise ExportError(f"{path}: missing from the export: {missing}")
    try:
        info = json.loads(files[CONFIG_FILE])
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: damaged JSON ({exc})") from None
    table = pq.ParquetFile(pa.BufferReader(files[IDS_FILE])).read()  # read_table would import pyarrow.dataset and pandas
    id_col = info["id_column"]
    column = table.column(id_col)
    if pa.types.is_integer(column.type):
        ids = _int64(column, path, id_col)
    else:
        ids = np.asarray(column.to_pylist(), dtype=object)
    n_levels = int(info["n_levels"])
    codes = np.column_stack([_int64(table.column(f"level_{i}"), path, f"level_{i}") for i in range(n_levels)])
    return ids, codes, info


def _int64(column, path: Path, name: str) -> np.ndarray:
    """An integer Parquet column as an int64 array, read from its buffer (pyarrow's
    to_numpy imports pandas, half a second of a lookup's start-up)."""
    import pyarrow as pa

    arr = column.combine_chunks().cast(pa.int64())
    if arr.null_count:
        raise ExportError(f"{path}: column {name!r} of {IDS_FILE} has null values")
    return np.frombuffer(arr.buffers()[1], dtype=np.int64, count=len(arr), offset=arr.offset * 8).copy()


def upgrade_config(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config in today's layout (a new dict; ``data`` is not changed).

    Configs saved before ``model.first_level`` existed describe TIGER's all-latent
    model, and ``first_level = "kmeans"`` (one release) meant progressive-dimension
    k-means: say so explicitly, since today's default differs. Experiment switches
    saved under ``[model]`` / ``[train]`` move to ``[experimental]`` (same model,
    same codes), and machine-local settings saved by older versions are dropped:
    the reading machine's own apply.
    """
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    model = data.get("model")
    if isinstance(model, dict) and "first_level" not in model:
        model["first_level"] = "latent"
    elif isinstance(model, dict) and model.get("first_level") == "kmeans":
        model["first_level"] = "progressive"
    for section, moved in moved_keys().items():
        old = data.get(section)
        for key, new in moved.items():
            if isinstance(old, dict) and key in old:
                new_section, new_key = new.split(".")
                data.setdefault(new_section, {})[new_key] = old.pop(key)
    for section, keys in machine_local_keys().items():
        if isinstance(data.get(section), dict):
            for key in keys:
                data[section].pop(key, None)
    return data
