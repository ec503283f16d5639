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

from ..model.keys import IdRows, row_keys


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
    return number_collisions(codes, ids)


def number_collisions(codes: np.ndarray, ids: np.ndarray, *, keep: np.ndarray | None = None,
                      existing: np.ndarray | None = None) -> Resolution:
    """The collision level: every way the package numbers items that share all codes.

    Items with equal code tuples form a group; each item gets a number unique in
    its group. Without options, the numbers are 0, 1, 2, ... in ascending item-id
    order (TIGER's counter level; :func:`resolve_counter`). The options keep
    numbers that already exist:

    - ``keep`` (N,) int64: a number an item keeps, -1 where it has none (a warm
      start carries old items' numbers over when their codes did not change;
      kept numbers must be unique within their group). The other items take the
      smallest numbers no keeper of their group holds, in ascending id order.
    - ``existing`` (M, L + 1): resolved codes of items already exported, which keep
      theirs (``assign``): this call's items of a group are numbered after the
      largest number the group already has, in ascending id order, so earlier
      items never move and later ones never fill gaps.

    In general an item that keeps no number takes, in id order, the smallest
    numbers at or above its group's start (0, or one past ``existing``'s largest)
    that no keeper holds.

    Parameters
    ----------
    codes : (N, L) integer model codes.
    ids : (N,) unique item ids (ints or strings).

    Returns
    -------
    :class:`Resolution` with codes (N, L + 1); its group statistics count this
    call's items only.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, L = codes.shape
    if n == 0:
        return Resolution(np.zeros((0, L + 1), dtype=np.int64), 0, 0)
    keeper = np.zeros(n, dtype=bool) if keep is None else np.asarray(keep, dtype=np.int64) >= 0
    rank = id_order(ids)
    # Sort by codes (level 0 most significant), then by id rank.
    order = np.lexsort([rank] + [codes[:, i] for i in range(L - 1, -1, -1)])
    sorted_codes = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)
    within, sizes = number_groups(new_group)
    group = np.cumsum(new_group) - 1  # (N,) group of each sorted row
    start = np.zeros(len(sizes), dtype=np.int64)
    if existing is not None and len(existing):
        start = _after_existing(sorted_codes[new_group], np.asarray(existing, dtype=np.int64))
    counter_sorted = start[group] + within
    if keeper.any():
        counter_sorted = _around_keepers(keeper[order], np.asarray(keep, dtype=np.int64)[order], group, start, new_group)
    counter = np.empty(n, dtype=np.int64)
    counter[order] = counter_sorted
    return Resolution(
        codes=np.column_stack([codes, counter]),
        n_collided_items=int(sizes[sizes > 1].sum()),
        largest_group=int(sizes.max()),
    )


def _after_existing(group_codes: np.ndarray, existing: np.ndarray) -> np.ndarray:
    """(G,) one past the largest number ``existing`` (M, L + 1) has for each group's
    codes (G, L), 0 for codes it lacks."""
    L = group_codes.shape[1]
    _, inverse = np.unique(row_keys(np.concatenate([existing[:, :L], group_codes])), return_inverse=True)
    inverse = inverse.ravel()
    largest = np.full(int(inverse.max()) + 1, -1, dtype=np.int64)
    np.maximum.at(largest, inverse[: len(existing)], existing[:, L])
    return largest[inverse[len(existing):]] + 1


def _around_keepers(kept: np.ndarray, keep: np.ndarray, group: np.ndarray, start: np.ndarray,
                    new_group: np.ndarray) -> np.ndarray:
    """Numbers of rows sorted by (codes, id): keepers (``kept``) hold ``keep``; the others
    take, in order, the free numbers from their group's ``start`` on."""
    n = len(kept)
    others = ~kept
    done = np.cumsum(others) - others  # others before each row
    first = np.flatnonzero(new_group)
    within = done - np.repeat(done[first], np.diff(np.append(first, n)))  # others before it, in its group
    out = np.where(kept, keep, start[group] + within)
    rows = np.flatnonzero(kept)
    rows = rows[np.lexsort((keep[rows], group[rows]))]  # keepers by group, then number
    taken = {int(group[r[0]]): keep[r] for r in np.split(rows, np.flatnonzero(np.diff(group[rows])) + 1)}
    for i in np.flatnonzero(others & np.isin(group, group[rows])):
        out[i] = nth_free(taken[int(group[i])], int(within[i]), int(start[group[i]]))
    return out


def nth_free(taken: np.ndarray, j: int, start: int = 0) -> int:
    """The ``j``-th (0-based) integer at or above ``start`` that is not in sorted ``taken``."""
    c = start + j
    for t in taken:  # each taken number at or below the candidate pushes it up by one
        if t < start:
            continue
        if t <= c:
            c += 1
        else:
            break
    return c


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
    cost_rows = IdRows(movers_all)  # item row -> its row of costs
    for p in np.unique(prefix[movers_all]):
        members = np.flatnonzero(prefix == p)
        movers = members[colliding[members]]
        movers = movers[np.argsort(rank[movers], kind="stable")]
        taken = set(codes[members[~colliding[members]], -1].tolist())
        free = np.array([c for c in range(n_codes) if c not in taken], dtype=np.int64)
        if len(free) == 0:
            continue
        cost = costs[cost_rows.rows(movers)][:, free]
        rows, cols = linear_sum_assignment(cost)
        codes[movers[rows], -1] = free[cols]
    return codes


def resolve(codes: np.ndarray, ids: np.ndarray, strategy: str = "counter") -> Resolution:
    """Resolve with the counter level (``strategy="balanced"`` rebalances first,
    see :func:`rebalance_last_level`, then calls this with the moved codes)."""
    if strategy in ("counter", "balanced"):
        return resolve_counter(codes, ids)
    raise ValueError(f"unknown collision strategy {strategy!r}")
