"""Tests for semantic_ids.export.atomic: atomic files and all-or-nothing directory swaps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semantic_ids.export import atomic
from semantic_ids.export.atomic import atomic_write_bytes, atomic_write_table, recover_dir, restore_if_missing, staged_dir

from .conftest import ROOT


def snapshot(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under root (directories as None)."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[p.relative_to(root).as_posix()] = p.read_bytes() if p.is_file() else None
    return out


def make_export(root: Path, tag: str) -> None:
    root.mkdir(parents=True)
    (root / "codes.bin").write_bytes(bytes(range(256)) + tag.encode())
    (root / "meta.json").write_text(f'{{"tag": "{tag}"}}', encoding="utf-8")
    (root / "sub").mkdir()
    (root / "sub" / "deep.txt").write_text(tag * 3, encoding="utf-8")


def names(parent: Path) -> list[str]:
    # the writers' lock file (.NAME.lock) stays beside the directory by design
    return sorted(p.name for p in parent.iterdir() if not p.name.endswith(".lock"))


# --------------------------------------------------------------------------- files


def test_atomic_write_bytes_creates_and_overwrites(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"one")
    assert path.read_bytes() == b"one"
    atomic_write_bytes(str(path), b"\x00two\xff")
    assert path.read_bytes() == b"\x00two\xff"
    assert names(tmp_path) == ["f.bin"]  # no temporary files left


def test_atomic_write_bytes_empty(tmp_path):
    path = tmp_path / "empty"
    atomic_write_bytes(path, b"")
    assert path.read_bytes() == b""


def test_atomic_write_bytes_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert names(tmp_path) == ["f.bin"]


def test_atomic_write_bytes_missing_parent(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "no" / "f.bin", b"x")
    assert names(tmp_path) == []


def test_atomic_write_table_round_trip(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    atomic_write_table(path, table)
    assert pq.read_table(path).equals(table)
    atomic_write_table(path, table.slice(0, 1))
    assert pq.read_table(path).num_rows == 1
    assert names(tmp_path) == ["t.parquet"]


# --------------------------------------------------------------------------- staged_dir


def test_staged_dir_creates_new_target(tmp_path):
    target = tmp_path / "out" / "export"  # parent does not exist yet
    with staged_dir(target) as stage:
        assert stage.is_dir()
        assert list(stage.iterdir()) == []
        assert stage.parent == target.parent
        assert not target.exists()  # nothing visible until success
        (stage / "a.txt").write_text("hello", encoding="utf-8")
    assert snapshot(target) == {"a.txt": b"hello"}
    assert names(target.parent) == ["export"]


def test_staged_dir_replaces_on_success(tmp_path):
    target = tmp_path / "export"
    make_export(target, "v1")
    with staged_dir(target) as stage:
        # The old directory is untouched while the new one is being written.
        assert (target / "meta.json").read_text(encoding="utf-8") == '{"tag": "v1"}'
        (stage / "meta.json").write_text('{"tag": "v2"}', encoding="utf-8")
    # Old files that the new version lacks are gone: a replacement, not a merge.
    assert snapshot(target) == {"meta.json": b'{"tag": "v2"}'}
    assert names(tmp_path) == ["export"]  # no staging or backup leftovers


def test_staged_dir_exception_leaves_previous_byte_identical(tmp_path):
    target = tmp_path / "export"
    make_export(target, "v1")
    before = snapshot(target)
    with pytest.raises(RuntimeError, match="half way"):
        with staged_dir(target) as stage:
            (stage / "meta.json").write_text('{"tag": "v2"}', encoding="utf-8")
            (stage / "sub").mkdir()
            (stage / "sub" / "partial.bin").write_bytes(b"\x00" * 100)
            raise RuntimeError("half way")
    assert snapshot(target) == before
    assert names(tmp_path) == ["export"]


def test_staged_dir_exception_without_previous_target(tmp_path):
    target = tmp_path / "export"
    with pytest.raises(ValueError):
        with staged_dir(target) as stage:
            (stage / "x").write_bytes(b"x")
            raise ValueError
    assert not target.exists()
    assert names(tmp_path) == []


def test_staged_dir_keyboard_interrupt_cleans_up(tmp_path):
    target = tmp_path / "export"
    make_export(target, "v1")
    before = snapshot(target)
    with pytest.raises(KeyboardInterrupt):
        with staged_dir(target):
            raise KeyboardInterrupt
    assert snapshot(target) == before
    assert names(tmp_path) == ["export"]


def test_staged_dir_repeated(tmp_path):
    target = tmp_path / "export"
    for i in range(3):
        with staged_dir(target) as stage:
            (stage / "n").write_text(str(i), encoding="utf-8")
    assert (target / "n").read_text(encoding="utf-8") == "2"
    assert names(tmp_path) == ["export"]


def test_staged_dir_failed_swap_keeps_previous(tmp_path, monkeypatch):
    target = tmp_path / "export"
    make_export(target, "v1")
    before = snapshot(target)
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the staging -> target rename
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="rename failed"):
        with staged_dir(target) as stage:
            (stage / "meta.json").write_text("new", encoding="utf-8")
    assert target.exists() and snapshot(target) == before


# --------------------------------------------------------------------------- recover_dir


def test_recover_dir_restores_backup_when_target_missing(tmp_path):
    target = tmp_path / "export"
    backup = tmp_path / ".export.old-1234abcd"
    make_export(backup, "v1")
    before = snapshot(backup)
    (tmp_path / ".export.staging-1234abcd").mkdir()  # half-written new version
    (tmp_path / ".export.staging-1234abcd" / "x").write_bytes(b"partial")
    recover_dir(target)
    assert snapshot(target) == before
    assert names(tmp_path) == ["export"]


def test_recover_dir_drops_stale_backup_when_target_exists(tmp_path):
    target = tmp_path / "export"
    make_export(target, "v2")
    before = snapshot(target)
    make_export(tmp_path / ".export.old-aaaa0000", "v1")
    (tmp_path / ".export.staging-bbbb1111").mkdir()
    recover_dir(target)
    assert snapshot(target) == before
    assert names(tmp_path) == ["export"]


def test_recover_dir_ignores_other_directories(tmp_path):
    target = tmp_path / "export"
    (tmp_path / ".other.old-aaaa0000").mkdir()
    (tmp_path / "export2").mkdir()
    recover_dir(target)
    assert not target.exists()
    assert names(tmp_path) == [".other.old-aaaa0000", "export2"]


def test_recover_dir_noop_when_clean(tmp_path):
    target = tmp_path / "export"
    make_export(target, "v1")
    before = snapshot(target)
    recover_dir(target)
    recover_dir(tmp_path / "never-existed")
    assert snapshot(target) == before
    assert names(tmp_path) == ["export"]


def test_staged_dir_recovers_interrupted_swap_first(tmp_path):
    # A crash between the two renames left only the backup; a failing next build
    # must still leave the previous version in place.
    target = tmp_path / "export"
    make_export(tmp_path / ".export.old-deadbeef", "v1")
    before = snapshot(tmp_path / ".export.old-deadbeef")
    with pytest.raises(RuntimeError):
        with staged_dir(target):
            raise RuntimeError("fail")
    assert snapshot(target) == before
    assert names(tmp_path) == ["export"]


# --------------------------------------------------------------------------- SIGKILL inside the swap

SWAP = """
import sys
from pathlib import Path
from semantic_ids.export.atomic import staged_dir
with staged_dir(Path(sys.argv[1])) as stage:
    (stage / "meta.json").write_text('{"tag": "v2"}', encoding="utf-8")
