"""End-to-end builds on real catalogs: MovieLens-100K (from the recbole wheel)
and Amazon Beauty (from ../shared, skipped where it is absent).

Marked ``slow``; they run in CI. Embeddings are cached under ``data/cache``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from semantic_ids import BuildConfig, SemanticIDs, build
from semantic_ids.stages.embed import embed_texts
from semantic_ids.stages.catalog import load_catalog
from semantic_ids.stages.catalog.datasets import fetch_movielens
from semantic_ids.export.tokens import parse_sid

from .conftest import ROOT

pytestmark = pytest.mark.slow
CACHE = str(ROOT / "data" / "cache")


@pytest.fixture(scope="module")
def movielens_items():
    return fetch_movielens(ROOT / "data" / "ml-100k")


def check_export(out, catalog_ids):
    df = pd.read_parquet(out / "semantic_ids.parquet")
    assert len(df) == len(catalog_ids)
    assert sorted(df["item_id"].tolist()) == sorted(catalog_ids)
    assert df["item_id"].is_unique and df["semantic_id"].is_unique
    codes = np.stack(df["codes"].to_numpy())
    assert [parse_sid(s) for s in df["semantic_id"]] == [tuple(c) for c in codes.tolist()]
    return df, codes


def test_movielens_fetch(movielens_items):
    df = pd.read_parquet(movielens_items)
    assert len(df) == 1682
    assert df["item_id"].is_unique
    assert df.loc[df["item_id"] == 1, "title"].item() == "Toy Story"
    seqs = [json.loads(line) for line in (movielens_items.parent / "sequences.jsonl").read_text().splitlines()]
    assert len(seqs) == 943 and sum(len(s["items"]) for s in seqs) == 100_000


def test_movielens_end_to_end(movielens_items, tmp_path):
    cfg = BuildConfig().replace(
        catalog={"template": "Title: {title}; Year: {year}; Genres: {genres}"},
        embedding={"cache_dir": CACHE},
        train={"epochs": 60},
    )
    res = build(tmp_path / "ml", catalog=movielens_items, config=cfg, show_progress=False)
    sid, out = res.estimator, res.export_dir
    df, codes = check_export(out, pd.read_parquet(movielens_items)["item_id"].tolist())
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_items"] == 1682 and m["unique_after_resolution"]
    assert m["collision_rate"] < 0.05
    # codebook sizes unset: sized from the catalog (issue 16; semantic_ids.model.sizing), 1,682 items -> 3 x 64
    # (before: 3 x 256, about 6.6 items per level-1 code); measured: every code of every level used
    assert m["codebook_sizes"] == [64, 64, 64]
    assert m["codes_used"][0] == 64 and min(m["codes_used"]) >= 56  # no level collapses
    assert set(m["stages"]) == {"catalog", "embed", "train", "encode", "resolve", "export"}
    meta = json.loads(pq.read_schema(out / "semantic_ids.parquet").metadata[b"semantic_ids"])
    assert meta["embedding_model"] == "all-MiniLM-L6-v2"

    # Rerun: embeddings all come from the cache, and the export is byte-identical.
    again = build(tmp_path / "ml2", catalog=movielens_items, config=cfg, show_progress=False)
    assert again.metrics["embedding"]["computed"] == 0
    out2 = again.export_dir
    assert (out / "semantic_ids.parquet").read_bytes() == (out2 / "semantic_ids.parquet").read_bytes()

    # Reload: the frozen model gives the same codes for the same embeddings.
    loaded = SemanticIDs.load(out)
    emb = embed_texts(load_catalog(movielens_items, cfg.catalog).texts, loaded.config_.embedding, show_progress=False)[0]
    assert np.array_equal(loaded.transform(emb), sid.raw_codes_)


@pytest.fixture(scope="module")
def beauty_build(beauty_dir, tmp_path_factory):
    # the batch job's Beauty config (its template), library defaults otherwise
    cfg = BuildConfig.from_toml(ROOT / "pipelines" / "configs" / "amazon_beauty.toml", ignore=("job",))
    cfg = cfg.replace(embedding={"cache_dir": CACHE})
    res = build(tmp_path_factory.mktemp("beauty") / "export", catalog=beauty_dir / "items.jsonl", config=cfg, show_progress=False)
    return res.estimator, res.export_dir


def test_beauty_meets_the_bar(beauty_dir, beauty_build):
    sid, out = beauty_build
    ids = [json.loads(line)["item_id"] for line in (beauty_dir / "items.jsonl").read_text().splitlines()]
    assert len(ids) == 12_101
    df, codes = check_export(out, ids)
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_empty_text"] == 0  # the 7 empty titles still have brand/categories
    # issue 4's bar for the default model (seed 0; README "Measured quality and speed"):
    # every code of every level in use; first-level perplexity >= 80% of 256
    assert m["codes_used"] == [256, 256, 256]
    assert m["perplexity"][0] >= 0.8 * 256
    # collision rate before resolution at most 1%
    assert m["collision_rate"] <= 0.01
    raw = codes[:, :3]
    assert m["collision_rate"] == pytest.approx(1 - len(np.unique(raw, axis=0)) / len(raw))
    assert m["largest_group"] == int(codes[:, 3].max()) + 1
    # level-1 category purity >= 0.56 and co-interaction lift >= 21. Bisecting k-means has no
    # random start, so freshly computed and cached embeddings (which differ in the last bits)
    # give the same level 1: purity 0.585, lift 23.3 (README "Measured")
    from semantic_ids.quality.evaluate import evaluate_export

    # (embeddings for the neighbour share come from the build's cache)
    ev = evaluate_export(out, catalog=beauty_dir / "items.jsonl", sequences=beauty_dir / "sequences.jsonl")
    assert ev["purity@1"] >= 0.56
    assert ev["lift@1"] >= 21


def test_beauty_lookup_round_trips(beauty_build):
    from semantic_ids.lookup import SemanticIDLookup

    sid, out = beauty_build
    lk = SemanticIDLookup.load(out)
    ids = sid.ids_.tolist()
    sids = lk.item_to_sid(ids)
    assert lk.sid_to_item(sids) == ids  # item -> ID -> item for every item
    assert lk.sid_to_item([tuple(c) for c in sid.codes_.tolist()]) == ids
    # every prefix count equals a brute-force count
    codes = sid.codes_
    for depth in (1, 2):
        prefixes, counts = np.unique(codes[:, :depth], axis=0, return_counts=True)
        for p, c in list(zip(prefixes.tolist(), counts.tolist()))[:200]:
            assert lk.prefix_count(tuple(p)) == c
    # a generated code that matches no item maps to the brute-force nearest valid item
    vectors = lk.code_index.decode(codes[:, :3])
    taken = {tuple(c) for c in codes[:, :3].tolist()}
    rng = np.random.default_rng(0)
    queries = [q for q in (tuple(int(x) for x in rng.integers(0, 256, 3)) for _ in range(50)) if q not in taken][:20]
    nb = lk.search_codes([list(q) for q in queries], k=1, prefer_prefix=False)
    for q, d in zip(queries, nb.distances[:, 0]):
        best = ((vectors - lk.code_index.decode(np.array([q]))) ** 2).sum(1).min()
        assert d == pytest.approx(best, rel=1e-4, abs=1e-6)
