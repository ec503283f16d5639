"""Quality and speed of a default build, on real catalogs, beside references in the same run.

    python benchmarks/quality.py                     # Amazon Beauty (if ../shared has it) and MovieLens-100K
    python benchmarks/quality.py --catalogs movielens --seeds 0 1 2

For each catalog: our default build (embedding included, cached under
data/cache after the first run), and on the same embeddings FAISS's
ResidualQuantizer (3 x 8 bits, greedy beam 1) and, for Beauty, the LETTER
paper's published IDs (first 3 of 4 levels). Prints a table and writes
benchmarks/results/quality.json and quality.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.datasets import fetch_movielens  # noqa: E402
from semantic_ids.catalog import load_catalog  # noqa: E402
from semantic_ids.evaluate import category_labels, evaluate_codes, sequence_pairs  # noqa: E402
from semantic_ids.metrics import code_stats  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"
CACHE = str(ROOT / "data" / "cache")
SEQUENCES = {"beauty": BEAUTY / "sequences.jsonl", "movielens": ROOT / "data" / "ml-100k" / "sequences.jsonl"}
TEMPLATES = {
    "beauty": "Title: {title}; Brand: {brand}; Categories: {categories}; Price: {price}",
    "movielens": "Title: {title}; Year: {year}; Genres: {genres}",
}


def catalog_path(name: str) -> Path | None:
    if name == "beauty":
        return BEAUTY / "items.jsonl" if (BEAUTY / "items.jsonl").exists() else None
    return fetch_movielens(ROOT / "data" / "ml-100k")


def faiss_rq(emb: np.ndarray, levels: int = 3, bits: int = 8, seed: int = 0) -> tuple[np.ndarray, float]:
    import faiss

    rq = faiss.ResidualQuantizer(emb.shape[1], levels, bits)
    rq.max_beam_size = 1  # greedy, so codes are prefixes
    rq.cp.seed = seed
    start = time.perf_counter()
    rq.train(emb)
    codes = rq.compute_codes(emb)
    seconds = time.perf_counter() - start
    assert bits == 8, "byte-aligned codes only"
    return codes.astype(np.int64), seconds


def letter_codes(ids: np.ndarray) -> np.ndarray:
    rows = {}
    for line in (BEAUTY / "peer_letter_semantic_ids.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[r["item_id"]] = r["codes"][:3]
    return np.array([rows[i] for i in ids], dtype=np.int64)


def coherence(codes: np.ndarray, ctx: dict) -> dict:
    """Level-1 purity and co-interaction lift (see semantic_ids.evaluate)."""
    m = evaluate_codes(codes[:, :3], (256, 256, 256), labels=ctx.get("labels"), pairs=ctx.get("pairs"), depths=(1,))
    return {"purity_l1": round(m["purity@1"], 3) if "purity@1" in m else None, "lift_l1": round(m["lift@1"], 1) if "lift@1" in m else None}


def row(method: str, catalog: str, seed, stats: dict, seconds: float, extra: dict | None = None) -> dict:
    return {
        "catalog": catalog,
        "method": method,
        "seed": seed,
        "items": stats["n_items"],
        "collision_rate": round(stats["collision_rate"], 5),
        "largest_group": stats["largest_group"],
        "codes_used": stats["codes_used"],
        "perplexity_l1": round(stats["perplexity"][0], 1),
        "seconds": round(seconds, 1),
        **(extra or {}),
    }


def run(catalogs: list[str], seeds: list[int]) -> list[dict]:
    rows = []
    for name in catalogs:
        path = catalog_path(name)
        if path is None:
            print(f"skipping {name}: not found (Amazon Beauty lives in ../shared)", file=sys.stderr)
            continue
        emb = None
        cfg0 = BuildConfig().replace(catalog={"template": TEMPLATES[name]})
        cat = load_catalog(path, cfg0.catalog)
        found = category_labels(cat.frame)
        ctx = {"labels": found[1] if found else None, "pairs": sequence_pairs(SEQUENCES[name], cat.ids)[0]}
        for seed in seeds:
            cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, embedding={"cache_dir": CACHE}, seed=seed)
            sid = SemanticIDs(cfg, show_progress=False).fit(path)
            sid.save(ROOT / "out" / "bench" / f"{name}-seed{seed}")
            m = sid.metrics_
            stats = code_stats(sid.raw_codes_, cfg.model.codebook_sizes)
            stages = m["stages"]
            rows.append(
                row("semantic-ids RQ-VAE (default)", name, seed, stats, stages["train"]["seconds"] + stages["assign"]["seconds"], {
                    "reconstruction_mse": round(m["reconstruction_mse"], 4),
                    "embed_seconds": stages.get("embed", {}).get("seconds"),
                    "embedded_from_cache": m["embedding"].get("computed", 0) == 0,
                    "total_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
                    "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
                    "stages": stages,
                    **coherence(sid.raw_codes_, ctx),
                })
            )
            print(json.dumps(rows[-1]), flush=True)
            if emb is None:
                emb = sid.embed(cat.texts)
                ids = sid.ids_
        for fseed in seeds:
            codes, secs = faiss_rq(emb, seed=fseed)
            rows.append(row("FAISS ResidualQuantizer (greedy)", name, fseed, code_stats(codes, (256, 256, 256)), secs, coherence(codes, ctx)))
            print(json.dumps(rows[-1]), flush=True)
        if name == "beauty":
            letter = letter_codes(ids)
            rows.append(row("LETTER published IDs (3 of 4 levels)", name, None, code_stats(letter, (256, 256, 256)), float("nan"), coherence(letter, ctx)))
        rng = np.random.default_rng(0)
        rand = rng.integers(0, 256, (len(emb), 3))
        rows.append(row("random codes (floor)", name, None, code_stats(rand, (256, 256, 256)), 0.0, coherence(rand, ctx)))
    return rows


def markdown(rows: list[dict]) -> str:
    head = "| catalog | method | seed | collision rate | largest group | codes used per level | L1 perplexity | L1 purity | L1 lift | train+assign s | total s (embed incl.) | peak MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        lines.append(
            f"| {r['catalog']} | {r['method']} | {'' if r['seed'] is None else r['seed']} | {r['collision_rate']:.2%} | {r['largest_group']} | "
            f"{'/'.join(map(str, r['codes_used']))} | {r['perplexity_l1']} | {r.get('purity_l1', '')} | {r.get('lift_l1', '')} | {r['seconds']} | {r.get('total_seconds', '')} | {r.get('peak_rss_mb', '')} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogs", nargs="+", default=["beauty", "movielens"], choices=["beauty", "movielens"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    rows = run(args.catalogs, args.seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    (out / "quality.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    md = markdown(rows)
    (out / "quality.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
