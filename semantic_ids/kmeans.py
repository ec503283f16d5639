"""Seeded k-means in torch, used to initialise each codebook level (TIGER, section 3.1)."""

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
    n, d = x.shape
    if n == 0:
        raise ValueError("kmeans needs at least one point")
    x = x.detach()
    if n > max_points_per_centroid * k:
        x = x[torch.randperm(n, generator=generator)[: max_points_per_centroid * k]]
        n = len(x)
    if n <= k:
        reps = x[torch.arange(k) % n].clone()
        scale = x.std().clamp_min(1e-3) * 1e-2 if n > 1 else torch.tensor(1e-2)
        noise = torch.randn(k, d, generator=generator, dtype=x.dtype) * scale
        noise[:n] = 0.0
        return reps + noise
    c = _kmeanspp(x, k, generator)
    for _ in range(iters):
        assign = nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None]
        empty = torch.nonzero(~filled).flatten()
        if len(empty):
            # Re-seed empty clusters at the points worst served by the others.
            err = (x - c[assign]).pow(2).sum(1)
            far = torch.topk(err, len(empty)).indices
            c[empty] = x[far]
    return c


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
