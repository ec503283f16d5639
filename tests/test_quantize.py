import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semantic_ids.model.kmeans import kmeans, nearest, sq_dists
from semantic_ids.model.quantize import ResidualQuantizer


def test_sq_dists_matches_cdist():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(50, 7, generator=g), torch.randn(9, 7, generator=g)
    assert torch.allclose(sq_dists(x, c), torch.cdist(x, c).pow(2), atol=1e-4)


def test_nearest_matches_brute_force_and_is_chunk_independent():
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(1000, 5, generator=g), torch.randn(32, 5, generator=g)
    ref = torch.cdist(x, c).argmin(1)
    assert torch.equal(nearest(x, c), ref)
    assert torch.equal(nearest(x, c, chunk=7), ref)


def test_nearest_ties_pick_lowest_index():
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert nearest(torch.tensor([[1.0, 0.0]]), c).item() == 0


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = (centres[:, None, :] + 0.1 * torch.randn(4, 50, 2, generator=g)).reshape(-1, 2)
    c = kmeans(x, 4, generator=torch.Generator().manual_seed(0))
    # every true centre has a centroid within 0.2
    assert (torch.cdist(centres, c).min(1).values < 0.2).all()


def test_kmeans_every_centroid_owns_points():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    c = kmeans(x, 64, generator=torch.Generator().manual_seed(0))
    assert len(torch.unique(nearest(x, c))) == 64


def test_kmeans_fewer_points_than_codes_gives_distinct_centroids():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    c = kmeans(x, 8, generator=torch.Generator().manual_seed(0))
    assert c.shape == (8, 4)
    assert len(torch.unique(c, dim=0)) == 8


