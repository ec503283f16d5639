"""How the text template moves ID quality on Amazon Beauty (needs ../shared).

    python benchmarks/templates.py                 # every template below, seed 0
    python benchmarks/templates.py catfirst plain  # some of them

For each template: embed the catalog (MiniLM, cached under data/cache), then on
the same embeddings FAISS's ResidualQuantizer (3 x 8 bits, greedy), our
all-latent RQ-VAE (``first_level = "latent"``, MLP 512-256-128, latent 6, 200 epochs: the model
docs/method.md's template comparison was measured with) and our default RQ-VAE;
prints one JSON line per template with the collision rate, level-1 purity and
level-1 co-interaction lift of each.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (benchmarks/omp_wait.py)
import faiss  # noqa: E402
import numpy as np  # noqa: E402

from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.stages.catalog import load_catalog  # noqa: E402
from semantic_ids.config import CatalogConfig, EmbeddingConfig  # noqa: E402
from semantic_ids.stages.embed import embed_texts  # noqa: E402
from semantic_ids.quality.evaluate import category_labels, evaluate_codes, sequence_pairs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import BEAUTY, CACHE  # noqa: E402
TEMPLATES = {
    "price-last": "Title: {title}; Brand: {brand}; Categories: {categories}; Price: {price}",
    "no-price": "Title: {title}; Brand: {brand}; Categories: {categories}",
    "catfirst": "Categories: {categories}; Title: {title}; Brand: {brand}",
    "plain": "{title}. {brand}. {categories}",
}


def scores(codes: np.ndarray, labels, pairs) -> list:
    m = evaluate_codes(codes, (256,) * 3, labels=labels, pairs=pairs, depths=(1,))
    return [round(m["collision_rate"], 4), round(m["purity@1"], 3), round(m["lift@1"], 1)]


def main() -> int:
    if not (BEAUTY / "items.jsonl").exists():
        print(f"Amazon Beauty not found at {BEAUTY}", file=sys.stderr)
        return 2
    for name in sys.argv[1:] or list(TEMPLATES):
        cat = load_catalog(BEAUTY / "items.jsonl", CatalogConfig(template=TEMPLATES[name]))
        start = time.perf_counter()
        emb, _ = embed_texts(cat.texts, EmbeddingConfig(cache_dir=CACHE), show_progress=False)
        embed_s = time.perf_counter() - start
        labels = category_labels(cat.frame, "categories")[1]
        pairs, _ = sequence_pairs(BEAUTY / "sequences.jsonl", cat.ids)
        rq = faiss.ResidualQuantizer(emb.shape[1], 3, 8)
        rq.max_beam_size = 1
        rq.cp.seed = 0
        rq.train(emb)
        faiss_codes = rq.compute_codes(emb).astype(np.int64)
        row = {"template": name, "embed_s": round(embed_s), "faiss [collisions, purity@1, lift@1]": scores(faiss_codes, labels, pairs)}
        variants = {
            "all-latent": {"model": {"first_level": "latent", "latent_dim": 6, "hidden_dims": [512, 256, 128]}, "train": {"epochs": 200, "checkpoint_every": 0}},
            "default": {"train": {"checkpoint_every": 0}},
        }
        for label, sections in variants.items():
            cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, embedding={"use_cache": False}, **sections)
            start = time.perf_counter()
            sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=cat.ids)
            row[f"ours {label} train_s"] = round(time.perf_counter() - start)
            row[f"ours {label} [collisions, purity@1, lift@1]"] = scores(sid.raw_codes_, labels, pairs)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
