"""Real interruptions: SIGKILL a build at named points during embedding, training, export and assign, then rerun.

Each kill lands at a fault point (:mod:`semantic_ids.faults`): the child runs with
``SEMANTIC_IDS_FAULT=<point>`` and kills itself there, and every test checks both
that it died by SIGKILL and that the fault log names that point, so the window a
test claims to cover is the one it covered, on any machine.

The rerun resumes (embedding cache, training checkpoint, streaming shards) and its
export is byte-identical to an uninterrupted run's; a killed run never leaves a
broken export behind, and the next run clears what it left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semantic_ids import faults
from semantic_ids.export.io import verify_export

from .conftest import ROOT, clustered_embeddings

N = 3000
EXPORT_FILES = ["semantic_ids.parquet", "model.safetensors"]


def write_inputs(tmp: Path, epochs: int = 60, n: int = N) -> None:
    df = pd.DataFrame({"item_id": [f"i{i:05d}" for i in range(n)], "title": [f"product {i} for sale" for i in range(n)]})
    df.to_parquet(tmp / "cat.parquet")
    np.save(tmp / "emb.npy", clustered_embeddings(n, dim=64, clusters=40))
    (tmp / "cfg.toml").write_text(
        f"""
[embedding]
cache_dir = "{tmp / 'cache'}"
flush_every = 256
batch_size = 32
[model]
codebook_sizes = [32, 32, 32]
hidden_dims = [256, 128]
[train]
epochs = {epochs}
batch_size = 128
checkpoint_every = 1
"""
    )


def build_cmd(tmp: Path, out: str, embeddings: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "semantic_ids", "build", "--catalog", str(tmp / "cat.parquet"), "--out", str(tmp / out),
           "--config", str(tmp / "cfg.toml"), "--no-progress"]
    return cmd + (["--embeddings", str(tmp / "emb.npy")] if embeddings else [])


def clean_env() -> dict[str, str]:
    """The environment without any armed fault (for the runs that must finish)."""
    return {k: v for k, v in os.environ.items() if k not in (faults.FAULT_ENV, faults.LOG_ENV, faults.MODE_ENV)}


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion, unarmed; fail with its stderr if it fails."""
    proc = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def kill_at(cmd: list[str], point: str, log: Path) -> None:
    """Run ``cmd`` with ``point`` (``NAME`` or ``NAME@N``) armed; assert that it was SIGKILLed there."""
    log.unlink(missing_ok=True)
    env = {**clean_env(), faults.FAULT_ENV: point, faults.LOG_ENV: str(log)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == -signal.SIGKILL, f"{point}: rc={proc.returncode}, expected SIGKILL\n{proc.stderr[-3000:]}"
    name, nth = faults.parse(point)
    assert log.read_text() == f"{name}@{nth}\n", f"the kill did not land at {point}"


def checkpoint_epochs(tmp: Path) -> list[int]:
    """Epochs done by each training checkpoint under the cache (none once an export removed it)."""
    from semantic_ids.stages.checkpoint import Checkpoint

    states = sorted((tmp / "cache" / "checkpoints").glob("*/state.safetensors"))
    return [Checkpoint(s.parent.parent, s.parent.name).epochs_done() for s in states]


def sidecars(parent: Path, name: str) -> list[str]:
    """Kinds of the staging and backup directories beside export ``name`` (its lock file aside)."""
    return sorted(p.name.split(".")[2].split("-")[0] for p in parent.glob(f".{name}.*") if not p.name.endswith(".lock"))


@pytest.mark.slow
def test_sigkill_during_training_resumes_to_identical_export(tmp_path):
    write_inputs(tmp_path)
    run(build_cmd(tmp_path, "ref"))
    assert checkpoint_epochs(tmp_path) == [], "checkpoint removed after export"

    kill_at(build_cmd(tmp_path, "out"), "checkpoint.saved@5", tmp_path / "fault.log")
    assert checkpoint_epochs(tmp_path) == [5]  # killed right after epoch 5's checkpoint, before epoch 6's
    assert not (tmp_path / "out").exists()
    proc = run([sys.executable, "-m", "semantic_ids", "-v", *build_cmd(tmp_path, "out")[3:]])
    assert "resuming training from the checkpoint after epoch 5" in proc.stderr
    for name in EXPORT_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert checkpoint_epochs(tmp_path) == []


# In the order a build reaches them; the second item: whether the export is the new one after the kill.
EXPORT_POINTS = [
    ("export.ids_written", False),  # semantic_ids.parquet staged, the other files not yet
    ("atomic.staged", False),  # every file staged and fsynced, nothing renamed
    ("atomic.between_renames", False),  # the old export renamed to its backup, the new one not yet in place
    ("atomic.swapped", True),  # the new export in place, the backup not yet removed
]


@pytest.mark.slow
def test_sigkill_during_export_never_breaks_the_previous_one(tmp_path):
    write_inputs(tmp_path, epochs=3)
    run(build_cmd(tmp_path, "out"))
    before = {name: (tmp_path / "out" / name).read_bytes() for name in EXPORT_FILES}
    (tmp_path / "cfg.toml").write_text((tmp_path / "cfg.toml").read_text().replace("epochs = 3", "epochs = 4"))
    run(build_cmd(tmp_path, "clean"))  # what an uninterrupted build of the new config gives
    after = {name: (tmp_path / "clean" / name).read_bytes() for name in EXPORT_FILES}
    assert before != after

    left = {"export.ids_written": ["staging"], "atomic.staged": ["staging"], "atomic.between_renames": ["old", "staging"],
            "atomic.swapped": ["old"], "api.exported": []}
    for point, fresh in EXPORT_POINTS + [("api.exported", True)]:  # api.exported: swapped, the checkpoint not yet removed
        kill_at(build_cmd(tmp_path, "out"), point, tmp_path / "fault.log")
        # the killed run's own leftovers, and only those: each run first clears what an earlier kill left
        assert sidecars(tmp_path, "out") == left[point], point
        verify_export(tmp_path / "out")  # old or new, never broken (a reader restores a half-done swap)
        now = {name: (tmp_path / "out" / name).read_bytes() for name in EXPORT_FILES}
        assert now == (after if fresh else before), point
        assert checkpoint_epochs(tmp_path) == [4], point  # trained once; every later run resumed at the end
    # an uninterrupted run then completes, clears the leftovers and the checkpoint, and gives the clean build's export
    run(build_cmd(tmp_path, "out"))
    assert {name: (tmp_path / "out" / name).read_bytes() for name in EXPORT_FILES} == after
    assert sidecars(tmp_path, "out") == []
    assert checkpoint_epochs(tmp_path) == []


@pytest.mark.slow
def test_sigkill_during_embedding_keeps_the_cache(tmp_path):
    write_inputs(tmp_path, epochs=2)
    shards = lambda: list((tmp_path / "cache" / "embeddings").glob("*/shard-*.parquet"))  # noqa: E731
    kill_at(build_cmd(tmp_path, "out", embeddings=False), "cache.shard_written@2", tmp_path / "fault.log")
    assert len(shards()) == 2 and not (tmp_path / "out").exists()
    proc = run(build_cmd(tmp_path, "out", embeddings=False) + ["--json"])
    metrics = json.loads(proc.stdout)
    assert metrics["embedding"]["cached"] == 2 * 256  # flush_every: both shards the killed run flushed
    assert metrics["embedding"]["cached"] + metrics["embedding"]["computed"] == N


@pytest.mark.slow
def test_sigkill_during_assign_leaves_a_readable_export(tmp_path):
    from semantic_ids.lookup import SemanticIDLookup

    write_inputs(tmp_path, epochs=2)
    half = N // 2
    full = pd.read_parquet(tmp_path / "cat.parquet")
    full.iloc[:half].to_parquet(tmp_path / "old.parquet")
    emb = np.load(tmp_path / "emb.npy")
    np.save(tmp_path / "old.npy", emb[:half])
    cmd = [sys.executable, "-m", "semantic_ids", "build", "--catalog", str(tmp_path / "old.parquet"), "--out", str(tmp_path / "out"),
           "--config", str(tmp_path / "cfg.toml"), "--embeddings", str(tmp_path / "old.npy"), "--no-progress"]
    run(cmd)
    old = pd.read_parquet(tmp_path / "out" / "semantic_ids.parquet")
    shutil.copytree(tmp_path / "out", tmp_path / "ref")

    def assign(export: str) -> list[str]:
        return [sys.executable, "-m", "semantic_ids", "assign", str(tmp_path / export), "--catalog", str(tmp_path / "cat.parquet"),
                "--embeddings", str(tmp_path / "emb.npy"), "--no-progress"]

    run(assign("ref"))  # an uninterrupted assign
    ref = pd.read_parquet(tmp_path / "ref" / "semantic_ids.parquet")
    assert len(ref) == N
    for point, fresh in EXPORT_POINTS:
        kill_at(assign("out"), point, tmp_path / "fault.log")
        SemanticIDLookup.load(tmp_path / "out")  # loads: checksums verify
        now = pd.read_parquet(tmp_path / "out" / "semantic_ids.parquet")
        # the old export, or the complete new one (the uninterrupted assign's)
        pd.testing.assert_frame_equal(now, ref if fresh else old, obj=point)
        pd.testing.assert_frame_equal(now.iloc[:half].reset_index(drop=True), old)  # old IDs never move


@pytest.mark.slow
def test_sigkill_during_a_streaming_build_resumes_to_identical_ids(tmp_path):
    n, rows = 600, 128
    write_inputs(tmp_path, epochs=2, n=n)

    def stream(out: str, work: str) -> list[str]:
        return build_cmd(tmp_path, out, embeddings=False) + ["--streaming", "--work-dir", str(tmp_path / work), "--batch-rows", str(rows)]

    run(stream("ref", "work-ref"))  # also fills the embedding cache, so both builds embed nothing twice
    ref = pd.read_parquet(tmp_path / "ref" / "semantic_ids.parquet")
    shard_dir = lambda: next((tmp_path / "work" / "embeddings").iterdir())  # noqa: E731

    runs = lambda: sorted((tmp_path / "work").glob("run-*"))  # noqa: E731
    kill_at(stream("out", "work"), "stream.embed_shard_written@2", tmp_path / "fault.log")
    assert len(list(shard_dir().glob("part-*.parquet"))) == 2 and not (tmp_path / "out").exists()
    left = runs()
    assert len(left) == 1  # SIGKILL skips the cleanup: the killed run left its work directory
    for point in ["stream.codes_written@2", "stream.resolve_partition_written@2"]:
        kill_at(stream("out", "work"), point, tmp_path / "fault.log")
        assert not (tmp_path / "out").exists(), point
        assert not left[0].exists() and len(runs()) == 1, point  # the next build removed the dead run's; left its own
        left = runs()
    proc = run(stream("out", "work") + ["--json"])
    assert json.loads(proc.stdout)["embedding"]["resumed"] == n  # every shard was kept by the killed runs
    assert runs() == []  # the last dead run's directory is gone too, and the finished build removed its own
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "semantic_ids.parquet"), ref)
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (tmp_path / "ref" / "model.safetensors").read_bytes()
