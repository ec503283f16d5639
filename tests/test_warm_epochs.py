"""A warm-started rebuild trains at most ``train.warm_epochs`` epochs; a fresh build ``train.epochs``."""

from __future__ import annotations

import pytest

from semantic_ids.config import BuildConfig
from semantic_ids.stages.train import train_rqvae

from .conftest import clustered_embeddings


@pytest.fixture(scope="module")
def previous():
    emb = clustered_embeddings(300, dim=16)
    cfg = BuildConfig().replace(model={"codebook_sizes": [8, 8, 8], "latent_dim": 4, "hidden_dims": [16]},
                                train={"epochs": 2, "batch_size": 64, "checkpoint_every": 0})
    return emb, cfg, train_rqvae(emb, cfg.model, cfg.train, show_progress=False).model


@pytest.mark.parametrize(("epochs", "warm_epochs", "trained"), [(5, 3, 3), (5, None, 5), (2, 3, 2), (0, 3, 0)])
def test_warm_epochs_caps_a_warm_start(previous, epochs, warm_epochs, trained):
    emb, cfg, model = previous
    train = cfg.train.__class__(**{**cfg.train.to_dict(), "epochs": epochs, "warm_epochs": warm_epochs})
    warm = train_rqvae(emb, cfg.model, train, init_from=model, show_progress=False)
    assert len(warm.history) == trained
    fresh = train_rqvae(emb, cfg.model, train, show_progress=False)
    assert len(fresh.history) == epochs


def test_the_default_warm_rebuild_is_shorter_than_a_fresh_build():
    train = BuildConfig().train
    assert train.warm_epochs is not None and train.warm_epochs < train.epochs
