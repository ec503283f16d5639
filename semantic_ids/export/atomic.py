"""Atomic writes: a file or a whole export directory appears complete or not at all.

Files are written to a temporary name beside the target, flushed, fsynced and
``os.replace``d. A directory is staged beside its target and swapped in with
two renames; :func:`recover_dir` puts back the previous directory if a crash
fell between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import faults


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not supported on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_table(path: str | Path, table: pa.Table, **kwargs) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp, **kwargs)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _sidecars(target: Path, kind: str) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.{kind}-*"))


_held: dict[str, int] = {}
_held_lock = threading.RLock()


@contextlib.contextmanager
def dir_lock(target: str | Path) -> Iterator[None]:
    """Exclusive lock for writers of ``target`` (a ``.NAME.lock`` file beside it).

    Re-entrant within a process, so ``assign`` can hold it across its
    read-modify-write while the export writer takes it again. The lock file
    exists only while a writer holds it: the holder unlinks it before
    unlocking, and a waiter that then wins the lock on the unlinked file sees
    that the path no longer names its file and tries again.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    key = str(target.resolve())
    with _held_lock:
        if key in _held:
            _held[key] += 1
            reentrant = True
        else:
            reentrant = False
    if reentrant:
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    lock_path = target.with_name(f".{target.name}.lock")
    fd = _acquire(lock_path)
    try:
        with _held_lock:
            _held[key] = 1
        try:
            yield
        finally:
            with _held_lock:
                del _held[key]
            lock_path.unlink(missing_ok=True)  # still locked: no one else can be using this file
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(lock_path: Path) -> int:
    """An fd holding an exclusive flock on the file that ``lock_path`` names now."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)  # the previous holder removed it: lock the new file instead


def restore_if_missing(target: str | Path) -> None:
    """If a crash fell between a swap's two renames, put the previous directory back.

    Safe for readers: it never touches staging directories.
    """
    target = Path(target)
    if target.exists():
        return
    backups = _sidecars(target, "old")
    if backups:
        with dir_lock(target):
            backups = _sidecars(target, "old")
            if not target.exists() and backups:
                os.replace(backups[-1], target)


def recover_dir(target: str | Path) -> None:
    """Undo an interrupted swap and drop stale staging directories (writers only,
    under :func:`dir_lock`)."""
    target = Path(target)
    with dir_lock(target):
        backups = _sidecars(target, "old")
        if not target.exists() and backups:
            os.replace(backups[-1], target)
            backups = backups[:-1]
        for stale in backups + _sidecars(target, "staging"):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``target``.

    If the body raises, ``target`` is left exactly as it was and the staging
    directory is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with dir_lock(target):
        recover_dir(target)
        with _staged(target) as staging:
            yield staging


@contextlib.contextmanager
def _staged(target: Path) -> Iterator[Path]:
    token = uuid.uuid4().hex[:8]
    staging = target.with_name(f".{target.name}.staging-{token}")
    staging.mkdir()
    try:
        yield staging
        for f in staging.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(staging)
        faults.point("atomic.staged")
        backup = target.with_name(f".{target.name}.old-{token}")
        if target.exists():
            os.replace(target, backup)
            faults.point("atomic.between_renames")
        try:
            os.replace(staging, target)
        except BaseException:
            if backup.exists() and not target.exists():
                os.replace(backup, target)
            raise
        _fsync_dir(target.parent)
        faults.point("atomic.swapped")
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
