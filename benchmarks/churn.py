"""IDs that survive retraining: a simulated catalog growth on Amazon Beauty.

    python benchmarks/churn.py                       # Beauty (when ../shared has it), seed 0
    python benchmarks/churn.py --seeds 0 1 --warm-epochs 50 10

A build on a seeded random 80% of the items ("old"), then three ways to give the
whole catalog IDs:

- fresh: a new build of every item (what retraining did before warm starts);
- warm: ``build --previous old`` (docs/warmstart.md), at each ``--warm-epochs``;
- warm, streaming: the same warm start run by the streaming build (``build --streaming
  --previous old``) over embedding shards, at the default epochs;
- assign: ``assign`` into a copy of the old export (frozen model, old IDs never move).

For each: the share of the old items that keep their full ID and their level-1 and
level-2 prefixes (``semantic_ids.quality.churn``), collisions before resolution, category
purity@1/@2 and co-interaction lift@1/@2 over every user sequence, and the change
of each quality number against the fresh build of the same seed. Embeddings come
from the cache. Prints a table and writes benchmarks/results/churn.json and churn.md.
"""

from __future__ import annotations

import argparse
import os
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (benchmarks/omp_wait.py)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from downstream import TEMPLATES, catalog  # noqa: E402
from results_io import environment, markdown_table, write_results  # noqa: E402
from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.export.io import read_export  # noqa: E402
from semantic_ids.stages.shards import write_embedding_shards  # noqa: E402
from semantic_ids.runners.streaming import build_streaming  # noqa: E402
from semantic_ids.stages.embed import embed_texts  # noqa: E402
from semantic_ids.runners.assign import assign_new_items  # noqa: E402
from semantic_ids.stages.catalog import load_catalog  # noqa: E402
from semantic_ids.quality.churn import churn_codes  # noqa: E402
from semantic_ids.quality.downstream import read_sequences  # noqa: E402
from semantic_ids.quality.evaluate import category_labels, evaluate_codes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
QUALITY = ("collisions", "purity@1", "purity@2", "lift@1", "lift@2")


def quality(codes: np.ndarray, sizes, labels, pairs) -> dict:
    m = evaluate_codes(codes, sizes, labels=labels, pairs=pairs)
    out = {"collisions": round(float(m["collision_rate"]), 4)}
    out.update({k: round(float(m[k]), 3) for k in ("purity@1", "purity@2", "lift@1", "lift@2") if k in m})
    return out


def measure(name: str, seeds: list[int], share: float, warm_epochs: list[int | None], work: Path) -> list[dict]:
    path, seq_path = catalog(name)
    # no training checkpoints: a checkpoint left by an earlier identical build would be resumed, not trained
    base = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, train={"checkpoint_every": 0})
    cat = load_catalog(path, base.catalog)
    ids = cat.ids
    emb = embed_texts(cat.texts, base.embedding, show_progress=False)[0]  # from the cache after the first run
    seqs = read_sequences(seq_path, ids).items
    pairs = np.concatenate([np.stack([s[:-1], s[1:]], 1) for s in seqs])
    found = category_labels(cat.frame)
    labels = found[1] if found else None
    frame = cat.frame  # the catalog's columns: the template's fields are all there
    rows = []
    for seed in seeds:
        cfg = base.replace(seed=seed)
        old = np.sort(np.random.default_rng(seed).permutation(len(ids))[: int(share * len(ids))])
        old_dir = work / f"old-{seed}"
        start = time.perf_counter()
        SemanticIDs(cfg, show_progress=False).fit(emb[old], ids=frame.iloc[old]["item_id"].to_numpy()).save(old_dir)
        print(f"old build ({len(old)} items): {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        old_exp = read_export(old_dir, model=False)
        old_ids, old_codes = old_exp.ids, old_exp.codes
        arms: list[tuple[str, int | None]] = ([("fresh", None)] + [("warm", e) for e in warm_epochs]
                                              + [("warm-streaming", None), ("assign", None)])
        fresh_q = None
        for arm, epochs in arms:
            start = time.perf_counter()
            if arm == "assign":
                d = work / f"assign-{seed}"
                shutil.copytree(old_dir, d)
                assign_new_items(d, catalog=frame, embeddings=emb, show_progress=False)
                got = read_export(d, model=False)
                got_ids, got_codes = got.ids, got.codes
                order = pd.Index(got_ids).get_indexer(pd.Index(ids))
                got_ids, got_codes = got_ids[order], got_codes[order]
                sizes = SemanticIDs.load(d).model_.codebook_sizes
            elif arm == "warm-streaming":
                shards = work / "shards"
                if not shards.exists():
                    write_embedding_shards(shards, frame["item_id"].to_numpy(), emb)
                res = build_streaming(work / f"warm-streaming-{seed}", embeddings=shards, config=cfg, previous=old_dir,
                                      work_dir=work / "stream-work", show_progress=False)
                exp = read_export(res.export_dir)
                order = pd.Index(exp.ids).get_indexer(pd.Index(ids))
                got_ids, got_codes, sizes = exp.ids[order], exp.codes[order], exp.model.codebook_sizes
                arm = f"warm, streaming ({cfg.train.epochs} epochs)"
            else:
                c = cfg if epochs is None else cfg.replace(train={"epochs": epochs})
                sid = SemanticIDs(c, show_progress=False).fit(emb, ids=frame["item_id"].to_numpy(), previous=old_dir if arm == "warm" else None)
                got_ids, got_codes, sizes = sid.ids_, sid.codes_, sid.model_.codebook_sizes
                if arm == "warm":
                    arm = f"warm ({c.train.epochs} epochs)"
            seconds = time.perf_counter() - start
            rep = churn_codes(old_ids, old_codes, got_ids, got_codes)
            q = quality(got_codes[:, :-1], sizes, labels, pairs)
            fresh_q = fresh_q or q
            row = {
                "catalog": name, "arm": arm, "seed": seed, "old_items": len(old), "items": len(ids),
                "kept_full_id": round(1 - rep.full_id_changed, 4),
                "kept_level1": round(1 - rep.prefix_changed[0], 4),
                "kept_level2": round(1 - rep.prefix_changed[1], 4),
                **q,
                **{f"{k} vs fresh": round(q[k] / fresh_q[k] - 1, 4) if fresh_q.get(k) else None for k in QUALITY if k in q},
                "seconds": round(seconds, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict], env: dict) -> str:
    cols = ["catalog", "arm", "seed", "kept_full_id", "kept_level1", "kept_level2", *QUALITY,
            *[f"{k} vs fresh" for k in QUALITY], "seconds"]
    return markdown_table(rows, cols, env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalogs", nargs="+", default=["beauty"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--share", type=float, default=0.8, help="share of the items in the old build")
    ap.add_argument("--warm-epochs", nargs="+", type=int, default=[50], help="epochs of each warm-started rebuild")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "churn"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="churn-") as tmp:
        for name in args.catalogs:
            if catalog(name) is None:
                print(f"skipping {name}: ../shared/data/amazon_beauty not found", file=sys.stderr)
                continue
            rows += measure(name, args.seeds, args.share, args.warm_epochs, Path(tmp))
    env = environment(f"default build (3 levels, sizes from the catalog), {args.threads} torch thread(s); old build on a "
                 f"seeded random {args.share:.0%} of the items; kept_* over the old items; 'vs fresh': relative change "
                 "against the fresh build of the whole catalog (same seed); embeddings cached; no training checkpoints")
    write_results(args.out, env, rows, markdown(rows, env))


if __name__ == "__main__":
    main()
