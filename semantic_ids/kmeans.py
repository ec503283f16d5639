"""Seeded k-means in torch: codebook initialisation (TIGER, section 3.1) and the
progressive-dimension k-means that gives the first level of the default model."""

from __future__ import annotations

import torch


def sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances, (N, D) x (K, D) -> (N, K), as ||x||² - 2x·c + ||c||²."""
    return x.pow(2).sum(1, keepdim=True) - 2.0 * (x @ c.T) + c.pow(2).sum(1)[None, :]


def nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Index of the nearest row of ``c`` for every row of ``x`` (ties: lowest index).

    Chunks of 4096 rows keep the (chunk, K) distance block in cache; on CPU
    the argmin is NumPy's, several times faster than torch's row-wise argmin
    here, with the same first-minimum tie rule. A row's result does not depend
    on the chunking (tested).
    """
    out = torch.empty(len(x), dtype=torch.long, device=x.device)
    cn = c.pow(2).sum(1)[None, :]
    for s in range(0, len(x), chunk):
        xb = x[s : s + chunk]
        # ||x||² is constant per row and does not change the argmin.
        d = cn - 2.0 * (xb @ c.T)
        if d.device.type == "cpu" and not d.requires_grad:
            out[s : s + chunk] = torch.from_numpy(d.numpy().argmin(1))
        else:
            out[s : s + chunk] = d.argmin(1)
    return out


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    iters: int = 25,
    generator: torch.Generator | None = None,
    max_points_per_centroid: int = 256,
) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding, on a seeded sample of at most
    ``max_points_per_centroid * k`` points (FAISS's default cap: more points
    barely move the centroids and cost time linearly).

    Parameters
    ----------
    x : (N, D) float tensor
    k : number of centroids; if N < k, centroids are the points repeated
        with a little seeded noise so that every code is distinct.

    Returns
    -------
    (k, D) centroids. Empty clusters are re-seeded from the points farthest
    from their centroid, so every centroid ends up owning points when N >= k.
    """
    x = _sample(x, k, max_points_per_centroid, generator)
    n, d = x.shape
    if n <= k:
        reps = x[torch.arange(k) % n].clone()
        scale = x.std().clamp_min(1e-3) * 1e-2 if n > 1 else torch.tensor(1e-2)
        noise = torch.randn(k, d, generator=generator, dtype=x.dtype) * scale
        noise[:n] = 0.0
        return reps + noise
    c = _kmeanspp(x, k, generator)
    return lloyd(x, c, iters)


def _sample(x: torch.Tensor, k: int, max_points_per_centroid: int, generator: torch.Generator | None) -> torch.Tensor:
    """``x`` detached, or a seeded sample of ``max_points_per_centroid * k`` of its rows."""
    if len(x) == 0:
        raise ValueError("kmeans needs at least one point")
    x = x.detach()
    if len(x) > max_points_per_centroid * k:
        x = x[torch.randperm(len(x), generator=generator)[: max_points_per_centroid * k]]
    return x


def lloyd(x: torch.Tensor, c: torch.Tensor, iters: int) -> torch.Tensor:
    """``iters`` Lloyd iterations from centroids ``c`` (K, D), updated in place and returned.
    Empty clusters are re-seeded at the points worst served by the others."""
    k = len(c)
    for _ in range(iters):
        assign = nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None]
        empty = torch.nonzero(~filled).flatten()
        if len(empty):
            err = (x - c[assign]).pow(2).sum(1)
            far = torch.topk(err, min(len(empty), len(x))).indices
            c[empty[: len(far)]] = x[far]
    return c


def progressive_kmeans(
    x: torch.Tensor,
    k: int,
    *,
    steps: int = 20,
    iters: int = 10,
    generator: torch.Generator | None = None,
    max_points_per_centroid: int = 256,
) -> torch.Tensor:
    """k-means that grows the dimension: Lloyd on the first principal components,
    then on more and more of them (d_s = D^(s/steps)), each stage starting from
    the last one's centroids padded with zeros; returns (k, D) centroids in the
    input space. FAISS's ProgressiveDimClustering recipe (random initial points,
    no k-means++).

    Why: the first stages split the catalog along its main directions of
    variation, so clusters follow broad topics rather than the many small
    directions in which all sentence embeddings differ. On Amazon Beauty's
    MiniLM embeddings its 256 clusters reach category purity 0.563-0.572 and
    co-interaction lift 22.6-23.1 (seeds 0-2), against 0.537-0.550 and 18.7-19.9
    for plain k-means (benchmarks/first_level.py; README, "The method").
    """
    x = _sample(x, k, max_points_per_centroid, generator)
    n, d = x.shape
    if n <= k:
        return kmeans(x, k, iters=iters, generator=generator)
    mean = x.mean(0)
    xc = x - mean
    # Principal axes from the D x D covariance, largest variance first.
    _, vecs = torch.linalg.eigh(xc.T @ xc / n)
    basis = vecs.flip(1)  # (D, D)
    p = xc @ basis
    c: torch.Tensor | None = None
    for s in range(steps):
        di = max(1, int(d ** ((s + 1) / steps)))
        if s == steps - 1:
            di = d
        sub = p[:, :di].contiguous()
        if c is None:
            c = sub[torch.randperm(n, generator=generator)[:k]].clone()
        elif c.shape[1] < di:
            c = torch.cat([c, c.new_zeros(k, di - c.shape[1])], 1)
        c = lloyd(sub, c, iters)
    assert c is not None
    return c @ basis.T + mean


def _kmeanspp(x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k-means++ seeding (greedy-free variant) on at most 64 points per centroid for speed."""
    n = len(x)
    cap = 64 * k
    if n > cap:
        x = x[torch.randperm(n, generator=generator)[:cap]]
        n = len(x)
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [x[first]]
    d2 = (x - x[first]).pow(2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            idx = int(torch.randint(n, (1,), generator=generator))
        else:
            idx = int(torch.multinomial(d2 / total, 1, generator=generator))
        centers.append(x[idx])
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(1))
    return torch.stack(centers).clone()
