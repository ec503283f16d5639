"""The package's effect on the process: thread settings restored, os.environ untouched,
torch's OpenMP loaded with passive waiting when the package imports torch first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from threadpoolctl import threadpool_info

from semantic_ids.threads import fixed_threads

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os, sys
{pre}
env = dict(os.environ)
import numpy as np, pandas as pd
import semantic_ids
after_import = dict(os.environ)
from semantic_ids import BuildConfig, build
n = 300
emb = np.random.default_rng(0).normal(size=(n, 16)).astype("float32")
build(sys.argv[1], catalog=pd.DataFrame({{"item_id": range(n), "title": ["x"] * n}}), embeddings=emb,
      config=BuildConfig().replace(train={{"epochs": 1, "checkpoint_every": 0}}), show_progress=False)
diff = lambda d: sorted(k for k in set(env) | set(d) if env.get(k) != d.get(k))
print(json.dumps({{"import": diff(after_import), "build": diff(dict(os.environ))}}))
"""


def run(tmp_path, pre: str = "", **env) -> tuple[dict, str]:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(pre=pre), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), "OMP_DISPLAY_ENV": "VERBOSE", **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def spin_counts(stderr: str) -> list[str]:
    """GOMP_SPINCOUNT of each OpenMP runtime as it loaded (torch's first, then FAISS's)."""
    return [line.split("=")[1].strip().strip("'") for line in stderr.splitlines() if "GOMP_SPINCOUNT" in line]


def test_import_and_build_leave_environ_unchanged_and_torch_waits_passively(tmp_path):
    changed, stderr = run(tmp_path)
    assert changed == {"import": [], "build": []}
    assert spin_counts(stderr)[:1] == ["0"], "torch's OpenMP should wait passively (spin count 0)"


def test_a_process_that_loaded_torch_or_chose_a_policy_keeps_it(tmp_path):
    changed, stderr = run(tmp_path, pre="import torch")
    assert changed == {"import": [], "build": []}
    assert spin_counts(stderr)[:1] != ["0"], "torch was loaded before the package: its policy is the default"
    changed, stderr = run(tmp_path, OMP_WAIT_POLICY="ACTIVE")
    assert changed == {"import": [], "build": []}
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in stderr


def test_fixed_threads_restores_the_callers_settings():
    before = torch.get_num_threads()
    pools = [p["num_threads"] for p in threadpool_info()]
    env = dict(os.environ)
    with fixed_threads(1):
        assert torch.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
        os.environ["SEMANTIC_IDS_TEST_SET_BY_A_LIBRARY"] = "1"
    assert torch.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info()] == pools
    assert dict(os.environ) == env
    with fixed_threads(0):  # 0: the caller's settings, untouched
        assert torch.get_num_threads() == before
