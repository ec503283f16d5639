"""Real interruptions: SIGKILL a build during embedding, training and export, then rerun.

The rerun resumes (embedding cache, training checkpoint) and its export is
byte-identical to an uninterrupted run's; a killed run never leaves a broken
export behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semantic_ids.export import verify_export

from .conftest import ROOT, clustered_embeddings

N = 3000


def write_inputs(tmp: Path, epochs: int = 60) -> None:
    df = pd.DataFrame({"item_id": [f"i{i:05d}" for i in range(N)], "title": [f"product {i} for sale" for i in range(N)]})
    df.to_parquet(tmp / "cat.parquet")
    np.save(tmp / "emb.npy", clustered_embeddings(N, dim=64, clusters=40))
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


def run_until(cmd: list[str], condition, timeout: float = 240.0) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``condition()`` holds."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if condition():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            if proc.poll() is not None:
                pytest.fail(f"the run finished (rc={proc.returncode}) before it could be killed")
            time.sleep(0.05)
        pytest.fail("condition never held")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def checkpoint_epochs(tmp: Path) -> int:
    from semantic_ids.checkpoint import Checkpoint

    dirs = list((tmp / "cache" / "checkpoints").glob("*/state.safetensors"))
    if not dirs:
        return 0
    try:
        return Checkpoint(dirs[0].parent.parent, dirs[0].parent.name).epochs_done()
    except Exception:  # noqa: BLE001 - being written right now
        return 0


@pytest.mark.slow
def test_sigkill_during_training_resumes_to_identical_export(tmp_path):
    write_inputs(tmp_path)
    subprocess.run(build_cmd(tmp_path, "ref"), check=True, cwd=ROOT, capture_output=True)
    assert not list((tmp_path / "cache" / "checkpoints").glob("*/state.safetensors")), "checkpoint removed after export"

    run_until(build_cmd(tmp_path, "out"), lambda: checkpoint_epochs(tmp_path) >= 5)
    done = checkpoint_epochs(tmp_path)
    assert 5 <= done < 60
    proc = subprocess.run(build_cmd(tmp_path, "out"), cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ["semantic_ids.parquet", "model.safetensors"]:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


@pytest.mark.slow
def test_sigkill_during_export_never_breaks_the_previous_one(tmp_path):
    write_inputs(tmp_path, epochs=3)
    subprocess.run(build_cmd(tmp_path, "out"), check=True, cwd=ROOT, capture_output=True)
    before = (tmp_path / "out" / "semantic_ids.parquet").read_bytes()
    (tmp_path / "cfg.toml").write_text((tmp_path / "cfg.toml").read_text().replace("epochs = 3", "epochs = 4"))
    # kill at a spread of moments around the end of the run: each time, "out" must load
    for delay in np.linspace(0.5, 6.0, 8):
        proc = subprocess.Popen(build_cmd(tmp_path, "out"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(delay))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        verify_export(tmp_path / "out")  # old or new, never broken
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.") and not p.name.endswith(".lock")]
        assert len(leftovers) <= 1  # at most the staging dir of the killed run, cleaned on the next run
    # an uninterrupted run then completes, and its export is the one a clean build gives
    subprocess.run(build_cmd(tmp_path, "out"), check=True, cwd=ROOT, capture_output=True)
    subprocess.run(build_cmd(tmp_path, "clean"), check=True, cwd=ROOT, capture_output=True)
    after = (tmp_path / "out" / "semantic_ids.parquet").read_bytes()
    assert after == (tmp_path / "clean" / "semantic_ids.parquet").read_bytes()
    assert len(before) > 0


@pytest.mark.slow
def test_sigkill_during_embedding_keeps_the_cache(tmp_path):
    write_inputs(tmp_path, epochs=2)
    shards = lambda: list((tmp_path / "cache" / "embeddings").glob("*/shard-*.parquet"))  # noqa: E731
    run_until(build_cmd(tmp_path, "out", embeddings=False), lambda: len(shards()) >= 2)
    kept = len(shards())
    assert kept >= 2 and not (tmp_path / "out").exists()
    proc = subprocess.run(build_cmd(tmp_path, "out", embeddings=False) + ["--json"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["embedding"]["cached"] >= kept * 256
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
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    old = pd.read_parquet(tmp_path / "out" / "semantic_ids.parquet")
    assign = [sys.executable, "-m", "semantic_ids", "assign", str(tmp_path / "out"), "--catalog", str(tmp_path / "cat.parquet"),
              "--embeddings", str(tmp_path / "emb.npy"), "--no-progress"]
    for delay in np.linspace(0.3, 5.0, 6):
        proc = subprocess.Popen(assign, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(delay))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        SemanticIDLookup.load(tmp_path / "out")  # loads: checksums verify, old or new
        now = pd.read_parquet(tmp_path / "out" / "semantic_ids.parquet")
        assert len(now) in (half, N)  # the old export or the complete new one
        pd.testing.assert_frame_equal(now.iloc[:half].reset_index(drop=True), old)  # old IDs never move