"""


@pytest.mark.parametrize(
    "point, left, survivor",
    [
        ("atomic.staged", ["export", "staging"], "v1"),  # staged and fsynced, nothing renamed yet
        ("atomic.between_renames", ["old", "staging"], "v1"),  # the export is missing: only its backup is left
        ("atomic.swapped", ["export", "old"], "v2"),  # swapped in, the backup not yet removed
    ],
    ids=["staged", "between_renames", "swapped"],
)
def test_sigkill_inside_the_swap_leaves_the_old_or_the_new_directory(tmp_path, point, left, survivor):
    parent = tmp_path / "d"
    target = parent / "export"
    make_export(target, "v1")
    before = snapshot(target)
    log = tmp_path / "fault.log"
    env = {**os.environ, "SEMANTIC_IDS_FAULT": point, "SEMANTIC_IDS_FAULT_LOG": str(log)}
    env.pop("SEMANTIC_IDS_FAULT_MODE", None)
    proc = subprocess.run([sys.executable, "-c", SWAP, str(target)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert log.read_text() == f"{point}@1\n"  # the kill landed at this point
    assert sorted(n if n == "export" else n.split(".")[2].split("-")[0] for n in names(parent)) == left

    expected = before if survivor == "v1" else {"meta.json": b'{"tag": "v2"}'}
    restore_if_missing(target)  # what a reader does first
    assert snapshot(target) == expected
    recover_dir(target)  # what the next writer does first: the killed run's leftovers go
    assert snapshot(target) == expected
    assert names(parent) == ["export"]
