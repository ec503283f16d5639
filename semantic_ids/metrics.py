"""Metrics of a set of codes: usage, perplexity, collisions.

Definitions (shared with ``semantic-ids evaluate`` so numbers compare across tools):
collision rate over the first n levels = 1 − distinct n-code tuples / items;
perplexity of a level = exp(entropy of its code distribution).
"""

from __future__ import annotations

import numpy as np

from .keys import row_keys


def group_sizes(codes: np.ndarray) -> np.ndarray:
    """Sizes of the groups of items that share every code, (N, L) -> (G,)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, counts = np.unique(row_keys(codes), return_counts=True)
    return counts


def collision_rate(codes: np.ndarray) -> float:
    """1 − distinct code tuples / items, for codes (N, L)."""
    n = len(codes)
    return 0.0 if n == 0 else 1.0 - len(group_sizes(codes)) / n


def perplexity(level_codes: np.ndarray, k: int) -> float:
    """exp(entropy) of one level's code distribution; k for a uniform one."""
    return perplexity_of_counts(np.bincount(level_codes, minlength=k))


def perplexity_of_counts(counts: np.ndarray) -> float:
    """exp(entropy) of a distribution given as item counts per code."""
    p = np.asarray(counts) / max(int(np.sum(counts)), 1)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def code_stats(codes: np.ndarray, codebook_sizes: tuple[int, ...]) -> dict:
    """Per-level usage and perplexity, collision rate and largest collision group."""
    sizes = group_sizes(codes)
    return {
        "n_items": int(len(codes)),
        "codes_used": [int(len(np.unique(codes[:, i]))) for i in range(codes.shape[1])],
        "codebook_sizes": [int(k) for k in codebook_sizes],
        "perplexity": [perplexity(codes[:, i], k) for i, k in enumerate(codebook_sizes)],
        "collision_rate": collision_rate(codes),
        "n_collided_items": int(sizes[sizes > 1].sum()) if len(sizes) else 0,
        "largest_group": int(sizes.max()) if len(sizes) else 0,
        "collision_rate_by_depth": [collision_rate(codes[:, : d + 1]) for d in range(codes.shape[1])],
    }
