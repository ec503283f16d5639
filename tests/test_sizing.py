"""Codebook sizes from the catalog size (semantic_ids.model.sizing) and the sparse-prefix warning."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from semantic_ids import BuildConfig, SemanticIDs
from semantic_ids.model.sizing import ITEMS_PER_CODE, auto_codebook_sizes, sized_config, warn_if_sparse

from .conftest import clustered_embeddings


@pytest.mark.parametrize("n", [1, 2, 3, 39, 40, 50, 100, 399, 400, 1000, 1682, 3000, 5119, 5120, 12_101, 10**7])
def test_rule_invariants(n):
    sizes = auto_codebook_sizes(n)
    assert len(sizes) == 3 and all(2 <= k <= 256 and k & (k - 1) == 0 for k in sizes)
    assert sizes[0] <= max(n / ITEMS_PER_CODE, 2)  # at least 20 items per level-1 code where possible
    assert sizes[0] * sizes[1] * sizes[2] >= min(n, 256**3)  # room for every item before the collision level
    assert all(k >= sizes[0] for k in sizes[1:])


def test_rule_values_and_previous_default_from_5120_items():
    assert auto_codebook_sizes(400) == (16, 16, 16)
    assert auto_codebook_sizes(1682) == (64, 64, 64)  # MovieLens-100K
    assert auto_codebook_sizes(5119) == (128, 128, 128)
    for n in (5120, 12_101, 10**6):  # Amazon Beauty and larger keep TIGER's 3 x 256
        assert auto_codebook_sizes(n) == (256, 256, 256)
    sizes = [auto_codebook_sizes(n)[0] for n in range(1, 6000, 7)]
    assert sizes == sorted(sizes)  # never fewer codes for more items


def test_explicit_sizes_are_kept_and_sparse_ones_warn(caplog):
    cfg = BuildConfig().replace(model={"codebook_sizes": [256, 256, 256]})
    with caplog.at_level(logging.WARNING, logger="semantic_ids.model.sizing"):
        assert sized_config(cfg, 400) is cfg
    assert "400 items for 256 level-1 codes is 1.6 items per code" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="semantic_ids.model.sizing"):
        auto = sized_config(BuildConfig(), 400)
    assert auto.model.codebook_sizes == (16, 16, 16) and not caplog.text
    assert not warn_if_sparse(20 * 16, (16,)) and warn_if_sparse(20 * 16 - 1, (16,))


def test_default_build_of_400_items_gets_meaningful_prefixes(tmp_path):
    """Issue 16's bar: >= 10 items per level-1 code on average, the sizes saved explicitly."""
    n = 400
    df = pd.DataFrame({"item_id": [f"p{i}" for i in range(n)], "title": [f"product {i}" for i in range(n)]})
    cfg = BuildConfig().replace(train={"epochs": 4}, embedding={"use_cache": False})
    sid = SemanticIDs(cfg, show_progress=False).fit(clustered_embeddings(n, clusters=10), ids=df["item_id"].to_numpy())
    assert sid.config_.model.codebook_sizes == (16, 16, 16)
    assert cfg.model.codebook_sizes is None  # the user's config is not changed
    assert n / len(np.unique(sid.codes_[:, 0])) >= 10
    out = sid.save(tmp_path / "e")
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["model"]["codebook_sizes"] == [16, 16, 16]
    assert "codebook_sizes" not in info  # one stored copy: the config's
    again = SemanticIDs.load(out)
    assert np.array_equal(again.codes_, sid.codes_)


@pytest.mark.slow
def test_cli_build_shows_the_warning(tmp_path):
    n = 60
    (tmp_path / "c.csv").write_text("item_id,title\n" + "".join(f"i{i},t {i}\n" for i in range(n)))
    np.save(tmp_path / "e.npy", clustered_embeddings(n, dim=16))
    (tmp_path / "big.toml").write_text("[model]\ncodebook_sizes = [32, 8]\nhidden_dims = [16]\n[train]\nepochs = 2\n")
    # a real process: under pytest the root logger already has pytest's handler
    proc = subprocess.run(
        [sys.executable, "-m", "semantic_ids", "build", "--catalog", str(tmp_path / "c.csv"), "--embeddings",
         str(tmp_path / "e.npy"), "--out", str(tmp_path / "out"), "--config", str(tmp_path / "big.toml"), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "60 items for 32 level-1 codes is 1.9 items per code" in proc.stderr


def test_one_rule_decides_the_sizes_and_old_exports_with_two_copies_still_read():
    from semantic_ids.config import ModelConfig
    from semantic_ids.model.sizing import choose_codebook_sizes, codebook_sizes_of

    unset, prev = ModelConfig(), ModelConfig(codebook_sizes=(8, 4))
    assert choose_codebook_sizes(ModelConfig(codebook_sizes=(32, 32)), 10, previous=prev) == (32, 32)  # the user's
    assert choose_codebook_sizes(unset, 10_000, previous=prev) == (8, 4)  # a warm start keeps the previous
    assert choose_codebook_sizes(unset, 400) == (16, 16, 16) and choose_codebook_sizes(unset) is None
    assert codebook_sizes_of({"config": {"model": {"codebook_sizes": [8, 4]}}}) == (8, 4)
    old = {"codebook_sizes": [8, 4], "config": {"model": {"codebook_sizes": [8, 4]}}}  # stored twice
    assert codebook_sizes_of(old) == (8, 4) and codebook_sizes_of({"codebook_sizes": [2, 2]}) == (2, 2)
