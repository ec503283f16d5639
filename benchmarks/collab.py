"""Builds with user sequences against text-only builds: collisions, purity, lift, build time.

    python benchmarks/collab.py                                  # Beauty (when ../shared has it) and MovieLens-100K
    python benchmarks/collab.py --catalogs movielens --seeds 0

For each catalog: the text-only default, then builds with sequences at collab
weights 0.3 / 0.5 (the default) / 0.7, the signal learned from each user's
sequence without its last two items (``collab.holdout_last = 2``, as for the
downstream benchmark). Embeddings come from the cache, so build time is the rest
of the build (reading sequences, collaborative vectors, training, encoding,
resolving); the ratio is against the text-only build of the same seed, run just
before it.

- collisions: share of items whose model codes collide before resolution;
- purity@1/@2: category purity of the level-1 and level-2 prefixes (Beauty's
  category paths, MovieLens' genres);
- lift@1/@2 over all consecutive pairs of every sequence, and "held-out lift": over
  the last two transitions of each user only (into the validation and the test
  item), which the signal never saw.

Downstream Recall/NDCG (what decides) is in ``benchmarks/downstream.py``. Prints a
table and writes benchmarks/results/collab.json and collab.md.
"""

from __future__ import annotations

import argparse
import os
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (benchmarks/omp_wait.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from downstream import TEMPLATES, catalog  # noqa: E402
from results_io import environment, markdown_table, write_results  # noqa: E402
from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.runners.build import read_and_embed  # noqa: E402
from semantic_ids.stages.catalog import load_catalog  # noqa: E402
from semantic_ids.quality.downstream import read_sequences  # noqa: E402
from semantic_ids.quality.evaluate import category_labels, co_interaction, evaluate_codes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ARMS = {"text only": None, "sequences w=0.3": 0.3, "sequences w=0.5 (default)": 0.5, "sequences w=0.7": 0.7}


def measure(name: str, seeds: list[int], weight_seeds: list[int]) -> list[dict]:
    path, seq_path = catalog(name)
    # no training checkpoints: a checkpoint left by an earlier identical build would be resumed, not trained
    base = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, train={"checkpoint_every": 0})
    cat = load_catalog(path, base.catalog)
    seqs = read_sequences(seq_path, cat.ids).items
    pairs = np.concatenate([np.stack([s[:-1], s[1:]], 1) for s in seqs])
    held = np.concatenate([np.stack([s[-3:-1], s[-2:]], 1) for s in seqs])  # into the validation and test items
    found = category_labels(cat.frame)
    labels = found[1] if found else None
    text = read_and_embed(cat, base, show_progress=False)[1]  # embedded once (through the cache), the same for every build
    rows = []
    for seed in seeds:
        text_seconds = None
        for arm, w in ARMS.items():
            if w not in (None, 0.5) and seed not in weight_seeds:
                continue
            cfg = base.replace(seed=seed, **({"collab": {"weight": w, "holdout_last": 2}} if w is not None else {}))
            start = time.perf_counter()
            sid = SemanticIDs(cfg, show_progress=False).fit(text, ids=cat.ids, sequences=seq_path if w is not None else None)
            seconds = time.perf_counter() - start  # the build without reading and embedding the catalog
            if w is None:
                text_seconds = seconds
            codes = sid.codes_[:, :-1]
            m = evaluate_codes(codes, sid.model_.codebook_sizes, labels=labels, pairs=pairs)
            h = co_interaction(codes, held, (1, 2))
            row = {
                "catalog": name, "arm": arm, "weight": w, "seed": seed,
                "collisions": round(sid.metrics_["collision_rate_before_resolution"], 4),
                **{k: round(float(m[k]), 3) for k in ("purity@1", "purity@2", "lift@1", "lift@2") if k in m},
                "heldout_lift@1": round(h[1]["lift"], 2), "heldout_lift@2": round(h[2]["lift"], 2),
                "build_seconds": round(seconds, 1),
                "time_ratio": round(seconds / text_seconds, 2) if text_seconds else None,
                "collab_seconds": sid.metrics_["stages"].get("collab", {}).get("seconds"),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict], env: dict) -> str:
    cols = ["catalog", "arm", "seed", "collisions", "purity@1", "purity@2", "lift@1", "lift@2",
            "heldout_lift@1", "heldout_lift@2", "build_seconds", "time_ratio", "collab_seconds"]
    return markdown_table(rows, cols, env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalogs", nargs="+", default=["beauty", "movielens"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the text-only and default builds")
    ap.add_argument("--weight-seeds", nargs="+", type=int, default=[0], help="seeds of the other weights")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "collab"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.catalogs:
        if catalog(name) is None:
            print(f"skipping {name}: ../shared/data/amazon_beauty not found", file=sys.stderr)
            continue
        rows += measure(name, args.seeds, args.weight_seeds)
    env = environment(f"default build (3 levels, sizes from the catalog), {args.threads} torch thread(s); sequences with "
                      "holdout_last = 2; build seconds exclude reading the catalog and embedding (cached); no training checkpoints")
    write_results(args.out, env, rows, markdown(rows, env))


if __name__ == "__main__":
    main()
