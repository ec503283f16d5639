"""Seeded k-means in torch: codebook initialisation (TIGER, section 3.1), the
bisecting k-means that gives the first level of the default model, and
FAISS's progressive-dimension k-means (the previous default)."""

from __future__ import annotations

import torch


def sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances, (N, D) x (K, D) -> (N, K), as ||x||² - 2x·c + ||c||²."""
    return x.pow(2).sum(1, keepdim=True) - 2.0 * (x @ c.T) + c.pow(2).sum(1)[None, :]


def nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Index of the nearest row of ``c`` for every row of ``x`` (ties: lowest index).

    Chunks of 4096 rows keep the (chunk, K) distance block in cache; on CPU
    the argmin is NumPy's, faster than torch's row-wise argmin here, with the
    same first-minimum tie rule. A row's result does not depend
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
    """Up to ``iters`` Lloyd iterations from centroids ``c`` (K, D), updated in place
    and returned; stops early once no point changes cluster (the centroids would
    not change either). Empty clusters are re-seeded at the points worst served
    by the others."""
    k = len(c)
    previous: torch.Tensor | None = None
    for _ in range(iters):
        assign = nearest(x, c)
        if previous is not None and torch.equal(assign, previous):
            break
        previous = assign
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


def bisecting_kmeans(
    x: torch.Tensor,
    k: int,
    *,
    iters: int = 25,
    split_iters: int = 100,
    generator: torch.Generator | None = None,
    max_points_per_centroid: int = 256,
) -> torch.Tensor:
    """Divisive k-means: split the largest cluster in two until there are ``k``,
    then refine all ``k`` centroids with Lloyd (at most ``iters`` iterations, to
    convergence in practice); returns (k, D) centroids.

    Each split starts from the cluster's principal direction (the two sides of
    the hyperplane through its mean, orthogonal to its first principal axis;
    Boley's PDDP, 1998) and runs 2-means to convergence (at most
    ``split_iters``). Nothing is random but the training sample when N exceeds
    ``max_points_per_centroid * k``, and the seeded noise of ``kmeans`` when
    N <= k (``generator``): in between the seed does not matter, and no random
    start amplifies last-bit changes in the embeddings.

    Why: each split follows the direction along which *that* cluster varies
    most, so clusters nest like a topic hierarchy instead of all competing in
    one flat Lloyd run from random points. ``benchmarks/first_level.py``
    compares it with progressive-dimension and plain k-means on real catalogs
    (category purity and co-interaction lift over seeds; docs/method.md).

    Points that are all identical are not split; with fewer distinct points
    than ``k``, the remaining centroids come from Lloyd's re-seeding of empty clusters.
    """
    x = _sample(x, k, max_points_per_centroid, generator)
    n, d = x.shape
    if n <= k:
        return kmeans(x, k, iters=iters, generator=generator)
    leaves = [torch.arange(n)]
    splittable = [True]
    while len(leaves) < k:
        # The largest cluster that can still be split (ties: the earliest).
        sizes = [len(leaf) if ok else -1 for leaf, ok in zip(leaves, splittable)]
        j = max(range(len(leaves)), key=sizes.__getitem__)
        if sizes[j] < 2:
            break
        halves = _split_in_two(x[leaves[j]], split_iters)
        if halves is None:
            splittable[j] = False
            continue
        leaf = leaves[j]
        leaves[j] = leaf[~halves]
        leaves.append(leaf[halves])
        splittable.append(True)
    c = torch.stack([x[leaf].mean(0) for leaf in leaves])
    if len(c) < k:  # fewer distinct points than codes: Lloyd re-seeds the rest
        c = torch.cat([c, c[:1].expand(k - len(c), d)])
    return lloyd(x, c, iters)


def _split_in_two(p: torch.Tensor, iters: int) -> torch.Tensor | None:
    """2-means of ``p`` (M, D) started from its principal direction; a boolean
    mask of the second cluster, or None if ``p`` cannot be split (all identical)."""
    pc = p - p.mean(0)
    cov = pc.T @ pc
    # First principal axis by power iteration on the D x D scatter matrix,
    # from the direction of the point farthest from the mean.
    v = pc[pc.pow(2).sum(1).argmax()]
    if not bool((v != 0).any()):
        return None
    v = v / v.norm()
    for _ in range(200):
        w = cov @ v
        norm = w.norm()
        if norm == 0:
            break
        w = w / norm
        converged = float((w - v).abs().max()) < 1e-6
        v = w
        if converged:
            break
    side = (pc @ v) > 0
    for _ in range(iters):
        if bool(side.all()) or not bool(side.any()):
            return None
        c0 = p[~side].mean(0)
        c1 = p[side].mean(0)
        # Nearer to c1 than to c0 (ties: c0), i.e. on c1's side of the bisecting hyperplane.
        new = p @ (c1 - c0) > 0.5 * (c1.dot(c1) - c0.dot(c0))
        if torch.equal(new, side):
            break
        side = new
    if bool(side.all()) or not bool(side.any()):
        return None
    return side


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
    directions in which all sentence embeddings differ. Its result moves with
    the seed and with last-bit changes in the embeddings, so
    ``bisecting_kmeans`` is the default (``benchmarks/first_level.py`` compares them).
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
