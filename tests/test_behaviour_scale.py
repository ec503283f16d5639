"""Behaviour at scale: counts in blocks (memory or disk), PPMI and SVD block by block, and the
streaming build with sequences giving the in-memory build's IDs."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from semantic_ids import SemanticIDs
from semantic_ids.errors import ExportError, SequenceError
from semantic_ids.export.io import read_export
from semantic_ids.model.collab import fit_fusion, randomized_svd
from semantic_ids.model.cooccur import CountBlocks, count_sequences, pair_keys
from semantic_ids.model.svd import PPMI
from semantic_ids.runners.build import build
from semantic_ids.runners.streaming import build_streaming
from semantic_ids.stages.behaviour import fit_streaming_fusion
from semantic_ids.stages.sequences import iter_sequences, read_sequences
from semantic_ids.stages.shards import EmbeddingShards, write_embedding_shards

from .conftest import BEAUTY_DIR, clustered_embeddings


def naive_counts(seqs, n, window):
    """The definition, one pair at a time: summed 1 / distance, an item never its own neighbour."""
    c = np.zeros((n, n))
    for s in seqs:
        for i in range(len(s)):
            for j in range(i + 1, min(len(s), i + window + 1)):
                if s[i] != s[j]:
                    c[s[i], s[j]] += 1 / (j - i)
                    c[s[j], s[i]] += 1 / (j - i)
    return c


def random_sequences(n_items, n_users, seed=0, hot=None):
    rng = np.random.default_rng(seed)
    hot = hot or n_items
    return [rng.integers(0, hot, rng.integers(1, 12)) for _ in range(n_users)]


# -- counts --------------------------------------------------------------------------------
def test_counts_match_the_definition():
    seqs = random_sequences(30, 200)
    got = count_sequences(seqs, 30, 3, block_rows=8).to_csr().toarray()
    assert np.allclose(got, naive_counts(seqs, 30, 3), rtol=0, atol=1e-12)


def test_counts_do_not_depend_on_user_order_chunks_blocks_or_store(tmp_path):
    seqs = random_sequences(500, 3000, hot=200)
    ref = count_sequences(seqs, 500, 5).to_csr()
    perm = np.random.default_rng(1).permutation(len(seqs))
    for got in (count_sequences([seqs[i] for i in perm], 500, 5, chunk=97, block_rows=64).to_csr(),
                count_sequences(seqs, 500, 5, chunk=250, block_rows=32, directory=tmp_path / "c").to_csr()):
        assert (got.indptr == ref.indptr).all() and (got.indices == ref.indices).all()
        assert np.array_equal(got.data, ref.data)  # bit for bit
    assert np.array_equal(ref.toarray(), ref.toarray().T)  # symmetric, bit for bit


def test_disk_counts_leave_only_block_files(tmp_path):
    counts = count_sequences(random_sequences(100, 500), 100, 5, block_rows=32, directory=tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [f"counts-{b:05d}.npz" for b in range(4)]
    assert counts.nnz == counts.to_csr().nnz > 0


def test_pair_keys_refuse_catalogs_beyond_64_bit_keys():
    with pytest.raises(SequenceError, match="64-bit"):
        pair_keys([np.array([0, 1])], 2**31, 5)


# -- PPMI and the SVD, block by block --------------------------------------------------------
@pytest.mark.parametrize("block_rows", [16, 64, 1024])
def test_block_products_equal_the_whole_matrix_bit_for_bit(block_rows):
    seqs = random_sequences(300, 2000, hot=250)
    counts = count_sequences(seqs, 300, 5, block_rows=block_rows)
    op = PPMI(counts, counts.row_sums)
    whole = op.to_csr()
    x = np.random.default_rng(0).standard_normal((300, 7))
    assert np.array_equal(op @ x, whole @ x)
    assert np.array_equal(op.rmatmul(x), whole.T @ x)
    assert (whole.data > 0).all()  # positive PMI only
    u1, s1 = randomized_svd(op, 8, seed=0)
    u2, s2 = randomized_svd(whole, 8, seed=0)
    assert np.array_equal(u1, u2) and np.array_equal(s1, s2)


def test_randomized_svd_finds_the_top_singular_values():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(200, 5)) @ np.diag([50, 40, 30, 20, 10]) @ rng.normal(size=(5, 200)) / 200
    a = sparse.csr_matrix(low + 0.01 * sparse.random(200, 200, density=0.05, random_state=1).toarray())
    u, s = randomized_svd(a, 5, seed=0)
    want_u, want_s, _ = np.linalg.svd(a.toarray())
    assert np.allclose(s, want_s[:5], rtol=1e-6)
    assert np.allclose(np.abs(u.T @ want_u[:, :5]), np.eye(5), atol=1e-6)  # the same vectors, up to sign


# -- the chunked sequences reader -----------------------------------------------------------
def test_sequences_in_chunks_equal_the_whole_file(tmp_path):
    ids = np.array([f"i{i}" for i in range(50)])
    path = tmp_path / "s.jsonl"
    rng = np.random.default_rng(0)
    path.write_text("".join(json.dumps({"user_id": u, "items": ids[rng.integers(0, 50, 4)].tolist()}) + "\n" for u in range(23)))
    whole = read_sequences(path, ids, min_length=1)
    chunks = list(iter_sequences(path, ids, min_length=1, chunk_users=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert sum((c.users for c in chunks), []) == whole.users
    assert all(np.array_equal(a, b) for a, b in zip(sum((c.items for c in chunks), []), whole.items))


def test_chunked_reader_reports_every_problem_of_the_whole_file(tmp_path):
    ids = np.array(["a", "b", "c"])
    path = tmp_path / "s.jsonl"
    lines = [{"user_id": f"u{i}", "items": ["a", "b"]} for i in range(10)] + [{"user_id": "u1", "items": ["a", "zz"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(SequenceError, match=r"duplicate user id\(s\): 'u1'"):
        list(iter_sequences(path, ids, min_length=1, chunk_users=3))


# -- the streaming build with sequences -----------------------------------------------------
def test_streaming_fusion_equals_in_memory_fusion(behaviour_world, seq_config, tmp_path):
    d, ids, text = behaviour_world
    seqs = read_sequences(d / "s.jsonl", ids, min_length=1)
    mem = fit_fusion(text, ids, seqs.items, seq_config.collab, seed=0)
    got, stats = fit_streaming_fusion(d / "s.jsonl", EmbeddingShards(d / "emb"), seq_config.collab, seed=0,
                                      work_dir=tmp_path, chunk_users=100)
    assert np.array_equal(got.vectors, mem.vectors) and np.array_equal(got.ridge, mem.ridge)
    assert np.array_equal(got.counts, mem.counts)
    assert stats["users"] == 1200 and stats["interactions_held_out"] == 1200
    assert 0 < stats["items_with_interactions"] < 400


@pytest.mark.parametrize("batch_rows", [64, 1000])
def test_streaming_build_with_sequences_gives_the_in_memory_ids(behaviour_world, seq_config, tmp_path, batch_rows):
    d, ids, text = behaviour_world
    mem = SemanticIDs(seq_config, show_progress=False).fit(text, ids=ids, sequences=d / "s.jsonl")
    res = build_streaming(tmp_path / "out", embeddings=d / "emb", sequences=d / "s.jsonl", config=seq_config,
                          work_dir=tmp_path / "work", batch_rows=batch_rows, partitions=3, show_progress=False)
    exp = read_export(res.export_dir)
    got = pd.DataFrame(exp.codes, index=exp.ids).sort_index()
    want = pd.DataFrame(mem.codes_, index=mem.ids_).sort_index()
    pd.testing.assert_frame_equal(got, want)
    # the export's behaviour vectors follow its rows (sorted by semantic ID), item for item
    rows = pd.Index(mem.ids_).get_indexer(exp.fusion.ids)
    assert np.array_equal(exp.fusion.vectors, mem.fusion_.vectors[rows])
    assert res.metrics["collab"] == mem.metrics_["collab"]
    assert not list((tmp_path / "work").glob("run-*"))  # the on-disk counts went with the run directory
    # a loaded streaming export fuses like the in-memory one
    loaded = SemanticIDs.load(res.export_dir)
    assert np.array_equal(loaded.features(text[:20], ids[:20]), mem.features(text[:20], ids[:20]))


def test_streaming_build_with_bad_sequences_keeps_the_previous_export(behaviour_world, seq_config, tmp_path):
    d, _, _ = behaviour_world
    kw = dict(embeddings=d / "emb", config=seq_config, work_dir=tmp_path / "w", show_progress=False)
    first = build_streaming(tmp_path / "out", **kw)
    before = (first.export_dir / "semantic_ids.parquet").read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"user_id": "u", "items": ["i0000", "nope"]}) + "\n")
    with pytest.raises(SequenceError, match="'nope'"):
        build_streaming(tmp_path / "out", sequences=bad, **kw)
    assert (tmp_path / "out" / "semantic_ids.parquet").read_bytes() == before


@pytest.mark.slow
def test_beauty_streaming_with_sequences_gives_the_in_memory_ids(beauty_embedded, tmp_path):
    cfg, cat, emb = beauty_embedded
    seqs = BEAUTY_DIR / "sequences.jsonl"
    mem = SemanticIDs(cfg, show_progress=False).fit(emb, ids=cat.ids, sequences=seqs)
    write_embedding_shards(tmp_path / "emb", cat.ids, emb, rows_per_shard=5000)
    res = build_streaming(tmp_path / "out", embeddings=tmp_path / "emb", sequences=seqs, config=cfg,
                          work_dir=tmp_path / "work", show_progress=False)
    exp = read_export(res.export_dir)
    got = pd.DataFrame(exp.codes, index=exp.ids).sort_index()
    pd.testing.assert_frame_equal(got, pd.DataFrame(mem.codes_, index=mem.ids_).sort_index())


# -- warm rebuilds with sequences -----------------------------------------------------------
def test_procrustes_undoes_a_rotation_of_the_behaviour_space():
    from semantic_ids.model.collab import Fusion
    from semantic_ids.stages.warm.behaviour import rotate_to_previous

    rng = np.random.default_rng(0)
    v = rng.normal(size=(300, 8))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))  # what a new SVD basis does to the same space
    ids = np.arange(300)
    counts = np.ones(300, np.float32)
    old = Fusion(None, ids, v.astype(np.float32), counts, rng.normal(size=(5, 8)))
    new = Fusion(None, ids[::-1].copy(), (v @ q).astype(np.float32)[::-1].copy(), counts, old.ridge @ q)
    got, facts = rotate_to_previous(new, old)
    assert np.allclose(got.vectors[::-1], v, atol=1e-5) and np.allclose(got.ridge, old.ridge)
    assert facts["rotated"] and facts["mean_sq_distance_after"] < 1e-8 < facts["mean_sq_distance_before"]


@pytest.mark.parametrize("change", [{"collab": {"weight": 0.3}}, {"collab": {"window": 3}},
                                    {"catalog": {"template": "{title}!"}}, {"embedding": {"model": "other-model"}}])
def test_warm_start_refuses_a_previous_export_built_with_other_inputs(behaviour_world, seq_config, tmp_path, change):
    d, ids, text = behaviour_world
    prev = SemanticIDs(seq_config, show_progress=False).fit(text, ids=ids, sequences=d / "s.jsonl").save(tmp_path / "prev")
    field = ".".join([*change, *next(iter(change.values()))])
    with pytest.raises(ExportError, match=rf"{field}=.*\(previous .*not comparable"):
        build(tmp_path / "new", embeddings=d / "emb", streaming=True, sequences=d / "s.jsonl", previous=prev,
              config=seq_config.replace(**change))
    assert not (tmp_path / "new").exists()


def test_warm_rebuild_with_moved_behaviour_keeps_ids_in_memory_and_streaming(behaviour_world, seq_config, tmp_path, monkeypatch):
    """One interaction fewer per user, and a new SVD basis (an SVD may turn its basis any way
    within a subspace; on MovieLens it does): the rotated behaviour space keeps most IDs,
    streaming as in memory."""
    import semantic_ids.model.collab as collab

    d, ids, text = behaviour_world
    prev = SemanticIDs(seq_config, show_progress=False).fit(text, ids=ids, sequences=d / "s.jsonl").save(tmp_path / "prev")
    svd = collab.randomized_svd
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(8, 8)))
    monkeypatch.setattr(collab, "randomized_svd", lambda a, rank, seed: ((lambda u, s: (u * np.sqrt(s) @ q, np.ones_like(s)))(*svd(a, rank, seed=seed))))
    lines = [json.loads(x) for x in (d / "s.jsonl").read_text().splitlines()]
    moved = tmp_path / "moved.jsonl"
    moved.write_text("".join(json.dumps({**r, "items": r["items"][1:]}) + "\n" for r in lines))
    old = read_export(prev)
    mem = SemanticIDs(seq_config, show_progress=False).fit(text, ids=ids, sequences=moved, previous=prev)
    res = build_streaming(tmp_path / "s", embeddings=d / "emb", sequences=moved, previous=prev, config=seq_config,
                          work_dir=tmp_path / "w", show_progress=False)
    exp = read_export(res.export_dir)
    pd.testing.assert_frame_equal(pd.DataFrame(exp.codes, index=exp.ids).sort_index(),
                                  pd.DataFrame(mem.codes_, index=mem.ids_).sort_index())
    kept = (pd.DataFrame(mem.codes_, index=mem.ids_).sort_index().to_numpy()
            == pd.DataFrame(old.codes, index=old.ids).sort_index().to_numpy()).all(1).mean()
    assert kept >= 0.8, kept  # without the rotation: 0.46
    assert mem.metrics_["warm_start"]["behaviour"]["rotated"]


def test_old_items_keep_their_vector_until_their_evidence_grows_by_the_refresh_factor():
    from semantic_ids.model.collab import Fusion
    from semantic_ids.stages.warm.behaviour import rotate_to_previous

    rng = np.random.default_rng(1)
    old_v = rng.normal(size=(100, 8))
    old_v /= np.linalg.norm(old_v, axis=1, keepdims=True)
    new_v = old_v + 0.3 * rng.normal(size=(100, 8))  # behaviour moved, in the same basis
    new_v /= np.linalg.norm(new_v, axis=1, keepdims=True)
    c_old = np.full(100, 10.0, np.float32)
    from semantic_ids.stages.warm.behaviour import REFRESH_FACTOR

    c_new = np.where(np.arange(100) < 50, 10.0 * (REFRESH_FACTOR - 0.5), 10.0 * REFRESH_FACTOR).astype(np.float32)
    c_old[-1] = 0  # no behaviour before: placed by today's
    ids = np.arange(100)
    got, facts = rotate_to_previous(Fusion(None, ids, new_v.astype(np.float32), c_new, np.zeros((3, 8))),
                                    Fusion(None, ids, old_v.astype(np.float32), c_old, np.zeros((3, 8))))
    assert np.allclose(got.vectors[:50], old_v[:50], atol=1e-6)
    assert not np.allclose(got.vectors[50:], old_v[50:], atol=1e-2)
    assert facts["old_vectors_kept"] == 50
