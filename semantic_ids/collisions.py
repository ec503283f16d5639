"""Collision resolution: make every item's semantic ID unique.

Default strategy ("counter", as TIGER does): append one level that numbers the
items sharing the same codes, 0, 1, 2, ..., in ascending item-id order, so a
rerun (or a different input order) gives the same IDs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


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
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    counter_sorted = np.arange(n) - group_start
    counter = np.empty(n, dtype=np.int64)
    counter[order] = counter_sorted
    sizes = np.diff(np.append(np.flatnonzero(new_group), n))
    return Resolution(
        codes=np.column_stack([codes, counter]),
        n_collided_items=int(sizes[sizes > 1].sum()),
        largest_group=int(sizes.max()),
    )


def resolve(codes: np.ndarray, ids: np.ndarray, strategy: str = "counter") -> Resolution:
    if strategy == "counter":
        return resolve_counter(codes, ids)
    raise ValueError(f"unknown collision strategy {strategy!r}")
