"""The k-means first level: bisecting and progressive-dimension k-means, and the hybrid RQ-VAE around it."""

import numpy as np
import pytest
import torch

from semantic_ids.config import ModelConfig, TrainConfig
from semantic_ids.quality.evaluate import purity
from semantic_ids.model.kmeans import bisecting_kmeans, lloyd, nearest, progressive_kmeans
from semantic_ids.model.rqvae import RQVAE
from semantic_ids.stages.encode import encode_all
from semantic_ids.stages.train import train_rqvae

from .conftest import clustered_embeddings

MODEL = ModelConfig(codebook_sizes=(16, 16, 16), latent_dim=4, hidden_dims=(64, 32))


def labelled_clusters(n=2000, clusters=16, dim=32, seed=0):
    """Points around ``clusters`` well-separated centres along a few main directions,
    plus isotropic noise in every dimension; returns (x, true cluster of each point)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, 4)) * 3.0 @ rng.normal(size=(4, dim))
    label = rng.integers(0, clusters, n)
    x = centres[label] + rng.normal(size=(n, dim)) * 0.5
    return torch.from_numpy(x.astype(np.float32)), label


def test_progressive_kmeans_finds_the_clusters_and_is_seeded():
    x, label = labelled_clusters(clusters=6)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    c = progressive_kmeans(x, 16, generator=g(0))
    assert c.shape == (16, x.shape[1])
    assigned = nearest(x, c).numpy()
    assert purity(assigned, label) > 0.99  # 16 centroids never straddle two of the 6 clusters
    assert len(np.unique(assigned)) == 16  # every centroid owns points
    assert torch.equal(c, progressive_kmeans(x, 16, generator=g(0)))
    assert not torch.equal(c, progressive_kmeans(x, 16, generator=g(1)))


def test_progressive_kmeans_fewer_points_than_centroids():
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    c = progressive_kmeans(x, 16, generator=torch.Generator().manual_seed(0))
    assert c.shape == (16, 8) and len(torch.unique(c, dim=0)) == 16
    with pytest.raises(ValueError, match="at least one point"):
        progressive_kmeans(x[:0], 4)


def test_bisecting_kmeans_finds_the_clusters_and_ignores_the_seed():
    x, label = labelled_clusters(clusters=6)
    c = bisecting_kmeans(x, 16, generator=torch.Generator().manual_seed(0))
    assert c.shape == (16, x.shape[1])
    assigned = nearest(x, c).numpy()
    assert purity(assigned, label) > 0.99
    assert len(np.unique(assigned)) == 16
    # Nothing random unless the points are sampled: any seed, or none, gives the same centroids.
    assert torch.equal(c, bisecting_kmeans(x, 16, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(c, bisecting_kmeans(x, 16))


def test_bisecting_kmeans_is_a_lloyd_fixed_point():
    """The refinement runs to convergence: one more Lloyd iteration moves no point."""
    x, _ = labelled_clusters(n=1500, clusters=10, seed=3)
    c = bisecting_kmeans(x, 24)
    before = nearest(x, c)
    assert torch.equal(nearest(x, lloyd(x, c.clone(), 1)), before)


def test_bisecting_kmeans_beats_random_start_lloyd_on_nested_topics():
    """Two-level topics (4 broad groups of 6 sub-topics each, 100-200 points per
    sub-topic): splitting the largest cluster recovers every sub-topic, where Lloyd
    from random points merges some and splits others (purity 0.87-0.89 here)."""
    rng = np.random.default_rng(0)
    dim, subs = 24, []
    for _ in range(4):
        centre = rng.normal(size=dim) * 6.0
        for _ in range(6):
            subs.append(centre + rng.normal(size=dim) * 1.5)
    sizes = rng.integers(100, 200, len(subs))
    label = np.repeat(np.arange(len(subs)), sizes)
    x = torch.from_numpy((np.asarray(subs)[label] + rng.normal(size=(len(label), dim)) * 0.4).astype(np.float32))
    ours = purity(nearest(x, bisecting_kmeans(x, 24)).numpy(), label)
    plain = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        start = x[torch.randperm(len(x), generator=g)[:24]].clone()
        plain.append(purity(nearest(x, lloyd(x, start, 25)).numpy(), label))
    assert ours > 0.99 and ours > max(plain) + 0.05


def test_bisecting_kmeans_duplicates_and_few_points():
    # 40 points but only 3 distinct: identical points are never split, every centroid is finite.
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]).repeat(14, 1)[:40]
    c = bisecting_kmeans(x, 8)
    assert c.shape == (8, 2) and torch.isfinite(c).all()
    assert len(np.unique(nearest(x, c).numpy())) == 3
    few = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    c = bisecting_kmeans(few, 16, generator=torch.Generator().manual_seed(0))
    assert c.shape == (16, 8) and len(torch.unique(c, dim=0)) == 16
    with pytest.raises(ValueError, match="at least one point"):
        bisecting_kmeans(few[:0], 4)


@pytest.fixture(scope="module")
def trained():
    x = clustered_embeddings(800, dim=32, clusters=30)
    res = train_rqvae(x, MODEL, TrainConfig(epochs=8, batch_size=128, restart_every=3), seed=0, show_progress=False)
    return torch.from_numpy(x), res.model


def test_first_level_is_the_nearest_centroid(trained):
    x, model = trained
    assert model.kmeans_first and model.quantizer.n_levels == 2 and model.n_levels == 3
    codes = encode_all(model, x)
    assert codes.shape == (len(x), 3)
    assert torch.equal(codes[:, 0], nearest(x, model.first_codebook))
    r = x - model.first_codebook[codes[:, 0]]
    assert float(model.residual_scale) == pytest.approx(float(r.pow(2).sum(1).mean().sqrt()), rel=1e-4)


def test_tiny_input_values_are_flushed_without_changing_codes(trained):
    """Values near 1e-38 (as sentence embeddings hold, and residuals from centroids that
    average them) would become subnormal in the encoder's matmuls and slow training
    several-fold; the encoder input zeroes them, so the codes are those of zeros there."""
    import copy

    from semantic_ids.model.rqvae import _flush_tiny

    r = _flush_tiny(torch.tensor([5e-38, -3e-25, 1e-20, -2e-12, 0.5, 0.0]))
    assert r.tolist() == [0.0, 0.0, pytest.approx(1e-20), pytest.approx(-2e-12), 0.5, 0.0]
    _, model = trained
    model = copy.deepcopy(model)
    model.first_codebook[:, 3] = 0.0
    xs = model.first_codebook.clone() + 0.01  # each row nearest its own centroid
    xs[:, 3] = 5e-38  # a residual of 5e-38 in dimension 3
    first = model.first_codes(xs)
    assert torch.equal(first, torch.arange(len(xs)))
    assert bool((model.encoder_input(xs)[:, 3] == 0).all())
    zeroed = xs.clone()
    zeroed[:, 3] = 0.0
    assert torch.equal(encode_all(model, xs), encode_all(model, zeroed))


def test_decode_adds_the_centroid_to_the_decoded_residual(trained):
    x, model = trained
    codes = encode_all(model, x)
    xh = model.decode_codes(codes)
    # reconstruction beats the centroid alone (the learned levels add detail)
    centroid_only = (x - model.first_codebook[codes[:, 0]]).pow(2).sum(1).mean()
    assert float((x - xh).pow(2).sum(1).mean()) < float(centroid_only)


def test_code_space_distance_is_centroid_plus_weighted_latent(trained):
    x, model = trained
    codes = encode_all(model, x)[:50]
    books = model.code_books()
    assert [b.shape for b in books] == [(16, 32 + 4), (16, 32 + 4), (16, 32 + 4)]
    vec = sum(books[lvl][codes[:, lvl]] for lvl in range(3))
    _, q = model.encode_query(x[:50])
    d = (q - vec).pow(2).sum(1)
    z = model.latent(x[:50])
    qz = model.quantizer.decode(codes[:, 1:])
    w = model.latent_weight
    expected = (x[:50] - model.first_codebook[codes[:, 0]]).pow(2).sum(1) + w**2 * (z - qz).pow(2).sum(1)
    assert torch.allclose(d, expected, rtol=1e-4, atol=1e-5)
    assert float(w) > 0


def test_latent_model_has_no_first_level_buffers():
    m = RQVAE(input_dim=32, config=ModelConfig(codebook_sizes=(8, 8), latent_dim=4, hidden_dims=(16,), first_level="latent"))
    assert not m.kmeans_first and m.quantizer.n_levels == 2
    assert "first_codebook" not in m.state_dict()
    assert [b.shape for b in m.code_books()] == [(8, 4), (8, 4)]
