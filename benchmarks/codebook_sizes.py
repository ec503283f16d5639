"""How meaningful are short prefixes at each codebook size, for small catalogs?

    python benchmarks/codebook_sizes.py                      # MovieLens + Beauty subsamples
    python benchmarks/codebook_sizes.py --sizes 400 1000 --catalogs movielens

For each catalog (MovieLens-100K, and Amazon Beauty when ../shared has it) and
each subsample size N (seeded random subsample of the catalog's items), build
with level sizes K x K x K for K in {auto/4, auto, 4 x auto, 256} (auto =
``semantic_ids.model.sizing.auto_codebook_sizes(N)``, the default when
``model.codebook_sizes`` is unset; 256 = the default before it) on the same
embeddings, and report at depth 1: items per level-1 code in use, purity and
its chance level (same group sizes, shuffled labels), NMI, and the 10-nearest-
neighbour share with its chance level (Σ p_g², the share a random neighbour
would give). ``lift`` = purity / chance purity.

Embeddings come from the default embedding cache (what ``semantic-ids build``
fills); texts not in it are embedded and added. Writes
benchmarks/results/codebook_sizes.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import os
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (benchmarks/omp_wait.py)
import numpy as np  # noqa: E402

from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.stages.catalog import Catalog, load_catalog  # noqa: E402
from semantic_ids.stages.catalog.datasets import fetch_movielens  # noqa: E402
from semantic_ids.stages.embed import embed_texts  # noqa: E402
from semantic_ids.quality.evaluate import category_labels, evaluate_codes, prefix_groups  # noqa: E402
from semantic_ids.model.sizing import auto_codebook_sizes  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty" / "items.jsonl"
TEMPLATES = {
    "beauty": "Categories: {categories}; Title: {title}; Brand: {brand}",  # pipelines/configs/amazon_beauty.toml
    "movielens": "Title: {title}; Year: {year}; Genres: {genres}",
}
RESULTS = ROOT / "benchmarks" / "results"


def catalog(name: str) -> tuple[Catalog, np.ndarray] | None:
    path = BEAUTY if name == "beauty" else fetch_movielens(ROOT / "data" / "ml-100k")
    if not Path(path).exists():
        print(f"skipping {name}: {path} not found", file=sys.stderr)
        return None
    cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]})
    cat = load_catalog(path, cfg.catalog)
    emb, counts = embed_texts(cat.texts, cfg.embedding, show_progress=False)
    print(f"{name}: {len(cat)} items, embeddings {counts}", file=sys.stderr)
    return cat, emb


def sizes_for(n: int) -> list[int]:
    k = auto_codebook_sizes(n)[0]
    return sorted({max(k // 4, 2), k, min(4 * k, 256), 256})


def run_one(name: str, cat: Catalog, emb: np.ndarray, n: int, k: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(cat), n, replace=False)) if n < len(cat) else np.arange(len(cat))
    frame = cat.frame.iloc[rows].reset_index(drop=True)
    sub = load_catalog(frame, BuildConfig().replace(catalog={"template": TEMPLATES[name]}).catalog)
    auto = auto_codebook_sizes(n)
    cfg = BuildConfig().replace(model={"codebook_sizes": [k] * 3}, seed=seed, embedding={"use_cache": False})
    t0 = time.perf_counter()
    sid = SemanticIDs(cfg, show_progress=False).fit(emb[rows], ids=sub["item_id"].to_numpy())
    seconds = time.perf_counter() - t0
    labels = category_labels(sub.frame)
    raw = sid.raw_codes_
    m = evaluate_codes(raw, cfg.model.codebook_sizes, labels=labels[1] if labels else None, embeddings=emb[rows], depths=(1,))
    p = np.bincount(prefix_groups(raw, 1)) / n
    return {
        "catalog": name,
        "n_items": int(n),
        "codebook": int(k),
        "is_auto": bool(k == auto[0]),
        "is_previous_default": bool(k == 256),
        "codes_used@1": int(m["codes_used"][0]),
        "items_per_code@1": round(n / m["codes_used"][0], 1),
        "purity@1": round(m["purity@1"], 3),
        "chance_purity@1": round(m["chance_purity@1"], 3),
        "purity_lift@1": round(m["purity@1"] / m["chance_purity@1"], 2),
        "nmi@1": round(m["nmi@1"], 3),
        "neighbour_share@1": round(m["neighbour_share@1"], 3),
        "chance_neighbour_share@1": round(float((p**2).sum()), 3),
        "collision_rate": round(m["collision_rate"], 4),
        "seed": seed,
        "seconds": round(seconds, 1),
    }


COLUMNS = ["catalog", "n_items", "codebook", "is_auto", "codes_used@1", "items_per_code@1", "purity@1", "chance_purity@1",
           "purity_lift@1", "nmi@1", "neighbour_share@1", "chance_neighbour_share@1", "collision_rate", "seconds"]


def markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |\n" for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalogs", nargs="+", default=["movielens", "beauty"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[400, 1000, 3000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "codebook_sizes"))
    args = ap.parse_args()
    rows = []
    for name in args.catalogs:
        loaded = catalog(name)
        if loaded is None:
            continue
        cat, emb = loaded
        for n in args.sizes:
            n_eff = min(n, len(cat))
            for k in sizes_for(n_eff):
                rows.append(run_one(name, cat, emb, n_eff, k, args.seed))
                print(json.dumps(rows[-1]), file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "machine": platform.machine(), "command": " ".join(["python", *sys.argv])}
    out.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    table = markdown(rows)
    out.with_suffix(".md").write_text(
        "# Codebook size vs catalog size (depth 1)\n\n`is_auto`: the size chosen when `model.codebook_sizes` is unset; "
        "256 was the default before.\n\n" + table
    )
    print(table)


if __name__ == "__main__":
    main()
