"""Batch job: build semantic IDs for a catalog from one config file.

    python pipelines/build.py --config pipelines/configs/movielens.toml

The TOML file holds a ``[job]`` table (``catalog``, ``out``, optional
``embeddings`` and ``sequences``, user sequences to fuse behaviour in; for large catalogs ``streaming = true`` with optional
``engine = "ray"``, ``ray_address``, ``work_dir``, ``batch_rows``) and the
build config's sections (``[catalog]``,
``[embedding]``, ``[model]``, ``[train]``, ``[collision]``, ``[collab]``, ``seed``).
``catalog = "movielens-100k"`` fetches MovieLens-100K from the recbole wheel.
Relative paths are relative to the current directory (run it from the
repository root).
"""

from __future__ import annotations

import argparse
import os
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semantic_ids.runners.build import build  # noqa: E402
from semantic_ids.errors import SemanticIDsError  # noqa: E402
from semantic_ids.cli.commands import print_table, summary_rows  # noqa: E402
from semantic_ids.config import BuildConfig, ConfigError, load_toml  # noqa: E402
from semantic_ids.stages.catalog.datasets import fetch_movielens  # noqa: E402

BUILTIN = {"movielens-100k": lambda: fetch_movielens("data/ml-100k")}


def run(config_path: str, show_progress: bool = True) -> Path:
    data = load_toml(config_path)
    job = data.pop("job", None)
    if not isinstance(job, dict) or "catalog" not in job or "out" not in job:
        raise ConfigError(f"{config_path}: needs a [job] table with 'catalog' and 'out'")
    unknown = set(job) - {"catalog", "out", "embeddings", "sequences", "streaming", "engine", "ray_address", "work_dir", "batch_rows"}
    if unknown:
        raise ConfigError(f"{config_path}: unknown key(s) in [job]: {sorted(unknown)}")
    cfg = BuildConfig.from_dict(data)
    streaming = bool(job.get("streaming"))
    # build() checks the export directory and the options once, before any work; a built-in
    # catalog is passed as the function that fetches it, so a refused build fetches nothing
    catalog = BUILTIN[job["catalog"]] if job["catalog"] in BUILTIN else Path(job["catalog"])
    res = build(
        job["out"],
        catalog=None if streaming and job.get("embeddings") else catalog,
        embeddings=job.get("embeddings"),
        sequences=job.get("sequences"),
        config=cfg,
        streaming=streaming,
        engine=job.get("engine", "local"),
        work_dir=job.get("work_dir"),
        batch_rows=int(job.get("batch_rows", 65536)),
        ray_options={"address": job["ray_address"]} if job.get("ray_address") else None,
        show_progress=show_progress,
        also_reads=(config_path,),
    )
    print(f"semantic IDs for {res.metrics['n_items']:,} items written to {res.export_dir}")
    print_table(summary_rows(res.metrics, res.export_dir))
    return res.export_dir


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the command line does
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(args.config, show_progress=not args.no_progress)
    except SemanticIDsError as exc:  # bad input; anything else is a bug and keeps its traceback
        print(f"build: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
