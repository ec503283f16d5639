"""Warm rebuilds with sequences: how many IDs survive when behaviour moves.

    python benchmarks/churn_behaviour.py                          # MovieLens-100K grow and drop, Beauty grow
    python benchmarks/churn_behaviour.py --scenarios ml-grow

Scenarios (each: an old build with sequences, then the new catalog and behaviour):

- ``ml-grow``: MovieLens-100K, items 1..1400 -> all 1,682; the old build sees each user's
  ratings of the old items only, the new build every rating;
- ``ml-drop``: MovieLens-100K, the same catalog; the new build drops one seeded random
  interaction of every user;
- ``beauty-grow`` (when ../shared has Amazon Beauty): a seeded random 80% of the items ->
  all; the old build sees the first 80% of each user's interactions with old items, the
  new build every interaction (the new items' and the old users' later ones).

Arms: ``fresh`` (a new build with sequences), ``warm`` (``build --previous old``: the new
behaviour space rotated onto the old one, old items keeping their vectors until their
evidence doubles, docs/warmstart.md), ``warm, rotation only`` (without the carry-over) and ``warm, no
alignment`` (neither: what a warm start did before). For each: the share of the
old items that keep their full ID, level-1 and level-2 codes, and collisions. Writes
benchmarks/results/churn_behaviour.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from downstream import TEMPLATES, catalog, growth_split  # noqa: E402
from results_io import environment, markdown_table, write_results  # noqa: E402
from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.quality.churn import churn_codes  # noqa: E402
from semantic_ids.stages.catalog import load_catalog  # noqa: E402
from semantic_ids.stages.embed import embed_texts  # noqa: E402
from semantic_ids.stages.sequences import Sequences, read_sequences  # noqa: E402
from semantic_ids.stages.warm import behaviour as warm_behaviour, start as warm_start  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def scenario(name: str, seed: int):
    """(catalog name, old item rows, old sequences, new sequences) over the catalog's rows."""
    cat_name = "beauty" if name.startswith("beauty") else "movielens"
    path, seq_path = catalog(cat_name)
    cfg = BuildConfig().replace(catalog={"template": TEMPLATES[cat_name]}, train={"checkpoint_every": 0}, seed=seed)
    cat = load_catalog(path, cfg.catalog)
    seqs = read_sequences(seq_path, cat.ids, min_length=1)
    n = len(cat.ids)
    rng = np.random.default_rng(seed)
    if name == "ml-grow":
        old = np.flatnonzero(np.asarray(cat.ids, dtype=np.int64) <= 1400)
        old_seqs = [s[np.isin(s, old)] for s in seqs.items]
        new_seqs = seqs.items
    elif name == "ml-drop":
        old = np.arange(n)
        old_seqs = seqs.items
        new_seqs = [np.delete(s, rng.integers(len(s))) for s in seqs.items]
    elif name == "beauty-grow":
        old, old_seqs = growth_split(seqs.items, n, seed)
    else:
        raise ValueError(name)
    if name == "beauty-grow":
        new_seqs = seqs.items
    return cat, cfg, old, old_seqs, new_seqs


ARMS = ("fresh", "warm", "warm, rotation only", "warm, no alignment")


def run(name: str, seed: int, work: Path, arms=ARMS) -> list[dict]:
    cat, cfg, old, old_seqs, new_seqs = scenario(name, seed)
    emb = embed_texts(cat.texts, cfg.embedding, show_progress=False)[0]
    ids = np.asarray(cat.ids)
    # the old build: rows of the old catalog (sequences renumbered to them)
    to_old = np.full(len(ids), -1)
    to_old[old] = np.arange(len(old))
    old_items = [to_old[s] for s in old_seqs]
    old_items = [s[s >= 0] for s in old_items]
    keep = [len(s) > 0 for s in old_items]
    old_sq = Sequences(users=[u for u, k in zip(range(len(keep)), keep) if k], items=[s for s, k in zip(old_items, keep) if k])
    t = time.perf_counter()
    old_sid = SemanticIDs(cfg, show_progress=False).fit(emb[old], ids=ids[old], sequences=old_sq)
    old_dir = old_sid.save(work / f"old-{name}-{seed}")
    print(f"{name}: old build ({len(old)} items) {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    new_sq = Sequences(users=list(range(len(new_seqs))), items=list(new_seqs))
    rows = []
    rotate = warm_start.WarmStart.align_fusion
    for arm in arms:
        t = time.perf_counter()
        if arm == "warm, no alignment":
            warm_start.WarmStart.align_fusion = lambda self, fusion: fusion
        refresh = warm_behaviour.REFRESH_FACTOR
        if arm == "warm, rotation only":
            warm_behaviour.REFRESH_FACTOR = 0.0
        try:
            sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=ids, sequences=new_sq, previous=None if arm == "fresh" else old_dir)
        finally:
            warm_start.WarmStart.align_fusion = rotate
            warm_behaviour.REFRESH_FACTOR = refresh
        rep = churn_codes(old_sid.ids_, old_sid.codes_, sid.ids_, sid.codes_)
        row = {"scenario": name, "arm": arm, "seed": seed, "old_items": len(old), "items": len(ids),
               "kept_full_id": round(1 - rep.full_id_changed, 4), "kept_level1": round(1 - rep.prefix_changed[0], 4),
               "kept_level2": round(1 - rep.prefix_changed[1], 4),
               "collisions": round(float(sid.metrics_["collision_rate"]), 4), "seconds": round(time.perf_counter() - t, 1)}
        beh = sid.metrics_.get("warm_start", {}).get("behaviour")
        if beh and beh.get("rotated"):
            row["sq_dist_before_after"] = f"{beh['mean_sq_distance_before']} -> {beh['mean_sq_distance_after']}"
            row["old_vectors_kept"] = beh.get("old_vectors_kept")
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", nargs="+", default=["ml-grow", "ml-drop", "beauty-grow"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--refresh-factor", type=float, default=warm_behaviour.REFRESH_FACTOR,
                    help="stages/warm/behaviour.py's REFRESH_FACTOR for the warm arm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "churn_behaviour"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warm_behaviour.REFRESH_FACTOR = args.refresh_factor
    rows = []
    with tempfile.TemporaryDirectory(prefix="churn-beh-") as tmp:
        for name in args.scenarios:
            if name.startswith("beauty") and catalog("beauty") is None:
                print(f"skipping {name}: ../shared/data/amazon_beauty not found", file=sys.stderr)
                continue
            for seed in args.seeds:
                rows += run(name, seed, Path(tmp), args.arms)
    env = environment(f"in-memory builds with sequences, default config, {args.threads} torch thread(s); kept_* over the old "
                      "items; sq_dist: mean squared distance of the common items' unit behaviour vectors to the old ones, "
                      "before -> after the rotation")
    cols = ["scenario", "arm", "seed", "old_items", "items", "kept_full_id", "kept_level1", "kept_level2", "collisions",
            "sq_dist_before_after", "old_vectors_kept", "seconds"]
    write_results(args.out, env, rows, markdown_table(rows, cols, env))


if __name__ == "__main__":
    main()
