"""The streaming build: sharded embeddings, batch catalog reading, on-disk resolution.

Invariants: the streaming build gives exactly the in-memory build's IDs (any
batch size, any number of partitions, any shard layout); bad input fails with
the item named; a failed run leaves the previous export.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semantic_ids import SemanticIDs
from semantic_ids.stages.catalog import CatalogError, iter_catalog_batches, load_catalog
from semantic_ids.stages.resolve import resolve_counter
from semantic_ids.stages.embed import EmbeddingError
from semantic_ids.export.io import read_export
from semantic_ids.stages.metrics import code_stats
from semantic_ids.stages.shards import EmbeddingShards, write_embedding_shards
from semantic_ids.stages.encode import codes_table
from semantic_ids.stages.resolve_disk import resolve_to_parquet
from semantic_ids.runners.streaming import build_streaming

from .conftest import clustered_embeddings


def by_id(ids, codes) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(codes), index=pd.Index(ids)).sort_index()


@pytest.fixture
def sampled_config(tiny_config):
    # a training sample smaller than the catalog, so sampling is exercised
    return tiny_config.replace(train={"max_train_items": 300, "epochs": 6, "checkpoint_every": 0})


@pytest.fixture
def emb_500():
    return clustered_embeddings(500, seed=3)


@pytest.fixture
def ids_500():
    rng = np.random.default_rng(1)
    return np.array([f"sku-{i:05d}" for i in rng.permutation(500)], dtype=object)


# -- shards -----------------------------------------------------------------------
def test_shards_round_trip_and_take(tmp_path, emb_500, ids_500):
    write_embedding_shards(tmp_path / "emb", ids_500, emb_500, rows_per_shard=128)
    shards = EmbeddingShards(tmp_path / "emb")
    assert len(shards) == 500 and len(shards.files) == 4 and shards.dim == 32
    got_ids, got = [], []
    for b in shards.iter_batches(50):
        got_ids += b.ids.to_pylist()
        got.append(b.embeddings)
    assert got_ids == ids_500.tolist()
    np.testing.assert_array_equal(np.concatenate(got), emb_500)
    rows = np.array([0, 127, 128, 300, 499])
    np.testing.assert_array_equal(shards.take(rows, batch_rows=37), emb_500[rows])


def test_shards_accept_plain_lists_from_other_tools(tmp_path, emb_500, ids_500):
    pq.write_table(pa.table({"item_id": ids_500.tolist(), "embedding": emb_500.astype(np.float64).tolist()}), tmp_path / "e.parquet")
    shards = EmbeddingShards(tmp_path / "e.parquet")
    np.testing.assert_allclose(next(shards.iter_batches(1000)).embeddings, emb_500, rtol=1e-6)


def test_shards_name_the_bad_item(tmp_path, emb_500, ids_500):
    bad = emb_500.copy()
    bad[7, 3] = np.nan
    write_embedding_shards(tmp_path / "nan", ids_500, bad)
    with pytest.raises(EmbeddingError, match=ids_500[7]):
        list(EmbeddingShards(tmp_path / "nan").iter_batches())
    vals = emb_500.tolist()
    vals[9] = vals[9][:5]
    pq.write_table(pa.table({"item_id": ids_500.tolist(), "embedding": vals}), tmp_path / "ragged.parquet")
    with pytest.raises(EmbeddingError, match=rf"{ids_500[9]}.*\[5\]"):
        list(EmbeddingShards(tmp_path / "ragged.parquet").iter_batches())
    pq.write_table(pa.table({"id": ids_500.tolist()}), tmp_path / "nocol.parquet")
    with pytest.raises(EmbeddingError, match="should have columns"):
        EmbeddingShards(tmp_path / "nocol.parquet")
    with pytest.raises(EmbeddingError, match="not found"):
        EmbeddingShards(tmp_path / "missing")


# -- catalog batches ----------------------------------------------------------------
def test_catalog_batches_match_the_whole_catalog(tmp_path, small_catalog):
    path = tmp_path / "cat.parquet"
    small_catalog.to_parquet(path, row_group_size=90)
    whole = load_catalog(path)
    ids, texts = [], []
    for b in iter_catalog_batches(path, batch_rows=64):
        ids += list(b.ids)
        texts += b.texts
    assert ids == list(whole.ids) and texts == whole.texts


def test_catalog_batches_errors_name_rows_and_format(tmp_path, small_catalog):
    frame = small_catalog.copy()
    frame.loc[150, "item_id"] = None
    frame.to_parquet(tmp_path / "null.parquet")
    with pytest.raises(CatalogError, match=r"rows 128\.\.191.*null"):
        list(iter_catalog_batches(tmp_path / "null.parquet", batch_rows=64))
    small_catalog.to_csv(tmp_path / "cat.csv", index=False)
    with pytest.raises(CatalogError, match="convert this .csv to Parquet"):
        list(iter_catalog_batches(tmp_path / "cat.csv"))


# -- resolution on disk --------------------------------------------------------------
@pytest.mark.parametrize("partitions,batch_rows", [(1, 1000), (3, 7), (16, 64)])
def test_resolution_on_disk_equals_in_memory(tmp_path, partitions, batch_rows):
    rng = np.random.default_rng(partitions)
    n = 700
    codes = rng.integers(0, 4, size=(n, 3))  # many collisions
    ids = np.array([f"i{v}" for v in rng.permutation(10 * n)[:n]], dtype=object)
    (tmp_path / "codes").mkdir()
    for s in range(0, n, 200):
        pq.write_table(codes_table(pa.array(ids[s : s + 200].tolist()), codes[s : s + 200], "item_id"), tmp_path / "codes" / f"part-{s:05d}.parquet")
    out = tmp_path / "ids.parquet"
    stats = resolve_to_parquet(
        tmp_path / "codes", out, codebook_sizes=(16, 16, 16), id_column="item_id", metadata={}, partitions=partitions, batch_rows=batch_rows, show_progress=False
    )
    table = pq.read_table(out)
    got = np.column_stack([table.column(f"level_{i}").to_numpy() for i in range(4)])
    want = resolve_counter(codes, ids).codes
    pd.testing.assert_frame_equal(by_id(table.column("item_id").to_pylist(), got), by_id(ids, want))
    # rows come sorted by semantic ID
    assert (np.lexsort(got.T[::-1]) == np.arange(n)).all()
    mem = code_stats(codes, (16, 16, 16))
    disk = stats.code_stats((16, 16, 16))
    for k in ("codes_used", "collision_rate", "n_collided_items", "largest_group", "collision_rate_by_depth"):
        assert disk[k] == pytest.approx(mem[k]), k
    np.testing.assert_allclose(disk["perplexity"], mem["perplexity"])


def test_duplicate_ids_across_batches_are_named(tmp_path):
    (tmp_path / "codes").mkdir()
    codes = np.zeros((4, 3), dtype=np.int64)
    pq.write_table(codes_table(pa.array(["a", "b"]), codes[:2], "item_id"), tmp_path / "codes" / "part-0.parquet")
    pq.write_table(codes_table(pa.array(["c", "a"]), codes[2:] + 1, "item_id"), tmp_path / "codes" / "part-1.parquet")
    with pytest.raises(CatalogError, match=r"duplicate 'item_id'.*\['a'\]"):
        resolve_to_parquet(tmp_path / "codes", tmp_path / "o.parquet", codebook_sizes=(4, 4, 4), id_column="item_id", metadata={}, show_progress=False)
    assert not (tmp_path / "o.parquet").exists()


# -- the whole streaming build ---------------------------------------------------------
@pytest.mark.parametrize("batch_rows,rows_per_shard", [(64, 128), (1000, 500)])
def test_streaming_build_equals_in_memory_build(tmp_path, sampled_config, emb_500, ids_500, batch_rows, rows_per_shard):
    frame = pd.DataFrame({"item_id": ids_500, "title": "x"})
    mem = SemanticIDs(sampled_config, show_progress=False).fit(emb_500, ids=frame["item_id"].to_numpy())
    write_embedding_shards(tmp_path / "emb", ids_500, emb_500, rows_per_shard=rows_per_shard)
    res = build_streaming(
        tmp_path / "out", embeddings=tmp_path / "emb", config=sampled_config, work_dir=tmp_path / "work",
        batch_rows=batch_rows, partitions=5, show_progress=False,
    )
    exp = read_export(res.export_dir)
    pd.testing.assert_frame_equal(by_id(exp.ids, exp.codes), by_id(mem.ids_, mem.codes_))
    assert len(np.unique(exp.codes, axis=0)) == len(exp.codes) == 500
    for k in ("codes_used", "collision_rate", "largest_group", "n_collided_items"):
        assert res.metrics[k] == pytest.approx(mem.metrics_[k]), k
    assert res.metrics["training"]["train_items"] == 300
    assert set(res.metrics["stages"]) >= {"train", "encode", "resolve", "export"}
    # the export loads like any other, and the work directory is cleaned up
    assert SemanticIDs.load(res.export_dir).codes_.shape == (500, 4)
    assert not list((tmp_path / "work").glob("run-*"))


def test_streaming_build_from_a_catalog_resumes_embedding(tmp_path, sampled_config, small_catalog, fake_embedder):
    path = tmp_path / "cat.parquet"
    small_catalog.to_parquet(path)
    target = "semantic_ids.stages.shards.embed_texts"
    first = fake_embedder(target=target, interrupt_on=3)  # an interrupted run after two shards
    kw = dict(catalog=path, config=sampled_config, work_dir=tmp_path / "work", batch_rows=128, show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        build_streaming(tmp_path / "out", **kw)
    assert len(first.calls) == 3 and not (tmp_path / "out").exists()
    second = fake_embedder(target=target)
    res = build_streaming(tmp_path / "out", **kw)
    assert len(second.texts) == 144  # the two finished shards (256 items) were not embedded again
    assert res.metrics["embedding"]["resumed"] == 256 and res.metrics["embedding"]["computed"] == 144
    (emb_dir,) = (tmp_path / "work" / "embeddings").iterdir()
    shards = EmbeddingShards(emb_dir)
    assert sum((b.ids.to_pylist() for b in shards.iter_batches(1000)), []) == small_catalog["item_id"].tolist()
    mem = SemanticIDs(sampled_config, show_progress=False).fit(shards.take(np.arange(400)), ids=small_catalog["item_id"].to_numpy())
    exp = read_export(res.export_dir)
    pd.testing.assert_frame_equal(by_id(exp.ids, exp.codes), by_id(mem.ids_, mem.codes_))


def test_failed_streaming_build_keeps_the_previous_export(tmp_path, sampled_config, emb_500, ids_500):
    write_embedding_shards(tmp_path / "emb", ids_500, emb_500)
    first = build_streaming(tmp_path / "out", embeddings=tmp_path / "emb", config=sampled_config, work_dir=tmp_path / "w", show_progress=False)
    before = (first.export_dir / "semantic_ids.parquet").read_bytes()
    dup = ids_500.copy()
    dup[10] = dup[20]
    write_embedding_shards(tmp_path / "emb_dup", dup, emb_500)
    with pytest.raises(CatalogError, match=dup[20]):
        build_streaming(tmp_path / "out", embeddings=tmp_path / "emb_dup", config=sampled_config, work_dir=tmp_path / "w", show_progress=False)
    assert (tmp_path / "out" / "semantic_ids.parquet").read_bytes() == before
    read_export(tmp_path / "out")  # still verifies


def test_streaming_build_same_seed_same_bytes(tmp_path, sampled_config, emb_500, ids_500):
    write_embedding_shards(tmp_path / "emb", ids_500, emb_500)
    a = build_streaming(tmp_path / "a", embeddings=tmp_path / "emb", config=sampled_config, work_dir=tmp_path / "w", show_progress=False)
    b = build_streaming(tmp_path / "b", embeddings=tmp_path / "emb", config=sampled_config, work_dir=tmp_path / "w", batch_rows=33, show_progress=False)
    assert (a.export_dir / "semantic_ids.parquet").read_bytes() == (b.export_dir / "semantic_ids.parquet").read_bytes()


def test_streaming_build_rejects_what_it_cannot_do(tmp_path, sampled_config):
    with pytest.raises(ValueError, match="needs a catalog.* or an embeddings"):
        build_streaming(tmp_path / "o", config=sampled_config)
    with pytest.raises(ValueError, match="balanced"):
        build_streaming(tmp_path / "o", embeddings=tmp_path, config=sampled_config.replace(collision={"strategy": "balanced"}))
    with pytest.raises(ValueError, match="engine"):
        build_streaming(tmp_path / "o", embeddings=tmp_path, config=sampled_config, engine="spark")


def test_cli_streaming_build(tmp_path, sampled_config, emb_500, ids_500, capsys):
    import json

    from semantic_ids.cli.main import main

    write_embedding_shards(tmp_path / "emb", ids_500, emb_500, rows_per_shard=200)
    m, t = sampled_config.model, sampled_config.train
    (tmp_path / "c.toml").write_text(
        f"[model]\ncodebook_sizes = {list(m.codebook_sizes)}\nlatent_dim = {m.latent_dim}\nhidden_dims = {list(m.hidden_dims)}\n"
        f"[train]\nepochs = {t.epochs}\nbatch_size = {t.batch_size}\nmax_train_items = {t.max_train_items}\ncheckpoint_every = 0\n"
        "[embedding]\nuse_cache = false\n"
    )
    rc = main(["build", "--streaming", "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "out"),
               "--config", str(tmp_path / "c.toml"), "--work-dir", str(tmp_path / "w"), "--batch-rows", "128", "--json", "--no-progress"])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_items"] == 500 and metrics["build"]["mode"] == "streaming"
    assert read_export(tmp_path / "out").codes.shape == (500, 4)
    # without a catalog or embeddings: a clear error, exit code 2
    assert main(["build", "--streaming", "--out", str(tmp_path / "o2")]) == 2
    assert "needs a catalog (--catalog" in capsys.readouterr().err


def test_streaming_embeds_through_the_in_memory_builds_cache(tmp_path, monkeypatch):
    """Texts the in-memory build cached are not embedded again by the streaming build."""
    from semantic_ids.stages import embed
    from semantic_ids.stages.cache import EmbeddingCache
    from semantic_ids.config import BuildConfig
    from semantic_ids.stages.shards import embed_catalog

    n = 50
    df = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "title": [f"thing {i}" for i in range(n)]})
    df.to_parquet(tmp_path / "c.parquet")
    cfg = BuildConfig().replace(embedding={"cache_dir": str(tmp_path / "cache")})
    vecs = clustered_embeddings(n, dim=8)
    EmbeddingCache(tmp_path / "cache", embed.model_key(cfg.embedding)).put(load_catalog(df, cfg.catalog).texts, vecs)

    def no_model(*a, **k):
        raise AssertionError("the streaming build embedded a text that was in the cache")

    monkeypatch.setattr(embed, "load_model", no_model)
    counts = embed_catalog(tmp_path / "c.parquet", cfg, tmp_path / "shards", batch_rows=16, show_progress=False)
    assert counts["computed"] == n
    got = EmbeddingShards(tmp_path / "shards", "item_id")
    assert np.allclose(got.take(np.arange(n)), vecs, atol=1e-6)


def test_dead_runs_work_directories_are_removed_and_nothing_else(tmp_path):
    """A killed streaming build leaves work/run-*; the next build removes it only when its
    owner file names a process of this host that no longer runs."""
    import fcntl
    import json
    import os
    import socket
    import subprocess
    import sys

    from semantic_ids.runners.streaming import OWNER_FILE, remove_dead_runs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    host = socket.gethostname()
    runs = {
        "dead": {"pid": int(dead.stdout), "host": host},
        "live": {"pid": os.getpid(), "host": host},
        "other-host": {"pid": int(dead.stdout), "host": host + "-elsewhere"},
    }
    for name, owner in runs.items():
        (tmp_path / f"run-{name}").mkdir()
        (tmp_path / f"run-{name}" / OWNER_FILE).write_text(json.dumps(owner))
    (tmp_path / "run-no-owner").mkdir()  # not ours to judge
    (tmp_path / "user-data").mkdir()
    # a dead pid whose owner file is still locked: a live build in another PID namespace (same host name)
    (tmp_path / "run-locked").mkdir()
    (tmp_path / "run-locked" / OWNER_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": host}))
    with open(tmp_path / "run-locked" / OWNER_FILE) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert remove_dead_runs(tmp_path) == [tmp_path / "run-dead"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-live", "run-locked", "run-no-owner", "run-other-host", "user-data"]
    assert remove_dead_runs(tmp_path) == [tmp_path / "run-locked"]  # its lock released: now it is a dead run's
