"""Where a command may write: only a new path, an empty directory, or its own earlier output.

Exports and reports are written by swapping a staged directory in place of the
target (:mod:`semantic_ids.atomic`), which removes whatever was there. So every
writer (``build``, streaming ``build``, ``SemanticIDs.save``, ``assign``,
``report``) first calls :func:`check_out_dir`, before any heavy work: a regular
file, a symlink to one, the current directory, a folder holding one of the
command's inputs, or a non-empty directory this tool did not write is refused
with an error that names the path, and nothing is touched.

Ownership is decided by the files themselves: an export is a directory whose
``manifest.json`` lists every file in it (a report folder and the tool's own
hidden sidecars aside); a report is a directory whose ``index.html`` carries the
report's generator tag and that holds nothing but the report's files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import OutputPathError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"  # same name as export.MANIFEST_FILE (not imported: export pulls in torch)
REPORT_DIR = "report"
REPORT_FILES = frozenset({"index.html", "training.png", "usage.png", "collisions.png"})
REPORT_MARKER = '<meta name="generator" content="semantic-ids report">'


def _own_sidecar(name: str, of: Iterable[str]) -> bool:
    """Hidden names :mod:`semantic_ids.atomic` makes beside a target it writes."""
    return any(name == f".{t}.lock" or name.startswith((f".{t}.staging-", f".{t}.old-", f".{t}.tmp-")) for t in of)


def foreign_in_export(path: Path) -> list[str] | None:
    """Names in ``path`` an export writer did not write, or None if it is not an export.

    ``path`` is an export when its manifest parses and lists files; a ``report``
    sub-directory counts as ours only if it is itself a report.
    """
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        listed = set(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    foreign = []
    for entry in path.iterdir():
        name = entry.name
        if name in listed or name == MANIFEST or _own_sidecar(name, (REPORT_DIR,) + tuple(listed)):
            continue
        if name == REPORT_DIR and entry.is_dir() and not entry.is_symlink() and foreign_in_report(entry) == []:
            continue
        foreign.append(name)
    return sorted(foreign)


def foreign_in_report(path: Path) -> list[str] | None:
    """Names in ``path`` a report writer did not write, or None if it is not a report."""
    index = path / "index.html"
    try:
        with open(index, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4000)
    except OSError:
        return None
    if REPORT_MARKER not in head:
        return None
    return sorted(p.name for p in path.iterdir() if p.name not in REPORT_FILES)


def check_out_dir(
    out: str | Path,
    *,
    kind: str = "export",
    inputs: Iterable[str | Path | None] = (),
    error: type[Exception] = OutputPathError,
    foreign: Callable[[Path], list[str] | None] | None = None,
) -> Path:
    """Check that ``out`` may be replaced by a ``kind`` ("export" or "report") directory.

    Parameters
    ----------
    out : the directory a command will write (it need not exist).
    kind : what will be written there; an existing directory is replaced only
        if it is empty or an earlier output of the same kind that holds nothing else.
    inputs : paths the command reads (catalog, embeddings, export); ``out`` may
        not contain any of them, nor be one of them.
    error : the exception class to raise (a subclass of ``ValueError``).
    foreign : for another kind of output: ``foreign(path)`` returns the names in
        an existing non-empty ``path`` that its writer did not write, or None
        when ``path`` is not such an output (default: the export or report rule).

    Returns
    -------
    Path
        ``out`` made absolute with symlinks resolved, so ``.`` or ``proj/`` name
        a real directory the swap can work with.

    Raises
    ------
    OutputPathError (or ``error``)
        naming the path, before anything is written.
    """
    given = Path(out)
    try:
        path = given.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise error(f"{given}: cannot resolve the output path ({exc})") from None
    shown = str(given) if str(given) == str(path) else f"{given} ({path})"
    if path == Path(path.anchor) or not path.name:
        raise error(f"{shown}: a filesystem root cannot be replaced by {_a(kind)}; choose a new or empty sub-directory")
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise error(
            f"{shown}: is the current directory (or holds it); {_a(kind)} is swapped into place by renaming, "
            "so choose a new or empty sub-directory such as ./out"
        )
    for inp in inputs:
        if inp is None or not isinstance(inp, (str, Path)):
            continue
        ip = Path(inp).resolve()
        if ip == path or path in ip.parents:
            raise error(
                f"{shown}: would replace the input {inp} (writing the {kind} there deletes it); choose another output directory"
            )
    if not os.path.lexists(path):
        _check_parent(path, shown, error)
        return path
    if not path.is_dir():
        raise error(f"{shown}: exists and is not a directory; refusing to replace it (choose another path for the {kind})")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return _writable(path.parent, shown, error) or path
    check = foreign or (foreign_in_report if kind == "report" else foreign_in_export)
    others = check(path)
    if others is None:
        raise error(
            f"{shown}: exists and is not an earlier semantic-ids {kind} (it holds {_some(entries)}); refusing to replace it"
        )
    if others:
        raise error(
            f"{shown}: is an earlier semantic-ids {kind} but also holds files this tool did not write "
            f"({_some(others)}); move them out or choose another directory"
        )
    return _writable(path.parent, shown, error) or path


def _a(kind: str) -> str:
    return ("an " if kind[:1] in "aeiou" else "a ") + kind


def _some(names: list[str], n: int = 3) -> str:
    head = ", ".join(names[:n])
    return head + (f" and {len(names) - n} more" if len(names) > n else "")


def _check_parent(path: Path, shown: str, error: type[Exception]) -> None:
    """The nearest existing ancestor must be a directory we can write into."""
    parent = path.parent
    while not os.path.lexists(parent):
        parent = parent.parent
    if not parent.is_dir():
        raise error(f"{shown}: cannot create it, {parent} is not a directory")
    _writable(parent, shown, error)


def _writable(parent: Path, shown: str, error: type[Exception]) -> None:
    if not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"{shown}: cannot write into {parent} (permission denied); the output is staged there")
    return None


def report_beside(export_dir: str | Path) -> Path:
    """``DIR-report`` beside the export ``DIR``: where a report of it goes by default, so that
    replacing the export (an in-place rebuild, ``assign``) never touches the report."""
    export_dir = Path(export_dir).resolve()
    return export_dir.with_name(f"{export_dir.name}-{REPORT_DIR}")


def move_inner_report(export_dir: str | Path) -> Path | None:
    """Move a report an older version wrote inside the export (``DIR/report``) to
    :func:`report_beside`, before the export is replaced (which would remove it with the
    directory); return where it went, or None when there was none to move. A report is moved
    only when it is one (:func:`foreign_in_report`) and the name beside is free; otherwise
    it stays, and the check before the swap decides."""
    inner = Path(export_dir) / REPORT_DIR
    if not inner.is_dir() or inner.is_symlink() or foreign_in_report(inner) != []:
        return None
    dst = report_beside(export_dir)
    if dst.exists() or dst.is_symlink():
        log.warning("%s is a report an older version wrote inside the export; %s exists, so it is "
                    "replaced with the export", inner, dst)
        return None
    os.replace(inner, dst)
    log.warning("moved %s (a report an older version wrote inside the export) to %s, where reports now go", inner, dst)
    return dst
