"""Metrics of a set of codes: usage, perplexity, collisions.

Definitions (shared with ``semantic-ids evaluate`` so numbers compare across tools):
collision rate over the first n levels = 1 − distinct n-code tuples / items;
perplexity of a level = exp(entropy of its code distribution).
"""

from __future__ import annotations

import numpy as np

from ..model.keys import row_keys


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
    """Per-level usage and perplexity, collision rates by depth, collided items and group sizes."""
    sizes, counts = np.unique(group_sizes(codes), return_counts=True)
    return code_stats_of_counts(
        n_items=len(codes),
        usage=[np.bincount(codes[:, i], minlength=k) for i, k in enumerate(codebook_sizes)],
        distinct_by_depth=[len(group_sizes(codes[:, : d + 1])) for d in range(codes.shape[1])],
        group_size_counts=dict(zip(sizes.tolist(), counts.tolist())),
        codebook_sizes=codebook_sizes,
    )


def code_stats_of_counts(
    *, n_items: int, usage: list[np.ndarray], distinct_by_depth: list[int], group_size_counts: dict[int, int], codebook_sizes
) -> dict:
    """:func:`code_stats` from counts: per level the items per code, the distinct
    prefixes at each depth, and how many groups of items sharing every code have
    each size. The streaming build counts these on disk."""
    n = max(int(n_items), 1)
    groups = {int(s): int(c) for s, c in sorted(group_size_counts.items())}
    return {
        "n_items": int(n_items),
        "codes_used": [int((np.asarray(u) > 0).sum()) for u in usage],
        "codebook_sizes": [int(k) for k in codebook_sizes],
        "perplexity": [perplexity_of_counts(u) for u in usage],
        "collision_rate": 0.0 if n_items == 0 else 1.0 - distinct_by_depth[-1] / n,
        "n_collided_items": sum(s * c for s, c in groups.items() if s > 1),
        "largest_group": max(groups, default=0),
        "collision_rate_by_depth": [0.0 if n_items == 0 else 1.0 - d / n for d in distinct_by_depth],
        "collision_group_sizes": {str(s): c for s, c in groups.items()},
    }


def usage_text(codes_used, codebook_sizes) -> str:
    """Per-level code usage for people: "all used (64, 64, 64)" or, when some level
    leaves codes unused, "level 1: 60 of 64, level 2: 64 of 64, ..."."""
    used, sizes = [int(u) for u in codes_used], [int(k) for k in codebook_sizes]
    if used == sizes:
        return f"all used ({', '.join(map(str, sizes))})"
    return ", ".join(f"level {i}: {u} of {k}" for i, (u, k) in enumerate(zip(used, sizes), 1))


def build_metrics(
    *,
    mode: str,
    codebook_sizes,
    embedding: dict,
    reconstruction: tuple[float, int],
    training: dict,
    stages: dict,
    total_seconds: float,
    raw_codes: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    code_stats_before: dict | None = None,
    collision_level_size: int | None = None,
    build: dict | None = None,
    collab: dict | None = None,
    warm_start: dict | None = None,
) -> dict:
    """``metrics.json``: one schema for every runner.

    In memory, pass the exported codes before (``raw_codes``, (N, L)) and after
    (``codes``, (N, L + 1)) resolution; the streaming build passes the code
    statistics it counted on disk (``code_stats_before``) and the collision
    level's size. Facts a runner cannot know are None (the streaming build does
    not count empty texts); ``collab`` and ``warm_start`` appear only in builds
    that used them. ``reconstruction`` is (mean squared error, items it was measured on).
    """
    from ..version import __version__

    if code_stats_before is None:
        code_stats_before = code_stats(raw_codes, codebook_sizes)
    n = code_stats_before["n_items"]
    if codes is not None:
        moved = int((codes[:, :-1] != raw_codes).any(axis=1).sum())
        after = code_stats_before["collision_rate"] if moved == 0 else code_stats(codes[:, :-1], codebook_sizes)["collision_rate"]
        unique = bool(len(group_sizes(codes)) == len(codes))
        level_size = int(codes[:, -1].max()) + 1 if len(codes) else 0
    else:  # the counter level, resolved on disk: no rebalancing; unique by construction
        after, moved, unique, level_size = code_stats_before["collision_rate"], 0, True, int(collision_level_size or 0)
    return {
        "library_version": __version__,
        "build": {"mode": mode, **(build or {})},
        "n_items": int(n),
        "n_empty_text": None,
        "text_columns": None,
        "embedding": embedding,
        **({"collab": collab} if collab else {}),
        "reconstruction_mse": float(reconstruction[0]),
        "reconstruction_sample": int(reconstruction[1]),
        **code_stats_before,
        "collision_rate_before_resolution": code_stats_before["collision_rate"],
        "collision_rate_after_rebalancing": after,
        "items_moved_by_rebalancing": moved,
        "unique_after_resolution": unique,
        "collision_level_size": level_size,
        "stages": stages,
        "total_seconds": total_seconds,
        "training": training,
        **({"warm_start": warm_start} if warm_start else {}),
    }
