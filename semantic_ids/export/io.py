"""Export directory: write and read a build's artifacts, atomically and without pickle.

Layout of ``DIR``::

    semantic_ids.parquet   one row per item: item_id, codes, level_0.., semantic_id
    model.safetensors      RQ-VAE weights and buffers
    collab.safetensors     only for builds with sequences: collaborative vectors
                           of the built items and the text -> behaviour map
    config.json            BuildConfig (portable part), input dim, codebook sizes, versions
    metrics.json           quality, timings, peak memory, training history
    manifest.json          sha256 and size of every file above (written last)

The whole directory is staged and swapped in (see :mod:`semantic_ids.export.atomic`):
a run that fails halfway leaves an earlier export untouched.

:func:`read_export` is the one reader. ``read_export(export_dir, model=False)`` reads
the ids table, ``config.json`` and ``metrics.json`` without importing torch
(exact lookups, the decoding files, ``diff`` and the downstream evaluation start
fast this way); the model is parsed only when asked for. Importing this module
loads neither torch nor safetensors' torch half.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
from ..model.sizing import codebook_sizes_of
from .outdir import check_out_dir
from .tokens import format_sids

if TYPE_CHECKING:
    from ..model.rqvae import RQVAE

log = logging.getLogger(__name__)

COLLAB_FILE = "collab.safetensors"


@dataclass(frozen=True)
class Export:
    """What an export directory holds, read by :func:`read_export`.

    ``model`` and ``fusion`` are None when it was read with ``model=False``.
    """

    config: BuildConfig
    ids: np.ndarray  # (N,) item ids as in the catalog: int64, or str objects
    codes: np.ndarray  # (N, L + 1) int64, model levels + collision level
    info: dict[str, Any]  # config.json contents
    metrics: dict[str, Any]
    model: RQVAE | None = None
    fusion: Any = None  # collab.Fusion for builds with sequences, else None
    manifest_sha256: str = field(default="", repr=False)  # of the manifest (canonical JSON): which export was read

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Codes per model level (L,), the collision level excluded."""
        return codebook_sizes_of(self.info)

    @property
    def id_column(self) -> str:
        return str(self.info["id_column"])


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
    export_dir: str | Path,
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
    """Write all artifacts to ``export_dir`` atomically; return it (absolute).

    Either ``ids`` and resolved ``codes`` (N, L + 1) in memory, or
    ``write_ids(path, info)`` that writes ``semantic_ids.parquet`` itself (the
    streaming build writes it partition by partition) with ``n_items``.

    Only a new path, an empty directory or an earlier export (holding nothing
    else) is replaced; anything else raises
    :class:`~semantic_ids.export.outdir.OutputPathError` and is left untouched.
    """
    # The atomic swap's own guard. A build checks its output directory once, before any
    # work (runners.build.check_build), but that may be minutes ago: training runs in
    # between, and meanwhile someone may have put files into the directory, or made it
    # a file; the swap would delete them. Checking here, just before staging, keeps
    # whatever is not an earlier export. It also guards the callers that have no
    # up-front check (SemanticIDs.save).
    out = check_out_dir(export_dir)
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
        from safetensors.torch import save as save_bytes

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


def read_export(export_dir: str | Path, *, model: bool = True, verify: bool = True) -> Export:
    """Read an export directory (no pickle anywhere); every file is parsed from the
    very bytes whose checksum was verified.

    Parameters
    ----------
    export_dir : the export directory.
    model : also rebuild the RQ-VAE (and a build with sequences' fusion), which
        imports torch; with False, ``Export.model`` and ``fusion`` are None and only
        the ids table, ``config.json`` and ``metrics.json`` are parsed (the model's
        file is still checked against the manifest).
    verify : check every file against the manifest's sha256 (default).

    Raises
    ------
    ExportError : naming the directory or the file that is missing, damaged, or
        from an unsupported format version.
    """
    path = Path(export_dir)
    if verify:
        manifest, files = read_verified(path)
        sha = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    else:
        if not path.is_dir():
            raise ExportError(f"{path}: export directory not found")
        files = {f.name: f.read_bytes() for f in path.iterdir() if f.is_file()}
        sha = ""
    ids, codes, info = parse_ids(path, files)
    try:
        metrics = json.loads(files[METRICS_FILE])
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: damaged JSON ({exc})") from None
    try:
        saved, _ = info["config"], codebook_sizes_of(info)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{path / CONFIG_FILE}: damaged or incomplete ({exc!r})") from None
    config = BuildConfig.from_dict(upgrade_config(saved))
    exp = Export(config=config, ids=ids, codes=codes, info=info, metrics=metrics, manifest_sha256=sha)
    if not model:
        return exp
    rqvae, fusion = _read_model(path, files, exp)
    return dataclasses.replace(exp, model=rqvae, fusion=fusion)


def _read_model(path: Path, files: dict[str, bytes], exp: Export):
    """The RQ-VAE and, for a build with sequences, its fusion, from the verified bytes."""
    from safetensors.torch import load as load_bytes

    from ..model.rqvae import RQVAE

    info, config = exp.info, exp.config
    model = RQVAE(input_dim=int(info["input_dim"]), config=config.model, experimental=config.experimental)
    model.load_state_dict(load_bytes(files[MODEL_FILE]))
    model.eval()
    fusion = None
    if "collab_items" in info:
        from safetensors.numpy import load as load_arrays

        from ..model.collab import Fusion

        if COLLAB_FILE not in files:
            raise ExportError(f"{path}: {COLLAB_FILE} is missing (the build used sequences)")
        n = int(info["collab_items"])
        fusion = Fusion.from_tensors(config.collab, exp.ids[:n], load_arrays(files[COLLAB_FILE]))
        if len(fusion.vectors) != n or fusion.dim != model.input_dim:
            raise ExportError(f"{path}: {COLLAB_FILE} does not match the model ({len(fusion.vectors)} items, dim {fusion.dim})")
    return model, fusion
