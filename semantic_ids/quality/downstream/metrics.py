"""Ranking metrics with one target per user, and paired-bootstrap intervals."""

from __future__ import annotations

import numpy as np


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each user's target in its ranked list, or -1 when absent.

    Parameters
    ----------
    ranked : (U, K) int64 item rows, best first (-1 = no item).
    targets : (U,) int64 item rows.
    """
    ranked = np.asarray(ranked)
    hit = (ranked == np.asarray(targets)[:, None]) & (ranked >= 0)  # -1 pads never match
    return np.where(hit.any(1), hit.argmax(1), -1)


def drop_seen(ranked: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """(U, K) each ranked list without the items of the user's history, the rest moved up (-1 pads the end).

    Full-ranking evaluations in the field (RecBole's full sort among them) mask the items a user
    already has before taking the top k; on Amazon Beauty no test target repeats a history item,
    so a seen item in the top k only takes a slot. Apply it to every arm alike.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    out = np.full_like(ranked, -1)
    for u, (row, h) in enumerate(zip(ranked, histories)):
        keep = row[(row >= 0) & ~np.isin(row, h)]
        out[u, :len(keep)] = keep
    return out


def recall_ndcg(ranks: np.ndarray, ks=(5, 10)) -> dict[str, np.ndarray]:
    """Per-user Recall@k (hit or not) and NDCG@k = 1 / log2(rank + 2) for a hit within k."""
    ranks = np.asarray(ranks)
    out = {}
    for k in ks:
        hit = (ranks >= 0) & (ranks < k)
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a - b`` over users and its percentile bootstrap interval.

    Users are resampled with replacement, the same users for both arms (paired),
    so user-to-user variation common to the arms cancels.

    Returns
    -------
    (mean difference, low, high)
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or not len(d):
        raise ValueError(f"expected two equal-length 1-D arrays of per-user values, got shape {d.shape}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for i in range(0, n_boot, 100):  # 100 resamples at a time bounds memory at 100 x U
        idx = rng.integers(0, len(d), size=(min(100, n_boot - i), len(d)))
        means[i:i + len(idx)] = d[idx].mean(1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(d.mean()), float(lo), float(hi)


def popularity_buckets(counts: np.ndarray, n_buckets: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Each item's popularity bucket: quantiles of the training interactions, 0 = the tail.

    Items are ordered by training count; an item's bucket is ``floor(n * share)`` where
    ``share`` is the fraction of all training interactions held by items with a smaller
    count. So each bucket starts where the one below has about an n-th of the
    interactions (a few head items, many tail items), items with the same count share
    a bucket, and items never seen in training are in bucket 0.

    Parameters
    ----------
    counts : (N,) training interactions per item.

    Returns
    -------
    bucket : (N,) int64 in [0, n_buckets); lowest : (n_buckets,) the smallest count in each bucket (-1 if empty).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if n_buckets < 1 or counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"expected non-negative (N,) counts and n_buckets >= 1, got shape {counts.shape}, n_buckets={n_buckets}")
    values, inverse, per_value = np.unique(counts, return_inverse=True, return_counts=True)
    mass = values * per_value  # interactions held by the items of each distinct count
    below = np.concatenate([[0], np.cumsum(mass)[:-1]])  # interactions of items with a smaller count
    total = max(int(mass.sum()), 1)
    bucket = np.minimum(n_buckets * below // total, n_buckets - 1).astype(np.int64)[inverse]
    lowest = np.array([counts[bucket == b].min() if (bucket == b).any() else -1 for b in range(n_buckets)], dtype=np.int64)
    return bucket, lowest


def by_group(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of per-user ``values`` within each group, and the users in it ((n_groups,) each; NaN where empty)."""
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups, dtype=np.int64)
    n = np.bincount(groups, minlength=n_groups)
    s = np.bincount(groups, weights=values, minlength=n_groups)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan), n
