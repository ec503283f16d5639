"""The Python API's train time against the command line's, beside a busy process.

    python benchmarks/api_threads.py                # 600 items, 3 rounds
    python benchmarks/api_threads.py --items 2000 --rounds 5

The command line sets ``OMP_WAIT_POLICY=PASSIVE`` for its own process before
torch loads; a Python caller's environment is left alone, and the package
instead loads torch with passive waiting when it imports torch first
(:mod:`semantic_ids.threads`). This builds the same small catalog (clustered
384-d embeddings given, the default config) in fresh processes, one core kept
busy by another process throughout, in rounds that interleave:

- ``cli``: ``semantic-ids build --embeddings ...``;
- ``api``: ``from semantic_ids import build; build(...)`` (the package imports torch);
- ``api, torch imported first``: ``import torch`` before the package, which
  then cannot choose torch's waiting policy: what every API build got before.

No process gets ``OMP_WAIT_POLICY`` from this script. Each reports its train
stage's seconds (``metrics.json``), whether ``os.environ`` was the same after
``import semantic_ids`` and after ``build()``, and the export's codes hash.
Prints a table (median over rounds) and the API/CLI ratio, and writes
benchmarks/results/api_threads.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LIMIT = 1.3  # the API's train time may be at most this many times the command line's

API = """
import json, os, sys
sys.path.insert(0, {root!r})
{pre}
env = dict(os.environ)
import semantic_ids
same_import = dict(os.environ) == env
from semantic_ids import build
build({out!r}, catalog={catalog!r}, embeddings={emb!r}, show_progress=False)
print(json.dumps({{"env_unchanged_import": same_import, "env_unchanged_build": dict(os.environ) == env}}))
"""


def catalog(tmp: Path, n: int) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 384))[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, 384))
    emb = tmp / "emb.npy"
    np.save(emb, (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    cat = tmp / "items.csv"
    pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "title": [f"item {i}" for i in range(n)]}).to_csv(cat, index=False)
    return cat, emb


def codes_sha(path: Path) -> str:
    """The IDs' hash: ids and codes, without the file's metadata (which holds the config)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["item_id", "codes"])
    return hashlib.sha256(str(table.to_pydict()).encode()).hexdigest()[:16]


def run(arm: str, tmp: Path, cat: Path, emb: Path, k: int) -> dict:
    out = tmp / f"{arm.replace(' ', '-').replace(',', '')}-{k}"
    env = {key: v for key, v in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    if arm == "cli":
        cmd = [sys.executable, "-m", "semantic_ids.cli.main", "build", "--catalog", str(cat), "--embeddings", str(emb),
               "--out", str(out), "--no-progress"]
    else:
        pre = "import torch" if "torch imported first" in arm else ""
        cmd = [sys.executable, "-c", API.format(root=str(ROOT), pre=pre, out=str(out), catalog=str(cat), emb=str(emb))]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{arm}: failed\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    row = {"arm": arm, "round": k, "train_s": metrics["stages"]["train"]["seconds"], "wall_s": round(wall, 2),
           "codes_sha256": codes_sha(out / "semantic_ids.parquet")}
    if arm != "cli":
        row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "api_threads.json"))
    args = ap.parse_args()
    arms = ["cli", "api", "api, torch imported first"]
    rows = []
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # another job on one core
    try:
        with tempfile.TemporaryDirectory() as tmp_s:
            tmp = Path(tmp_s)
            cat, emb = catalog(tmp, args.items)
            for k in range(args.rounds):
                for arm in arms:
                    rows.append(run(arm, tmp, cat, emb, k))
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        hog.kill()
    med = {a: statistics.median(r["train_s"] for r in rows if r["arm"] == a) for a in arms}
    summary = [{"arm": a, "train_s_median": round(med[a], 2), "vs_cli": round(med[a] / med["cli"], 2),
                "train_s": [r["train_s"] for r in rows if r["arm"] == a]} for a in arms]
    ok = med["api"] <= LIMIT * med["cli"]
    env_ok = all(r.get("env_unchanged_import", True) and r.get("env_unchanged_build", True) for r in rows)
    same_ids = len({r["codes_sha256"] for r in rows}) == 1
    print(f"\n{args.items} items, default config, beside a busy process; train seconds, median of {args.rounds} rounds\n")
    print(f"| {'arm':28s} | train s | vs cli |")
    print(f"|{'-' * 30}|---------|--------|")
    for s in summary:
        print(f"| {s['arm']:28s} | {s['train_s_median']:7.2f} | {s['vs_cli']:5.2f}x |")
    print(f"\napi / cli = {med['api'] / med['cli']:.2f} (at most {LIMIT}: {'yes' if ok else 'NO'}); "
          f"os.environ unchanged by import and build: {env_ok}; identical IDs in every run: {same_ids}")
    env = {"items": args.items, "rounds": args.rounds, "busy_processes": 1, "cpus": os.cpu_count(),
           "python": platform.python_version(), "load_1m_at_end": round(os.getloadavg()[0], 2)}
    Path(args.out).write_text(json.dumps({"env": env, "limit": LIMIT, "api_within_limit": ok, "environ_unchanged": env_ok,
                                          "identical_ids": same_ids, "summary": summary, "runs": rows}, indent=1) + "\n")
    return 0 if ok and env_ok and same_ids else 1


if __name__ == "__main__":
    sys.exit(main())
