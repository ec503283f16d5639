"""Refactor identity check: the same builds must give the same IDs before and after a change.

    python benchmarks/identity.py --out before.json                     # before the change
    python benchmarks/identity.py --compare before.json --out benchmarks/results/identity.json

Builds through the command line (the one entry point users run):
MovieLens-100K (its pipeline config), Amazon Beauty with the default config and
with ``pipelines/configs/amazon_beauty.toml``, each in memory and streaming. For
each export it records the sha256 of ``semantic_ids.parquet`` as a file, and of
its data alone (every column, in row order, without the schema metadata, which
holds the config). ``--compare`` rebuilds, prints which hashes changed and writes
both sets of hashes with the comparison.
Beauty needs ``../shared``; without it those rows are skipped (and said so).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever is installed
BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty" / "items.jsonl"
EPOCHS = 10  # every build uses the same short budget: the check is identity, not quality


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_sha(path: Path) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(path).replace_schema_metadata(None)
    h = hashlib.sha256()
    for name in table.column_names:
        h.update(name.encode())
        h.update(str(table.column(name).to_pylist()).encode())
    return h.hexdigest()


def builds(tmp: Path) -> list[tuple[str, list[str]]]:
    """(name, CLI arguments after ``semantic-ids build``) for every build."""
    from semantic_ids.stages.catalog.datasets import fetch_movielens

    ml = fetch_movielens(str(ROOT / "data" / "ml-100k"))
    rows: list[tuple[str, list[str]]] = []
    ml_parquet = tmp / "movielens.parquet"
    _to_parquet(Path(ml), ml_parquet)
    tpl = "Title: {title}; Year: {year}; Genres: {genres}"
    rows.append(("movielens/memory", ["--catalog", str(ml), "--template", tpl]))
    rows.append(("movielens/streaming", ["--catalog", str(ml_parquet), "--template", tpl, "--streaming"]))
    if BEAUTY.exists():
        bp = tmp / "beauty.parquet"
        _to_parquet(BEAUTY, bp)
        toml = str(ROOT / "pipelines" / "configs" / "amazon_beauty.toml")
        rows += [
            ("beauty-default/memory", ["--catalog", str(BEAUTY), "--id-column", "item_id"]),
            ("beauty-default/streaming", ["--catalog", str(bp), "--id-column", "item_id", "--streaming"]),
            ("beauty-toml/memory", ["--catalog", str(BEAUTY), "--config", toml]),
            ("beauty-toml/streaming", ["--catalog", str(bp), "--config", toml, "--streaming"]),
        ]
    else:
        print(f"skipped Amazon Beauty: {BEAUTY} not found (../shared is not on this machine)")
    return rows


def _to_parquet(src: Path, dst: Path) -> None:
    import pandas as pd

    df = pd.read_json(src, lines=True) if src.suffix == ".jsonl" else pd.read_csv(src) if src.suffix == ".csv" else pd.read_parquet(src)
    for c in df.columns:  # lists (categories) as text, as the jsonl reader joins them
        if df[c].map(lambda v: isinstance(v, list)).any():
            df[c] = df[c].map(lambda v: ", ".join(map(str, v)) if isinstance(v, list) else v)
    df.to_parquet(dst, index=False)


def run_all() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name, args in builds(tmp):
            dest = tmp / name.replace("/", "-")
            cmd = [sys.executable, "-m", "semantic_ids.cli.main", "build", *args, "--out", str(dest), "--seed", "0",
                   "--epochs", str(EPOCHS), "--no-progress", "--json"]
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"{name}: build failed\n{proc.stderr[-3000:]}")
            ids = dest / "semantic_ids.parquet"
            out[name] = {"file_sha256": file_sha(ids), "data_sha256": data_sha(ids)}
            print(f"{name:28s} data {out[name]['data_sha256'][:16]}  file {out[name]['file_sha256'][:16]}  {time.perf_counter() - t:.0f} s")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", help="a hashes file written before the change: rebuild and compare")
    p.add_argument("--out", required=True, help="write the hashes (and, with --compare, the comparison) here")
    args = p.parse_args()
    hashes = run_all()
    result: dict = {"hashes": hashes}
    bad = 0
    if args.compare:
        ref = json.loads(Path(args.compare).read_text())
        ref = ref.get("hashes", ref)
        rows = {}
        print(f"\n{'build':28s} {'data':9s} {'file':9s}")
        for name, h in hashes.items():
            if name not in ref:
                print(f"{name:28s} (no reference)")
                continue
            same_data = h["data_sha256"] == ref[name]["data_sha256"]
            same_file = h["file_sha256"] == ref[name]["file_sha256"]
            rows[name] = {"same_data": same_data, "same_file": same_file}
            bad += not same_data
            print(f"{name:28s} {'same' if same_data else 'CHANGED':9s} {'same' if same_file else 'changed':9s}")
        result.update(reference=ref, comparison=rows)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
