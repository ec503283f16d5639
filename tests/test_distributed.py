"""The Ray Data engine on a local Ray instance gives exactly the local engine's IDs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray", reason="the Ray engine needs the 'ray' extra: pip install 'semantic-ids[ray]'")
pytestmark = pytest.mark.slow  # a local Ray instance: minutes on 2 cores

from semantic_ids.export.io import read_export  # noqa: E402
from semantic_ids.stages.shards import write_embedding_shards  # noqa: E402
from semantic_ids.runners.streaming import build_streaming  # noqa: E402

from .conftest import clustered_embeddings  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from semantic_ids.runners.ray import init_ray

    init_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def config(tiny_config):
    return tiny_config.replace(train={"max_train_items": 300, "epochs": 4, "checkpoint_every": 0})


def _same_export(a, b) -> None:
    ea, eb = read_export(a), read_export(b)
    assert ea.ids.tolist() == eb.ids.tolist()  # both sorted by semantic ID
    np.testing.assert_array_equal(ea.codes, eb.codes)
    assert (a / "semantic_ids.parquet").read_bytes() == (b / "semantic_ids.parquet").read_bytes()


def test_ray_assign_equals_local(tmp_path, local_ray, config):
    n = 3000
    emb = clustered_embeddings(n, seed=5)
    ids = np.array([f"p{i}" for i in np.random.default_rng(0).permutation(n)], dtype=object)
    write_embedding_shards(tmp_path / "emb", ids, emb, rows_per_shard=700)
    kw = dict(embeddings=tmp_path / "emb", config=config, work_dir=tmp_path / "w", show_progress=False)
    local = build_streaming(tmp_path / "local", **kw)
    ray_ = build_streaming(tmp_path / "ray", engine="ray", ray_options={"batch_size": 500}, **kw)
    _same_export(local.export_dir, ray_.export_dir)
    assert ray_.metrics["build"]["engine"] == "ray"
    assert ray_.metrics["collision_rate"] == local.metrics["collision_rate"]


def test_ray_embed_and_assign_from_a_catalog_equal_local(tmp_path, local_ray, config, small_catalog):
    path = tmp_path / "cat.parquet"
    small_catalog.to_parquet(path, row_group_size=150)
    local = build_streaming(tmp_path / "local", catalog=path, config=config, work_dir=tmp_path / "wl", batch_rows=96, show_progress=False)
    ray_ = build_streaming(tmp_path / "ray", catalog=path, config=config, work_dir=tmp_path / "wr", batch_rows=96, engine="ray", show_progress=False)
    _same_export(local.export_dir, ray_.export_dir)
    (el,) = (tmp_path / "wl" / "embeddings").iterdir()
    (er,) = (tmp_path / "wr" / "embeddings").iterdir()
    for fl, fr in zip(sorted(el.iterdir()), sorted(er.iterdir()), strict=True):
        pd.testing.assert_frame_equal(pd.read_parquet(fl), pd.read_parquet(fr))
    # a rerun reuses the finished shards
    again = build_streaming(tmp_path / "ray2", catalog=path, config=config, work_dir=tmp_path / "wr", batch_rows=96, engine="ray", show_progress=False)
    assert again.metrics["embedding"]["resumed"] == len(small_catalog)


# -- with sequences: counts as Ray Data jobs, fusion in the encode job ------------------------
def test_ray_build_with_sequences_equals_local(tmp_path, local_ray, behaviour_world, seq_config):
    d, _, _ = behaviour_world
    kw = dict(embeddings=d / "emb", sequences=d / "s.jsonl", config=seq_config, work_dir=tmp_path / "w", partitions=3,
              show_progress=False)
    local = build_streaming(tmp_path / "local", **kw)
    ray_ = build_streaming(tmp_path / "ray", engine="ray", ray_options={"batch_size": 100}, **kw)
    _same_export(local.export_dir, ray_.export_dir)
    # the behaviour vectors and the ridge map too, bit for bit
    assert (local.export_dir / "collab.safetensors").read_bytes() == (ray_.export_dir / "collab.safetensors").read_bytes()
    assert ray_.metrics["collab"] == local.metrics["collab"] and "collab" in ray_.metrics["stages"]
    assert not list((tmp_path / "w").glob("run-*"))  # the counts went with the run directory


def _lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_ray_counts_and_errors_are_the_local_engines(tmp_path, local_ray, caplog):
    from semantic_ids.errors import SequenceError
    from semantic_ids.model.cooccur import count_sequences
    from semantic_ids.runners.ray_behaviour import ray_count
    from semantic_ids.stages.sequences import iter_sequences, read_sequences

    n, rng = 300, np.random.default_rng(2)
    ids = np.array([f"i{i:03d}" for i in range(n)])
    users = [{"user_id": f"u{u}", "items": ids[rng.integers(0, 60 if u % 2 else n, rng.integers(2, 9))].tolist()} for u in range(600)]
    users[7]["user_id"] = 7  # an integer user id beside the string "7": different users (one hash: the driver tells)
    users[500]["user_id"] = "7"
    good = _lines(tmp_path / "good.jsonl", users)
    with caplog.at_level("INFO", logger="semantic_ids.runners.ray_behaviour"):
        counts, used = ray_count(good, ids, 5, tmp_path / "c", holdout_last=1, block_rows=64)
    assert "users with equal hashes are different ids" in caplog.text
    seqs = read_sequences(good, ids, min_length=1).items
    ref = count_sequences([s[:-1] for s in seqs], n, 5, block_rows=128)
    got, want = counts.to_csr(), ref.to_csr()
    assert np.array_equal(got.indices, want.indices) and np.array_equal(got.data, want.data)
    assert np.array_equal(counts.row_sums, ref.row_sums) and counts.nnz == ref.nnz and counts.longest == ref.longest
    assert used["users"] == 600 and used["interactions_held_out"] == 600
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [f"counts-{b:05d}.npz" for b in range(5)]

    def local_error(path):
        with pytest.raises(SequenceError) as e:
            list(iter_sequences(path, ids, min_length=1))
        return str(e.value)

    dup = _lines(tmp_path / "dup.jsonl", [*users, {"user_id": "u0", "items": ["i001", "i002"]}])  # u0: first and last span
    bad = _lines(tmp_path / "bad.jsonl", [*users[:300], {"user_id": "u1", "items": []}, {"user_id": None, "items": []},
                                          {"user_id": "x", "items": ["nope", "i001"]}, *users[300:], {"user_id": "y"}])
    for path in (dup, bad):
        with pytest.raises(SequenceError) as e:
            ray_count(path, ids, 5, tmp_path / path.stem)
        assert str(e.value) == local_error(path)
        assert not list((tmp_path / path.stem).glob("counts-*"))  # before the sum


def test_beauty_ray_with_sequences_equals_local(tmp_path, local_ray, beauty_dir, beauty_embedded):
    cfg, cat, emb = beauty_embedded
    write_embedding_shards(tmp_path / "emb", cat.ids, emb, rows_per_shard=5000)
    kw = dict(embeddings=tmp_path / "emb", sequences=beauty_dir / "sequences.jsonl", config=cfg, work_dir=tmp_path / "w",
              show_progress=False)
    local = build_streaming(tmp_path / "local", **kw)
    ray_ = build_streaming(tmp_path / "ray", engine="ray", **kw)
    _same_export(local.export_dir, ray_.export_dir)
    assert (local.export_dir / "collab.safetensors").read_bytes() == (ray_.export_dir / "collab.safetensors").read_bytes()
