"""Command start-up times: this working tree beside an earlier commit, in the same run.

    python benchmarks/startup.py                 # 5 runs per command, against commit 5593d77
    python benchmarks/startup.py --runs 9 --ref HEAD~3

Each command runs as a fresh process (``python -m semantic_ids ...``, as a user
types it) with ``PYTHONPATH`` pointing at one source tree: the working tree, and
the ``--ref`` commit extracted with ``git archive`` (the code before issue 16's
start-up work by default). Commands, on a small export built here from given
embeddings (no model download, no embedding):

- ``--help``; ``build`` failing on bad input (duplicate ids);
- exact lookups: ``lookup --item``, ``--sid``, ``--prefix``;
- a whole 400-item ``build`` from given embeddings (5 epochs), which includes
  the time from the summary to the process's exit.

Reports the median and minimum wall time of ``--runs`` runs per command and
tree, the ratio before/after, and whether torch was imported (``-X importtime``
on one extra run). Writes benchmarks/results/startup.json and startup.md.
Wall times depend on the machine's load; the 1-minute load average is recorded.
"""

from __future__ import annotations

import argparse
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
BEFORE_REF = "5593d77"  # the last commit before issue 16 (lazy imports, gc.freeze at exit)


def extract(ref: str, dest: Path) -> Path:
    """The source tree of ``ref`` (read with git archive; the repository is not changed)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "semantic_ids"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def make_inputs(work: Path) -> dict[str, str]:
    """A 400-item catalog with embeddings, its export, and a bad catalog (built with the working tree)."""
    script = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
import numpy as np, pandas as pd
from semantic_ids import BuildConfig, SemanticIDs
n = 400
rng = np.random.default_rng(0)
emb = rng.normal(size=(n, 64)).astype("float32")
df = pd.DataFrame({{"item_id": [f"p{{i}}" for i in range(n)], "title": [f"product {{i}}" for i in range(n)]}})
df.to_csv({str(work / "cat.csv")!r}, index=False)
np.save({str(work / "emb.npy")!r}, emb)
cfg = BuildConfig().replace(model={{"codebook_sizes": [16, 16, 16]}}, train={{"epochs": 5}}, embedding={{"use_cache": False}})
sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=df["item_id"].to_numpy())
sid.save({str(work / "export")!r})
print(sid.semantic_ids_[7])
"""
    sid = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    (work / "bad.csv").write_text("item_id,title\n1,a\n1,b\n")
    (work / "tiny.toml").write_text("[model]\ncodebook_sizes = [16, 16, 16]\n[train]\nepochs = 5\n")
    return {"sid": sid, "prefix": sid[: sid.index(">") + 1]}


def commands(work: Path, q: dict[str, str]) -> dict[str, list[str]]:
    exp = str(work / "export")
    return {
        "--help": ["--help"],
        "build, bad input": ["build", "--catalog", str(work / "bad.csv"), "--out", str(work / "never")],
        "lookup --item": ["lookup", exp, "--item", "p7"],
        "lookup --sid": ["lookup", exp, "--sid", q["sid"]],
        "lookup --prefix": ["lookup", exp, "--prefix", q["prefix"]],
        "build 400 items (given embeddings)": [
            "build", "--catalog", str(work / "cat.csv"), "--embeddings", str(work / "emb.npy"), "--config",
            str(work / "tiny.toml"), "--out", str(work / "out"), "--no-progress",
        ],
    }


def time_command(src: Path, args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "semantic_ids", *args], cwd=cwd, env=env, capture_output=True)
    return time.perf_counter() - start


def imports_torch(src: Path, args: list[str], cwd: Path) -> bool:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "semantic_ids", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    return any(line.split("|")[-1].strip() == "torch" for line in proc.stderr.splitlines() if line.startswith("import time:"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ref", default=BEFORE_REF, help="the commit to compare with (default: before issue 16)")
    ap.add_argument("--out", default=str(RESULTS / "startup"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work = tmp / "work"
        work.mkdir()
        before = tmp / "before"
        before.mkdir()
        trees = {"before": extract(args.ref, before), "after": ROOT}
        for tree, src in trees.items():  # PYTHONPATH must win over the editable install
            env = {**os.environ, "PYTHONPATH": str(src)}
            got = subprocess.run([sys.executable, "-c", "import semantic_ids; print(semantic_ids.__file__)"], env=env,
                                 cwd=work, capture_output=True, text=True, check=True).stdout.strip()
            if not got.startswith(str(src)):
                raise SystemExit(f"{tree}: imported {got}, not the tree at {src}")
        q = make_inputs(work)
        rows = []
        for name, argv in commands(work, q).items():
            row: dict = {"command": name}
            for tree, src in trees.items():
                times = []
                for _ in range(args.runs):
                    times.append(time_command(src, argv, work))
                row[f"{tree}_median_s"] = round(statistics.median(times), 3)
                row[f"{tree}_min_s"] = round(min(times), 3)
                row[f"{tree}_imports_torch"] = imports_torch(src, argv, work)
            row["speed-up (median)"] = round(row["before_median_s"] / row["after_median_s"], 2)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    env = {
        "python": platform.python_version(), "cpus": os.cpu_count(), "load_1m_at_end": round(os.getloadavg()[0], 2),
        "runs": args.runs, "before_ref": args.ref, "command": " ".join(["python", *sys.argv]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    cols = ["command", "before_median_s", "after_median_s", "speed-up (median)", "before_min_s", "after_min_s",
            "before_imports_torch", "after_imports_torch"]
    table = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    table += "".join("| " + " | ".join(str(r[c]) for c in cols) + " |\n" for r in rows)
    out.with_suffix(".md").write_text(
        f"# Command start-up (wall seconds, median of {args.runs} runs; before = {args.ref})\n\n"
        f"Machine: {env['cpus']} CPUs, 1-minute load {env['load_1m_at_end']} at the end (shared machine).\n\n" + table
    )
    print(table)


if __name__ == "__main__":
    main()
