"""A build's IDs do not depend on the thread count of the process that runs it.

Training's weight gradients are matrix products whose sums over the batch the
BLAS splits by thread: without a fixed training thread count (``train.threads``)
the builds below, on 1 and on 2 process threads, give different level-2 codes.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits

from semantic_ids import BuildConfig, build
from semantic_ids.stages.shards import write_embedding_shards

from .conftest import clustered_embeddings

# the smallest build seen to differ between 1 and 2 threads without the fix: a full
# batch of 1024 rows and a 128-d input (smaller ones happen not to differ)
N, DIM = 2100, 128


def config(**model) -> BuildConfig:
    return BuildConfig().replace(train={"epochs": 1, "checkpoint_every": 0}, model=model, seed=1,
                                 embedding={"use_cache": False})


def codes_with(threads: int, tmp_path, *, streaming: bool, cfg: BuildConfig, n: int = N, dim: int = DIM) -> pd.DataFrame:
    """The export's codes, built with ``threads`` process threads (torch, OpenMP and BLAS)."""
    emb = clustered_embeddings(n, dim=dim, seed=3)
    ids = np.arange(n)
    out = tmp_path / f"out-{threads}-{streaming}"
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            if streaming:
                shards = tmp_path / f"shards-{threads}"
                write_embedding_shards(shards, ids, emb)
                build(out, embeddings=shards, config=cfg, streaming=True, work_dir=tmp_path / f"work-{threads}",
                      show_progress=False)
            else:
                build(out, catalog=pd.DataFrame({"item_id": ids, "title": ids.astype(str)}), embeddings=emb,
                      config=cfg, show_progress=False)
        assert torch.get_num_threads() == threads, "the build should restore the caller's thread count"
    finally:
        torch.set_num_threads(before)
    table = pd.read_parquet(out / "semantic_ids.parquet")
    assert json.loads((out / "config.json").read_text())["config"]["train"]["threads"] == cfg.train.threads
    return table.sort_values("item_id").reset_index(drop=True)


@pytest.mark.parametrize("streaming", [False, True], ids=["memory", "streaming"])
def test_ids_do_not_depend_on_process_threads(tmp_path, streaming):
    cfg = config()
    one = codes_with(1, tmp_path, streaming=streaming, cfg=cfg)
    two = codes_with(2, tmp_path, streaming=streaming, cfg=cfg)
    levels = [c for c in one.columns if c.startswith("level_")]
    assert len(levels) >= 3 and len(one) == N
    for c in levels:
        changed = int((one[c] != two[c]).sum())
        assert changed == 0, f"{c}: {changed} of {N} items got another code on 2 threads than on 1"


def test_rq_kmeans_ids_do_not_depend_on_process_threads(tmp_path):
    """FAISS's residual k-means (its own OpenMP and BLAS) follows the build's thread count too
    (this size differs between 1 and 2 threads without it)."""
    cfg = config(method="rq-kmeans", codebook_sizes=[64, 64])
    one = codes_with(1, tmp_path, streaming=False, cfg=cfg, n=5000, dim=384)
    two = codes_with(2, tmp_path, streaming=False, cfg=cfg, n=5000, dim=384)
    pd.testing.assert_frame_equal(one, two)


def test_threads_is_checked():
    from semantic_ids import ConfigError

    with pytest.raises(ConfigError, match=r"train\.threads=-1"):
        BuildConfig().replace(train={"threads": -1})
