"""Keys for code tuples: one value per row, for grouping, sorting and hashing.

- :func:`row_keys`: rows (N, L) as opaque byte keys (equal rows, equal keys);
- :func:`radix_strides`: mixed-radix weights, so ``codes @ strides`` is an int64
  key whose numeric order is the lexicographic order of the codes, and a
  prefix of depth d is the key range ``[k, k + strides[d - 1])``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def row_keys(codes: np.ndarray) -> np.ndarray:
    """(N, L) integer codes -> (N,) void keys, equal exactly when rows are equal."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    return codes.view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1]))).ravel()


def radix_strides(sizes: Sequence[int]) -> np.ndarray:
    """strides[d] = product of sizes after level d (int64)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    strides = np.ones(len(sizes), dtype=np.int64)
    for d in range(len(sizes) - 2, -1, -1):
        strides[d] = strides[d + 1] * sizes[d + 1]
    return strides
