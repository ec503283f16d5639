"""The collab stage's memory-saving paths give the plain paths' results (issue 21).

In-place LAPACK QR and SVD against numpy's, in-place and chunked row helpers against the
whole-array ones, and the batched Parquet reader against a plain pandas read.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semantic_ids.model import collab, svd
from semantic_ids.stages.embed import EmbeddingError, load_embeddings


def _tall(n=3000, k=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)) * rng.gamma(1.0, size=(n, 1)) * np.linspace(1, 20, k)  # uneven rows and columns


def test_qr_in_place_is_numpys_q_and_overwrites_its_input():
    y = _tall()
    f = np.asfortranarray(y)
    svd._qr_in_place(f)
    q = np.linalg.qr(y)[0]
    assert np.allclose(f, q, atol=1e-12)
    assert np.allclose(f.T @ f, np.eye(f.shape[1]), atol=1e-12)


def test_svd_left_is_numpys_u_and_s():
    b = _tall(seed=1)
    u, s, _ = np.linalg.svd(b.T, full_matrices=False)
    u2, s2 = svd._svd_left(b.copy())
    assert np.allclose(s2, s, rtol=1e-12) and np.allclose(u2, u, atol=1e-10)


def test_randomized_svd_gives_contiguous_seeded_vectors():
    from scipy import sparse

    a = sparse.random(400, 400, density=0.05, random_state=2, format="csr")
    a = a + a.T
    u, s = svd.randomized_svd(a, 6, seed=3)
    assert u.shape == (400, 6) and u.flags["C_CONTIGUOUS"] and (np.diff(s) <= 0).all()
    assert (u[np.abs(u).argmax(0), np.arange(6)] > 0).all()  # signs fixed
    u2, s2 = svd.randomized_svd(a, 6, seed=3)
    assert np.array_equal(u, u2) and np.array_equal(s, s2)


@pytest.mark.parametrize("chunk", [7, 64, 100_000])
def test_row_helpers_do_not_depend_on_the_chunk(monkeypatch, chunk):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 9))
    x[5] = 0.0  # a zero row stays zero
    text = rng.normal(size=(300, 16)).astype(np.float32)
    monkeypatch.setattr(collab, "CHUNK", chunk)
    assert np.array_equal(collab._unit_in_place(x.copy()), collab._unit(x))
    t = collab._unit(text.astype(np.float64))
    assert np.array_equal(collab._with_bias(text), np.hstack([t, np.ones((300, 1))]))


def test_fusion_does_not_depend_on_the_chunk(monkeypatch):
    from semantic_ids.config import CollabConfig

    rng = np.random.default_rng(5)
    n, d = 500, 16
    text = rng.normal(size=(n, d)).astype(np.float32)
    seqs = [rng.integers(0, n, size=rng.integers(3, 12)) for _ in range(800)]
    ids = np.array([f"i{i}" for i in range(n)])
    cfg = CollabConfig(dim=8)
    ref = collab.fit_fusion(text, ids, seqs, cfg, seed=0)
    fused = ref.fuse(text, ids)
    monkeypatch.setattr(collab, "CHUNK", 128)  # a multiple of 64: rows are BLAS-exact
    small = collab.fit_fusion(text, ids, seqs, cfg, seed=0)
    assert np.array_equal(small.vectors, ref.vectors) and np.array_equal(small.ridge, ref.ridge)
    assert np.array_equal(small.fuse(text, ids), fused)


def _plain(path, ids):
    """The general path: the whole file through pandas, then rows in the order of ids."""
    frame = pd.read_parquet(path)
    emb = np.stack([np.asarray(v, dtype=np.float32) for v in frame["embedding"]])
    pos = {k: i for i, k in enumerate(frame["item_id"])}
    return emb[[pos[i] for i in ids]]


@pytest.mark.parametrize("kind", ["float32", "float64", "fixed"])
def test_batched_parquet_read_matches_a_plain_read(tmp_path, kind):
    rng = np.random.default_rng(6)
    n, d = 70_000, 4  # more rows than one 65,536-row batch
    keys = np.array([f"k{i}" for i in range(n)])
    values = rng.normal(size=(n, d)).astype(np.float64 if kind == "float64" else np.float32)
    flat = pa.array(values.ravel())
    col = (pa.FixedSizeListArray.from_arrays(flat, d) if kind == "fixed"
           else pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), flat))
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"item_id": keys, "embedding": col}), path, row_group_size=20_000)
    ids = keys[rng.permutation(n)[: n - 100]]  # shuffled; the file holds 100 items the catalog lacks
    got = load_embeddings(path, ids)
    assert got.dtype == np.float32 and np.array_equal(got, _plain(path, ids))


def test_batched_parquet_read_keeps_the_errors(tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame({"item_id": ["a", "b", "c"], "embedding": [[1.0, 0.0], None, [0.0, 1.0]]}).to_parquet(path)
    with pytest.raises(EmbeddingError, match=r"every embedding should have 2 values; item\(s\) \['b'\] have \[None\]"):
        load_embeddings(path, np.array(["a", "c"]))
    pd.DataFrame({"item_id": ["a", "b"], "embedding": [[1.0, 0.0], [0.0, 1.0]]}).to_parquet(path)
    with pytest.raises(EmbeddingError, match=r"no embedding for 1 catalog item\(s\), e.g. .*'z'"):
        load_embeddings(path, np.array(["a", "z"]))
    pd.DataFrame({"item_id": ["a", "a"], "embedding": [[1.0, 0.0], [0.0, 1.0]]}).to_parquet(path)
    with pytest.raises(EmbeddingError, match="e.parquet"):
        load_embeddings(path, np.array(["a"]))
    pd.DataFrame({"item_id": ["a"], "embedding": [[np.nan, 0.0]]}).to_parquet(path)
    with pytest.raises(EmbeddingError, match="NaN or infinity"):
        load_embeddings(path, np.array(["a"]))
