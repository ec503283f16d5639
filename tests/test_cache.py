"""Tests for semantic_ids.stages.cache: the sharded Parquet embedding cache."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from semantic_ids.stages.cache import EmbeddingCache, default_cache_dir, text_key


def _emb(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_put_get_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path, "model-a")
    texts = ["red shoe", "blue hat", ""]
    emb = _emb(3)
    cache.put(texts, emb)
    got = cache.get(texts)
    assert set(got) == set(texts)
    for i, t in enumerate(texts):
        assert got[t].dtype == np.float32
        assert got[t].shape == (4,)
        np.testing.assert_array_equal(got[t], emb[i])


def test_float64_input_stored_as_float32(tmp_path):
    cache = EmbeddingCache(tmp_path, "m")
    emb = np.array([[1 / 3, 2 / 3]], dtype=np.float64)
    cache.put(["x"], emb)
    got = cache.get(["x"])["x"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, emb[0].astype(np.float32))


def test_other_model_key_does_not_see_entries(tmp_path):
    a = EmbeddingCache(tmp_path, "model-a")
    b = EmbeddingCache(tmp_path, "model-b")
    a.put(["x", "y"], _emb(2))
    assert b.get(["x", "y"]) == {}
    assert a.dir != b.dir
    # A fresh object with the same key sees them (keyed by model, not by instance).
    assert set(EmbeddingCache(tmp_path, "model-a").get(["x", "y"])) == {"x", "y"}


def test_other_root_does_not_see_entries(tmp_path):
    EmbeddingCache(tmp_path / "r1", "m").put(["x"], _emb(1))
    assert EmbeddingCache(tmp_path / "r2", "m").get(["x"]) == {}


def test_partial_hits(tmp_path):
    cache = EmbeddingCache(tmp_path, "m")
    emb = _emb(2)
    cache.put(["a", "b"], emb)
    got = cache.get(["b", "c", "a", "d"])
    assert set(got) == {"a", "b"}
    np.testing.assert_array_equal(got["a"], emb[0])
    np.testing.assert_array_equal(got["b"], emb[1])


def test_get_empty_and_missing_dir(tmp_path):
    cache = EmbeddingCache(tmp_path / "nothing-here", "m")
    assert cache.get([]) == {}
    assert cache.get(["x"]) == {}
    assert not cache.dir.exists()  # reading does not create it


def test_put_empty_is_noop(tmp_path):
    cache = EmbeddingCache(tmp_path, "m")
    cache.put([], np.zeros((0, 4), dtype=np.float32))
    assert not cache.dir.exists()


def test_put_appends_shards_across_calls(tmp_path):
    cache = EmbeddingCache(tmp_path, "m")
    e1, e2 = _emb(2, seed=1), _emb(3, seed=2)
    cache.put(["a", "b"], e1)
    cache.put(["c", "d", "e"], e2)
    assert len(list(cache.dir.glob("shard-*.parquet"))) == 2
    got = cache.get(["a", "b", "c", "d", "e"])
    np.testing.assert_array_equal(np.stack([got[t] for t in "abcde"]), np.vstack([e1, e2]))


def test_shard_size_splits(tmp_path):
    cache = EmbeddingCache(tmp_path, "m", shard_size=2)
    texts = [f"t{i}" for i in range(5)]
    emb = _emb(5, dim=3)
    cache.put(texts, emb)
    assert len(list(cache.dir.glob("shard-*.parquet"))) == 3
    got = cache.get(texts)
    np.testing.assert_array_equal(np.stack([got[t] for t in texts]), emb)
    # Only shards and the model description; no temporary files.
    assert sorted(p.name for p in cache.dir.iterdir() if not p.name.startswith("shard-")) == ["model.json"]


def test_model_json_records_key(tmp_path):
    cache = EmbeddingCache(tmp_path, "sentence-transformers/all-MiniLM-L6-v2|max_len=128")
    cache.put(["x"], _emb(1))
    meta = json.loads((cache.dir / "model.json").read_text(encoding="utf-8"))
    assert meta == {"model_key": "sentence-transformers/all-MiniLM-L6-v2|max_len=128"}


def test_unicode_and_surrogate_texts(tmp_path):
    cache = EmbeddingCache(tmp_path, "m")
    texts = ["café crème", "日本語", "emoji 👟", "lone \udcff surrogate"]
    emb = _emb(4)
    cache.put(texts, emb)
    got = cache.get(texts)
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(got[t], emb[i])


def test_text_key():
    assert text_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert text_key("a") != text_key("a ")


def test_unreadable_shard_is_skipped(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path, "m")
    emb = _emb(1)
    cache.put(["good"], emb)
    (cache.dir / "shard-0000broken.parquet").write_bytes(b"not parquet at all")
    with caplog.at_level(logging.WARNING, logger="semantic_ids.stages.cache"):
        got = cache.get(["good", "other"])
    assert set(got) == {"good"}
    np.testing.assert_array_equal(got["good"], emb[0])
    assert any("unreadable cache shard" in r.getMessage() for r in caplog.records)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMANTIC_IDS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SEMANTIC_IDS_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "semantic-ids")


def test_mismatched_lengths_rejected(tmp_path):
    cache = EmbeddingCache(tmp_path, "m")
    with pytest.raises(ValueError, match="length"):
        cache.put(["a", "b"], _emb(3))
    assert cache.get(["a", "b"]) == {}
