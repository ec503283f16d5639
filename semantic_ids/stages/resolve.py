"""Collision resolution: make every item's semantic ID unique.

Default strategy ("counter", as TIGER does): append one level that numbers the
items sharing the same codes, 0, 1, 2, ..., in ascending item-id order, so a
rerun (or a different input order) gives the same IDs. Strategy "balanced"
first moves colliding items to free last-level codes (LC-Rec's balanced
last-level assignment), then numbers whatever still collides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.keys import row_keys


@dataclass(frozen=True)
class Resolution:
    """Result of collision resolution.

    Attributes
    ----------
    codes : (N, L + 1) int64, the model's codes plus the collision level.
    n_collided_items : items in a group of two or more.
    largest_group : size of the largest group (1 when nothing collided).
    """

    codes: np.ndarray
    n_collided_items: int
    largest_group: int


def id_order(ids: np.ndarray) -> np.ndarray:
    """Rank of each id in ascending order (ids are unique)."""
    order = pd.Index(ids).argsort()
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return rank


def number_groups(new_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted so that equal code tuples are adjacent, with ``new_group``
    (N,) bool marking each group's first row: each row's number within its
    group (0, 1, 2, ...) and the group sizes (G,)."""
    n = len(new_group)
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, n))
    return np.arange(n) - np.repeat(starts, sizes), sizes


def resolve_counter(codes: np.ndarray, ids: np.ndarray) -> Resolution:
    """Append a level numbering items that share all codes, in item-id order.

    Parameters
    ----------
    codes : (N, L) integer codes.
    ids : (N,) unique item ids (ints or strings).
    """
    codes = np.asarray(codes, dtype=np.int64)
    n = len(codes)
    if n == 0:
        return Resolution(np.zeros((0, codes.shape[1] + 1), dtype=np.int64), 0, 0)
    rank = id_order(ids)
    # Sort by codes (level 0 most significant), then by id rank.
    keys = [rank] + [codes[:, i] for i in range(codes.shape[1] - 1, -1, -1)]
    order = np.lexsort(keys)
    sorted_codes = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)
    counter_sorted, sizes = number_groups(new_group)
    counter = np.empty(n, dtype=np.int64)
    counter[order] = counter_sorted
    return Resolution(
        codes=np.column_stack([codes, counter]),
        n_collided_items=int(sizes[sizes > 1].sum()),
        largest_group=int(sizes.max()),
    )


def rebalance_last_level(codes: np.ndarray, ids: np.ndarray, last_level_costs, n_codes: int) -> np.ndarray:
    """Move colliding items to free codes of the last level ("balanced" strategy).

    Within each prefix (all levels but the last), the items whose full code
    tuple is shared are re-assigned to distinct last-level codes not used by the
    prefix's other items, minimising the total distance to the chosen code
    vectors: the balanced last-level assignment of LC-Rec (Zheng et al. 2024),
    solved exactly per prefix (Hungarian algorithm) instead of with Sinkhorn
    iterations. Items that cannot move (more colliders than free codes) keep
    their code and are numbered by the counter level afterwards.

    Parameters
    ----------
    codes : (N, L) model codes.
    ids : (N,) item ids (order of the cost rows: ascending id, for determinism).
    last_level_costs : callable(rows) -> (len(rows), n_codes) distances of
        those items' last residuals to every last-level code.
    n_codes : size of the last codebook.
    """
    from scipy.optimize import linear_sum_assignment

    codes = np.asarray(codes, dtype=np.int64).copy()
    n, L = codes.shape
    if n == 0 or L == 0:
        return codes
    keys = row_keys(codes)
    _, full_inv, full_counts = np.unique(keys, return_inverse=True, return_counts=True)
    colliding = full_counts[full_inv.ravel()] > 1
    if not colliding.any():
        return codes
    prefix = row_keys(codes[:, :-1]) if L > 1 else np.zeros(n, dtype=np.int64)
    rank = id_order(ids)
    movers_all = np.flatnonzero(colliding)
    costs = last_level_costs(movers_all)  # (M, n_codes)
    cost_row = {int(r): i for i, r in enumerate(movers_all)}
    for p in np.unique(prefix[movers_all]):
        members = np.flatnonzero(prefix == p)
        movers = members[colliding[members]]
        movers = movers[np.argsort(rank[movers], kind="stable")]
        taken = set(codes[members[~colliding[members]], -1].tolist())
        free = np.array([c for c in range(n_codes) if c not in taken], dtype=np.int64)
        if len(free) == 0:
            continue
        cost = costs[[cost_row[int(r)] for r in movers]][:, free]
        rows, cols = linear_sum_assignment(cost)
        codes[movers[rows], -1] = free[cols]
    return codes


def resolve(codes: np.ndarray, ids: np.ndarray, strategy: str = "counter") -> Resolution:
    """Resolve with the counter level (``strategy="balanced"`` rebalances first,
    see :func:`rebalance_last_level`, then calls this with the moved codes)."""
    if strategy in ("counter", "balanced"):
        return resolve_counter(codes, ids)
    raise ValueError(f"unknown collision strategy {strategy!r}")
