"""Files that trainers and serving engines read, written from an export.

``write_decoding_files(export_dir, out_dir)`` writes, for the export's items in
export row order:

=====================  ===================================================================
``sid2pid.json``       ``{"a,b,c,d": [item_id, ...]}``: the full ID (collision level
                       included, so each list holds one item) to item ids, the mapping
                       the vllm-gr and FlashRec serving engines load
``codes.npy``          ``(levels, items)`` int64, the ``[num_hierarchies, num_items]``
                       layout GRID and NVIDIA's sid_gr take; ``np.load(allow_pickle=False)``
``item_ids.json``      the item id of each column of ``codes.npy``
``vocab.json``         :class:`SIDVocab` (``level_sizes``) and its token strings
``trie.safetensors``   :class:`PrefixTrie` (``leaf_rows`` index the same item order)
``decoding_files.json``  manifest: formats, sha256 and size of each file, the export read
=====================  ===================================================================

The directory is staged and swapped in whole (:mod:`semantic_ids.atomic`), so it
is complete or absent. Since the swap replaces ``out_dir``, it must be new,
empty, or an earlier output of this function holding nothing else; anything
else is refused, naming the path, before the export is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..version import __version__
from ..export import outdir
from ..export.atomic import staged_dir
from .trie import PrefixTrie
from ..export.io import read_export
from .vocab import SIDVocab
from ..errors import DecodingFilesError

log = logging.getLogger(__name__)

MANIFEST = "decoding_files.json"
FORMAT = "semantic-ids decoding files"
VERSION = 1
FILES = {
    "sid2pid": ("sid2pid.json",),
    "codes": ("codes.npy", "item_ids.json"),
    "vocab": ("vocab.json",),
    "trie": ("trie.safetensors",),
}
FORMATS = tuple(FILES)


def _foreign(path: Path) -> list[str] | None:
    """Names in ``path`` that an earlier run did not write; None if ``path`` has no
    readable manifest of ours."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        listed = set(manifest["files"]) if manifest.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if listed is None:
        return None
    return sorted(p.name for p in path.iterdir() if p.name not in listed and p.name != MANIFEST)


def check_out_dir(out_dir: str | Path, export_dir: str | Path) -> Path:
    """Resolve ``out_dir`` and check that it may be replaced; raise naming the path if not.

    The rules of every writer of this tool (:func:`semantic_ids.outdir.check_out_dir`),
    with this output's own manifest, and one more: the files may not go inside the
    export, whose manifest would then no longer list everything in it.
    """
    if Path(export_dir).resolve() in Path(out_dir).resolve().parents:
        raise DecodingFilesError(f"{out_dir}: lies inside the export {export_dir}; choose another directory")
    return outdir.check_out_dir(out_dir, kind="decoding-files directory", inputs=(export_dir,),
                                error=DecodingFilesError, foreign=_foreign)


def _formats(formats: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(formats))
    unknown = [f for f in chosen if f not in FILES]
    if unknown or not chosen:
        raise DecodingFilesError(f"unknown formats {unknown or '(none given)'}; choose from {', '.join(FORMATS)}")
    return chosen


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_decoding_files(
    export_dir: str | Path, out_dir: str | Path, formats: Iterable[str] = FORMATS
) -> dict[str, Path]:
    """Write the chosen ``formats`` of an export into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    export_dir : a semantic-ids export (its checksums are verified).
    out_dir : new, empty, or an earlier output of this function; replaced whole.
    formats : any of ``"sid2pid"``, ``"codes"``, ``"vocab"``, ``"trie"``.

    Returns
    -------
    dict[str, Path]
        file name -> path, for every file written, the manifest included.

    Raises
    ------
    DecodingFilesError
        for unknown formats or an ``out_dir`` this tool may not replace, before any work.
    VocabError, TrieError
        for an unreadable or damaged export, before anything is written.
    """
    chosen = _formats(formats)
    out = check_out_dir(out_dir, export_dir)
    ex = read_export(export_dir, model=False)
    vocab = SIDVocab.from_export(ex)
    ids = ex.ids.tolist()  # Python ints or strings, for JSON
    trie = PrefixTrie.from_codes(ex.codes, vocab.level_sizes) if "trie" in chosen else None  # checks uniqueness
    blobs: dict[str, bytes] = {}
    if "sid2pid" in chosen:
        sid2pid: dict[str, list[Any]] = {}
        for row, item in zip(ex.codes.tolist(), ids):
            sid2pid.setdefault(",".join(map(str, row)), []).append(item)
        blobs["sid2pid.json"] = _json_bytes(sid2pid)
    if "codes" in chosen:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(ex.codes.T, dtype=np.int64), allow_pickle=False)
        blobs["codes.npy"] = buf.getvalue()
        blobs["item_ids.json"] = _json_bytes(ids)
    if "vocab" in chosen:
        blobs["vocab.json"] = json.dumps({**vocab.to_dict(), "tokens": vocab.tokens}, indent=1).encode()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "library_version": __version__,
        "formats": list(chosen),
        "export": str(Path(export_dir).resolve()),
        "export_manifest_sha256": ex.manifest_sha256,
        "n_items": len(ex.ids),
        "level_sizes": list(vocab.level_sizes),
        "files": {},
    }
    with staged_dir(out) as stage:
        check_out_dir(out, export_dir)  # again under the lock: nothing foreign arrived meanwhile
        for name, data in blobs.items():
            (stage / name).write_bytes(data)
        if trie is not None:
            trie.save(stage / "trie.safetensors")
        for f in sorted(stage.iterdir()):
            data = f.read_bytes()
            manifest["files"][f.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2))
    log.info("wrote %s to %s (%d items)", ", ".join(chosen), out, len(ex.ids))
    return {name: out / name for name in [*manifest["files"], MANIFEST]}


def verify_decoding_files(out_dir: str | Path) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest, or raise naming a bad file."""
    path = Path(out_dir)
    if _foreign(path) is None:
        raise DecodingFilesError(f"{path}: not a decoding-files directory (no valid {MANIFEST})")
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    for name, meta in manifest["files"].items():
        f = path / name
        if not f.is_file():
            raise DecodingFilesError(f"{f}: listed in {MANIFEST} but missing")
        data = f.read_bytes()
        if len(data) != meta["bytes"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise DecodingFilesError(f"{f}: checksum mismatch; the file is damaged or was edited")
    return manifest
