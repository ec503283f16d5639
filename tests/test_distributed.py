"""The Ray Data engine on a local Ray instance gives exactly the local engine's IDs."""

from __future__ import annotations

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
