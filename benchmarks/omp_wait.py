"""Training time under OpenMP's spin-waiting (ACTIVE) and passive waiting (PASSIVE).

    python benchmarks/omp_wait.py

The command line sets OMP_WAIT_POLICY=PASSIVE before torch loads; this
runs the same training (15,000 clustered 384-d items, default model, 3 epochs,
2 torch threads) in one fresh process per policy and prints the times and
whether the weights are identical, once on an idle machine and once beside a
busy process (one core spinning: a machine shared with another job); writes
benchmarks/results/omp_wait.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys, time, numpy as np, torch
sys.path.insert(0, {root!r})
from semantic_ids.config import ModelConfig, TrainConfig
from semantic_ids.stages.train import train_rqvae
torch.set_num_threads(2)
rng = np.random.default_rng(0)
x = rng.normal(size=(200, 384))[rng.integers(0, 200, 15000)] + 0.5 * rng.normal(size=(15000, 384))
x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
start = time.perf_counter()
r = train_rqvae(x, ModelConfig(), TrainConfig(epochs=3, checkpoint_every=0), show_progress=False)
print(round(time.perf_counter() - start, 1))
torch.save(r.model.state_dict(), sys.argv[1])
"""


def main() -> int:
    import torch

    rows = []
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            rows.append(run(torch, "beside a busy process" if busy else "idle machine"))
        finally:
            if hog is not None:
                hog.kill()
    out = ROOT / "benchmarks" / "results" / "omp_wait.json"
    out.write_text(json.dumps({"threads": 2, "items": 15000, "epochs": 3, "rows": rows}, indent=2))
    return 0


def run(torch, label: str) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for policy in ("ACTIVE", "PASSIVE"):
            path = str(Path(tmp) / policy)
            proc = subprocess.run(
                [sys.executable, "-c", SCRIPT.format(root=str(ROOT)), path],
                env={**os.environ, "OMP_WAIT_POLICY": policy}, capture_output=True, text=True, check=True,
            )
            out[policy] = (float(proc.stdout.strip().splitlines()[-1]), torch.load(path))
    same = all(torch.equal(out["ACTIVE"][1][k], out["PASSIVE"][1][k]) for k in out["ACTIVE"][1])
    print(f"{label}: train 15,000 items x 3 epochs: ACTIVE {out['ACTIVE'][0]} s, PASSIVE {out['PASSIVE'][0]} s "
          f"({out['ACTIVE'][0] / out['PASSIVE'][0]:.1f}x); identical weights: {same}")
    return {"machine": label, "active_s": out["ACTIVE"][0], "passive_s": out["PASSIVE"][0], "identical_weights": same}


if __name__ == "__main__":
    sys.exit(main())
