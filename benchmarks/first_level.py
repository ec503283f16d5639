"""Where the level-1 quality comes from, and what the latent size does to collisions
(Amazon Beauty; needs ../shared). docs/method.md explains the method.

    python benchmarks/first_level.py                       # level-1 clusterings, seeds 0-2 (~1 min)
    python benchmarks/first_level.py --latents 4 5 6 8     # plus the default model per latent size (~1 min each)
    python benchmarks/first_level.py --latents 4 --hidden 512,256,128   # TIGER's MLP instead of the default 256-128

Part 1, level 1 only, on the same MiniLM embeddings (Beauty template of
pipelines/configs/amazon_beauty.toml, cached under data/cache): category purity
and co-interaction lift of the 256 level-1 groups from
- FAISS ``Kmeans`` (plain Lloyd, 25 iterations, all points);
- FAISS ``ResidualQuantizer``'s first level (its progressive-dimension k-means);
- ours, ``semantic_ids.model.kmeans.progressive_kmeans`` (FAISS's schedule in torch; the
  previous default, ``first_level = "progressive"``);
- ours, ``semantic_ids.model.kmeans.bisecting_kmeans`` (the default model's level 1).
Part 2 (``--latents``): the default model with ``[model] latent_dim`` set to each
value (and ``hidden_dims`` to ``--hidden`` if given): collision rate, codes used,
depth-1 and depth-2 purity and lift, train + assign seconds.
Also counts the items whose embedding equals another's (exact duplicates, a
floor for any method's collision rate). Writes benchmarks/results/first_level.json (with ``--latents``:
first_level-latents<N-N...>[-h<hidden>].json) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (benchmarks/omp_wait.py)
import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.stages.embed import embed_texts  # noqa: E402
from semantic_ids.stages.catalog import load_catalog  # noqa: E402
from semantic_ids.quality.evaluate import category_labels, evaluate_codes, sequence_pairs  # noqa: E402
from semantic_ids.model.kmeans import bisecting_kmeans, nearest, progressive_kmeans  # noqa: E402
from semantic_ids.stages.metrics import code_stats, perplexity  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import BEAUTY, CACHE  # noqa: E402


def level1(codes: np.ndarray, labels, pairs) -> dict:
    """Purity, lift and perplexity of level-1 codes (N,) from 256."""
    m = evaluate_codes(codes[:, None], (256,), labels=labels, pairs=pairs, depths=(1,))
    return {"purity_l1": round(m["purity@1"], 3), "lift_l1": round(m["lift@1"], 2), "perplexity_l1": round(perplexity(codes, 256), 1)}


def faiss_kmeans(x: np.ndarray, seed: int) -> np.ndarray:
    km = faiss.Kmeans(x.shape[1], 256, niter=25, seed=seed, max_points_per_centroid=1000)
    km.train(x)
    return km.index.search(x, 1)[1][:, 0]


def faiss_rq_level1(x: np.ndarray, seed: int) -> np.ndarray:
    rq = faiss.ResidualQuantizer(x.shape[1], 1, 8)
    rq.max_beam_size = 1
    rq.cp.seed = seed
    rq.train(x)
    return rq.compute_codes(x)[:, 0].astype(np.int64)


def ours(fit):
    """Level-1 codes from one of our k-means functions: each item's nearest centroid."""
    def codes_of(x: np.ndarray, seed: int) -> np.ndarray:
        xt = torch.from_numpy(x)
        return nearest(xt, fit(xt, 256, generator=torch.Generator().manual_seed(seed))).numpy()
    return codes_of


# method name (as in the results files) -> (embeddings, seed) -> level-1 codes
LEVEL1 = {
    "FAISS Kmeans (plain Lloyd)": faiss_kmeans,
    "FAISS ResidualQuantizer level 1 (progressive dim)": faiss_rq_level1,
    "ours: progressive_kmeans (previous default)": ours(progressive_kmeans),
    "ours: bisecting_kmeans (default level 1)": ours(bisecting_kmeans),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--latents", nargs="*", type=int, default=[])
    p.add_argument("--hidden", default=None, help="hidden_dims for part 2, e.g. 512,256,128 (default: the library's)")
    p.add_argument("--first-level", default=None, help="model.first_level for part 2 (default: the library's)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--cache", default=CACHE, help="embedding cache dir (default data/cache); an empty one re-embeds the catalog")
    p.add_argument("--name", default=None, help="results file name (default first_level[-latents...].json)")
    args = p.parse_args()
    if not (BEAUTY / "items.jsonl").exists():
        print(f"Amazon Beauty not found at {BEAUTY}", file=sys.stderr)
        return 2
    base = BuildConfig.from_toml(ROOT / "pipelines" / "configs" / "amazon_beauty.toml", ignore=("job",))
    base = base.replace(embedding={"cache_dir": args.cache}, train={"checkpoint_every": 0})
    cat = load_catalog(BEAUTY / "items.jsonl", base.catalog)
    labels = category_labels(cat.frame)[1]
    pairs, _ = sequence_pairs(BEAUTY / "sequences.jsonl", cat.ids)
    emb = embed_texts(cat.texts, base.embedding, show_progress=False)[0]
    x = np.ascontiguousarray(emb, dtype=np.float32)
    rows = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    for seed in args.seeds:
        for method, codes_of in LEVEL1.items():
            start = time.perf_counter()
            codes = codes_of(x, seed)
            emit({"part": "level 1", "method": method, "seed": seed, "seconds": round(time.perf_counter() - start, 1), **level1(codes, labels, pairs)})
    for latent in args.latents:
        for seed in args.seeds:
            model = {"latent_dim": latent}
            if args.hidden:
                model["hidden_dims"] = [int(h) for h in args.hidden.split(",")]
            if args.first_level:
                model["first_level"] = args.first_level
            cfg = base.replace(model=model, seed=seed)
            start = time.perf_counter()
            sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=cat.ids)
            secs = time.perf_counter() - start
            m = evaluate_codes(sid.raw_codes_, cfg.model.codebook_sizes, labels=labels, pairs=pairs, depths=(1, 2))
            stats = code_stats(sid.raw_codes_, cfg.model.codebook_sizes)
            emit({
                "part": "latent size", "method": f"default model, first_level {cfg.model.first_level}, latent_dim {latent}, hidden {list(cfg.model.hidden_dims)}", "seed": seed, "seconds": round(secs, 1),
                "collision_rate": round(stats["collision_rate"], 5), "codes_used": stats["codes_used"],
                "purity_l1": round(m["purity@1"], 3), "lift_l1": round(m["lift@1"], 2),
                "purity_l2": round(m["purity@2"], 3), "lift_l2": round(m["lift@2"], 1),
            })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    default = "first_level.json" if not args.latents else (
        f"first_level-latents{'-'.join(map(str, args.latents))}"
        f"{'-h' + args.hidden.replace(',', '-') if args.hidden else ''}{'-' + args.first_level if args.first_level else ''}.json"
    )
    name = args.name or default
    (out / name).write_text(json.dumps({"argv": sys.argv[1:], "embeddings_sha256": hashlib.sha256(x.tobytes()).hexdigest(),
                                           "duplicate_items": int(len(x) - len(np.unique(x, axis=0))), "rows": rows}, indent=2))
    keys = ["part", "method", "seed", "collision_rate", "codes_used", "purity_l1", "lift_l1", "purity_l2", "lift_l2", "seconds"]
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "–")) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
