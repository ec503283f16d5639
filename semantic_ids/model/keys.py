"""Keys for code tuples: one value per row, for grouping, sorting and hashing.

- :func:`row_keys`: rows (N, L) as opaque byte keys (equal rows, equal keys);
- :func:`radix_strides`: mixed-radix weights, so ``codes @ strides`` is an int64
  key whose numeric order is the lexicographic order of the codes, and a
  prefix of depth d is the key range ``[k, k + strides[d - 1])``;
- :func:`kept_prefixes`: how many items kept each prefix of their codes between two builds;
- :func:`rows_of` / :class:`IdRows`: item ids -> rows, the one id mapping of the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np

from ..errors import DuplicateIdError, MissingIdError


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


def kept_prefixes(new_codes: np.ndarray, old_row: np.ndarray, old_codes: np.ndarray) -> tuple[int, list[float]]:
    """Between two builds: how many items both hold, and per depth d = 1..D the share of
    them whose first d codes are the same (D: the shorter of the two code widths).

    Parameters
    ----------
    new_codes : (N, L) codes of the newer build's items.
    old_row : (N,) int64 each of those items' row in ``old_codes``, -1 for new items
        (:func:`rows_of` with ``missing="-1"``).
    old_codes : (M, L') codes of the older build.

    Returns ``(m, shares)``; ``shares`` is empty when no item is common.
    """
    new_codes, old_codes = np.asarray(new_codes), np.asarray(old_codes)
    has = np.asarray(old_row) >= 0
    m = int(has.sum())
    depth = min(new_codes.shape[1], old_codes.shape[1])
    if m == 0:
        return 0, []
    same = np.cumprod(new_codes[has, :depth] == old_codes[old_row[has], :depth], axis=1).astype(bool)
    return m, [float(same[:, d].mean()) for d in range(depth)]  # same[:, d]: the first d + 1 codes agree


# -- item ids -> rows ---------------------------------------------------------------------


def _is_int_kind(ids: np.ndarray) -> bool:
    return ids.dtype.kind in "iu"


class IdRows:
    """Item id -> row number over unique ``ids`` (N,), built once and reused.

    Integer ids (int64) are found by binary search over the sorted ids, any other
    ids (strings, as an object array) through a dict; no pandas, so light modules
    (the torch-free ``diff``) can use it. Ids of the other kind never match: an
    integer id never finds the string ``"1"``, nor ``True`` the integer 1.
    """

    def __init__(self, ids):
        ids = np.asarray(ids)
        self.ids = ids
        self._int = _is_int_kind(ids)
        if self._int:
            ids = ids.astype(np.int64)
            self._order = np.argsort(ids, kind="stable")
            self._sorted = ids[self._order]
            dup = np.flatnonzero(self._sorted[1:] == self._sorted[:-1])
            dups = self._sorted[dup].tolist()
        else:
            values = ids.tolist()
            self._map = dict(zip(values, range(len(values))))
            dups = [] if len(self._map) == len(values) else [v for v, c in _counts(values).items() if c > 1]
        if dups:
            raise DuplicateIdError(f"{len(dups)} duplicate item id(s), e.g. {dups[:5]}")

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids, *, missing: str = "raise", what: str = "item id(s)") -> np.ndarray:
        """(Q,) int64 row of each of ``ids`` (Q,).

        ``missing="raise"``: :class:`MissingIdError` naming how many of ``ids`` are
        absent, and the first of them (``what`` names them in the message);
        ``missing="-1"``: -1 for each.
        """
        if missing not in ("raise", "-1"):
            raise ValueError(f"missing={missing!r} should be 'raise' or '-1'")
        ids = np.asarray(ids)
        out = np.full(len(ids), -1, dtype=np.int64)
        if len(ids) and len(self.ids):
            if self._int and _is_int_kind(ids):
                q = ids.astype(np.int64)
                pos = np.minimum(np.searchsorted(self._sorted, q), len(self._sorted) - 1)
                hit = self._sorted[pos] == q
                out[hit] = self._order[pos[hit]]
            elif not self._int and not _is_int_kind(ids) and ids.dtype.kind != "b":
                values, get = ids.tolist(), self._map.get
                try:
                    out[:] = np.fromiter(map(get, values, repeat(-1)), dtype=np.int64, count=len(values))
                except TypeError:  # an unhashable value (a list) is no id
                    out[:] = [get(v, -1) if _hashable(v) else -1 for v in values]
                if ids.dtype == object:  # a bool is no id either (True == 1 as a dict key)
                    out[[i for i, v in enumerate(values) if isinstance(v, bool)]] = -1
        if missing == "raise" and (out < 0).any():
            absent = ids[out < 0].tolist()
            raise MissingIdError(f"{len(absent)} {what}, e.g. {absent[:5]}", absent)
        return out


def rows_of(ids, among, *, missing: str = "raise", what: str = "item id(s) not found") -> np.ndarray:
    """(Q,) int64 row of each of ``ids`` in ``among`` (unique ids, or an :class:`IdRows`
    built once when the same ids are searched many times).

    Missing ids raise :class:`MissingIdError` (``missing="raise"``, the default; its
    message is ``f"{count} {what}, e.g. [...]"``) or give -1 (``missing="-1"``).
    Integer and string ids never match each other.
    """
    index = among if isinstance(among, IdRows) else IdRows(among)
    return index.rows(ids, missing=missing, what=what)


def _counts(values: list) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _hashable(v) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True