def test_kmeans_is_seeded():
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    a = kmeans(x, 10, generator=torch.Generator().manual_seed(5))
    b = kmeans(x, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_quantizer_encode_decode_round_trip():
    rq = ResidualQuantizer(dim=6, codebook_sizes=(8, 4, 5))
    codes = torch.stack([torch.randint(0, k, (100,), generator=torch.Generator().manual_seed(i)) for i, k in enumerate((8, 4, 5))], 1)
    # Codes -> vectors -> codes: the sum of code vectors must encode back to itself
    # when the codebooks are well separated per level.
    with torch.no_grad():
        rq.codebooks[0].copy_(torch.randn(8, 6, generator=torch.Generator().manual_seed(0)) * 100)
        rq.codebooks[1].copy_(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)) * 10)
        rq.codebooks[2].copy_(torch.randn(5, 6, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(rq.encode(rq.decode(codes)), codes)


def test_quantizer_forward_matches_encode_and_straight_through():
    rq = ResidualQuantizer(dim=4, codebook_sizes=(8, 8))
    z = torch.randn(32, 4, requires_grad=True)
    q, codes, loss = rq(z)
    assert torch.equal(codes, rq.encode(z.detach()))
    assert torch.allclose(q, rq.decode(codes), atol=1e-6)
    q.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # identity gradient through the quantizer
    assert loss.item() > 0


def test_forward_with_fewer_levels():
    """``levels=2`` quantizes with the first two levels alone: their codes are the full
    encoding's first two columns, and the output is those two codewords' sum."""
    rq = ResidualQuantizer(dim=4, codebook_sizes=(8, 8, 8))
    for level in range(3):
        rq.codebooks[level].data.normal_(generator=torch.Generator().manual_seed(level))
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(3))
    q2, codes, _ = rq(z, levels=2)
    assert codes.shape == (10, 2)
    assert torch.equal(codes, rq.encode(z)[:, :2])
    assert torch.allclose(q2, rq.decode(codes), atol=1e-6)
    q3, _, _ = rq(z)
    assert not torch.allclose(q2, q3)  # the third level adds its codeword


def test_kmeans_init_sets_level_and_flag():
    rq = ResidualQuantizer(dim=3, codebook_sizes=(4, 4))
    z = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
    rq.kmeans_init(z, 0, generator=torch.Generator().manual_seed(0))
    assert bool(rq.initialized[0]) and not bool(rq.initialized[1])
    assert len(torch.unique(rq.encode(z)[:, 0])) == 4


def test_dead_code_restart_revives_unused_codes():
    rq = ResidualQuantizer(dim=2, codebook_sizes=(4,))
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rq.codebooks[0].copy_(torch.tensor([[0.0, 0.0], [1e3, 1e3], [-1e3, 1e3], [1e3, -1e3]]))
    rq.train()
    rq(z)  # only code 0 is used
    assert rq.usage[0].tolist()[1:] == [0, 0, 0]
    restarted = rq.restart_dead_codes(z, generator=torch.Generator().manual_seed(0))
    assert restarted == [3]
    assert (rq.usage == 0).all()
    assert len(torch.unique(rq.encode(z)[:, 0])) > 1


def test_state_dict_round_trip_keeps_buffers():
    rq = ResidualQuantizer(dim=3, codebook_sizes=(4, 4))
    rq.kmeans_init(torch.randn(50, 3), 0)
    rq2 = ResidualQuantizer(dim=3, codebook_sizes=(4, 4))
    rq2.load_state_dict(rq.state_dict())
    assert torch.equal(rq2.initialized, rq.initialized)
    z = torch.randn(20, 3)
    assert torch.equal(rq2.encode(z), rq.encode(z))


def test_codes_are_batch_size_independent():
    rq = ResidualQuantizer(dim=5, codebook_sizes=(16, 16))
    rq.kmeans_init(torch.randn(300, 5), 0)
    rq.kmeans_init(torch.randn(300, 5), 1)
    z = torch.randn(257, 5, generator=torch.Generator().manual_seed(3))
    full = rq.encode(z)
    parts = torch.cat([rq.encode(z[i : i + 10]) for i in range(0, len(z), 10)])
    assert torch.equal(full, parts)
    assert np.array_equal(full.numpy(), parts.numpy())


def test_restart_unused_leaves_every_code_used():
    torch.manual_seed(0)
    rq = ResidualQuantizer(dim=4, codebook_sizes=(8, 8))
    z = torch.randn(200, 4)
    with torch.no_grad():
        rq.codebooks[0].data[:] = 100.0  # every level-1 code far away: one wins, the rest are unused
        rq.codebooks[0].data[0] = 0.0
    restarted = rq.restart_unused(z, generator=torch.Generator().manual_seed(0))
    assert restarted[0] >= 7
    codes = rq.encode(z)
    for lvl in range(2):
        assert len(torch.unique(codes[:, lvl])) == 8
    assert int(rq.usage.sum()) == 0  # counters cleared for the next training epoch


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "layer-norm"])
def test_level_distances_are_what_the_level_chooses_by(layer_norm):
    g = torch.Generator().manual_seed(0)
    rq = ResidualQuantizer(dim=6, codebook_sizes=(8, 5), layer_norm=layer_norm)
    z = torch.randn(200, 6, generator=g)
    codes = rq.encode(z)
    for level, k in enumerate(rq.codebook_sizes):
        r = rq.residuals(z, level)
        d = rq.level_distances(r, level)
        assert d.shape == (200, k)
        cb = rq.codebooks[level].detach()
        a, b = (F.layer_norm(r, (6,)), F.layer_norm(cb, (6,))) if layer_norm else (r, cb)
        brute = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # (B, K), no shortcut formula
        assert torch.allclose(d, brute, atol=1e-4)
        assert not layer_norm or not torch.allclose(d, ((r[:, None] - cb[None]) ** 2).sum(-1), atol=1e-2)
        # the row minimum is the code the level gives (the quantizer's own rule)
        assert torch.equal(d.argmin(1), rq.level_codes(r, level))
        assert torch.equal(rq.level_codes(r, level), codes[:, level])
