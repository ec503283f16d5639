"""Exact lookups: item ids -> rows, code tuples -> rows, prefixes -> ranges of rows.

Code tuples become sorted integer keys (one mixed-radix int64 per tuple, see
:func:`semantic_ids.keys.radix_strides`) searched with ``np.searchsorted``, so
every lookup is O(log N), vectorised over a batch, and a prefix of any depth is
one contiguous range of the sorted keys. String item ids are found through a
dict, integer ids by binary search over the sorted ids.

Everything here is read-only after construction and safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..model.keys import IdRows, radix_strides
from ..export.tokens import TokenError, parse_sid
from ..errors import UnknownIDError


LookupError_ = UnknownIDError  # deprecated name (kept so existing ``except LookupError_`` still works)


def is_single_id(item_ids) -> bool:
    """One item id (a string or a scalar) rather than a sequence of them."""
    return np.isscalar(item_ids) or isinstance(item_ids, str)


def is_single_sid(sids) -> bool:
    """One token string, or one flat sequence of integer codes."""
    if isinstance(sids, str):
        return True
    if isinstance(sids, np.ndarray):
        return sids.ndim == 1 and sids.dtype.kind in "iuf"
    seq = list(sids) if not isinstance(sids, (list, tuple)) else sids
    return len(seq) > 0 and all(np.isscalar(v) and not isinstance(v, str) for v in seq)


def coerce_ids(item_ids, dtype: np.dtype):
    """Query ids as a list or array comparable with ids of ``dtype``.

    With integer ids, values that ``int()`` accepts become integers (ids typed on
    a command line arrive as strings); any other value is kept and matches no item.
    """
    if np.dtype(dtype).kind not in "iu":
        return item_ids if isinstance(item_ids, (list, np.ndarray)) else list(item_ids)
    arr = np.asarray(item_ids, dtype=object if not isinstance(item_ids, np.ndarray) else None)
    if arr.dtype.kind in "iu":
        return arr
    conv = []
    for v in arr.tolist():
        try:
            conv.append(int(v))
        except (TypeError, ValueError):
            conv.append(v)
    return np.asarray(conv, dtype=object)


class ItemRows:
    """Item id -> row number for lookups: the one id -> row mapping
    (:class:`~semantic_ids.model.keys.IdRows`) plus what a lookup adds to it.

    Parameters
    ----------
    ids : (N,) unique item ids; an object array of str, or integers (stored as int64)
    """

    def __init__(self, ids: np.ndarray):
        ids = np.asarray(ids)
        self._index = IdRows(ids if ids.dtype == object else ids.astype(np.int64))
        self.ids = self._index.ids

    def rows(self, item_ids, *, missing: str = "raise") -> np.ndarray:
        """(Q,) int64 rows of item ids; a single id gives a (1,) array.

        Unknown ids raise :class:`UnknownIDError` naming them, or give -1 with
        ``missing="null"``. With integer ids, strings are read as integers
        (see :func:`coerce_ids`); a value that is no integer matches nothing.
        """
        single = is_single_id(item_ids)
        keys = coerce_ids([item_ids] if single else item_ids, self.ids.dtype)
        keys = keys if isinstance(keys, np.ndarray) else np.asarray(keys, dtype=object)
        if self.ids.dtype.kind in "iu" and keys.dtype.kind not in "iu":
            ok = np.fromiter(
                (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and -(2**63) <= v < 2**63 for v in keys.tolist()),
                dtype=bool, count=len(keys),
            )
            rows = np.full(len(keys), -1, dtype=np.int64)
            rows[ok] = self._index.rows(np.array([int(v) for v in keys[ok].tolist()], dtype=np.int64), missing="-1")
        else:
            rows = self._index.rows(keys, missing="-1")
        if missing == "raise" and (rows < 0).any():
            if single:
                raise UnknownIDError(f"unknown item id {item_ids!r}")
            unknown = [keys[i] for i in np.flatnonzero(rows < 0)[:10]]
            raise UnknownIDError(f"{int((rows < 0).sum())} unknown item id(s), e.g. {unknown}")
        return rows


class CodeKeys:
    """Code tuple -> row, and prefix -> range of rows, over sorted mixed-radix keys.

    Parameters
    ----------
    codes : (N, L + 1) int64 resolved codes (model levels + collision level), unique rows
    codebook_sizes : codes per model level (length L)

    Attributes
    ----------
    sizes : (L + 1,) int64 radix per level; the collision level's is its largest number + 1
    strides : (L + 1,) int64; ``codes @ strides`` is a row's key
    order : (N,) rows in key (code) order
    """

    def __init__(self, codes: np.ndarray, codebook_sizes: Sequence[int]):
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != len(codebook_sizes) + 1:
            raise ValueError(f"codes should be (N, {len(codebook_sizes) + 1}), got {codes.shape}")
        self.codes = codes
        self.n_levels = len(codebook_sizes)
        self.collision_size = int(codes[:, -1].max()) + 1 if len(codes) else 1
        self.sizes = np.array([*codebook_sizes, self.collision_size], dtype=np.int64)
        if float(np.prod(self.sizes.astype(np.float64))) >= 2**62:
            raise ValueError(f"code space {self.sizes.tolist()} too large for 64-bit keys")
        self.strides = radix_strides(self.sizes)
        codes.flags.writeable = False  # shared by threads: callers get read-only views
        keys = codes @ self.strides
        self.order = np.argsort(keys, kind="stable")
        self._sorted = keys[self.order]
        if len(keys) and (np.diff(self._sorted) == 0).any():
            raise ValueError("codes are not unique; resolve collisions first")

    def rows(self, codes: np.ndarray) -> np.ndarray:
        """(Q, L + 1) full codes -> (Q,) rows (-1 where no item has them)."""
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) == 0:
            return np.zeros(0, dtype=np.int64)
        beyond = codes[:, -1] >= self.sizes[-1]  # a collision number nobody has (yet)
        keys = np.where(beyond, -1, codes @ self.strides)
        pos = np.searchsorted(self._sorted, keys)
        pos_c = np.minimum(pos, len(self._sorted) - 1)
        hit = (pos < len(self._sorted)) & (self._sorted[pos_c] == keys)
        return np.where(hit, self.order[pos_c], -1)

    def range(self, prefix: np.ndarray) -> tuple[int, int]:
        """Positions [lo, hi) in :attr:`order` of the items under a validated (d,) prefix."""
        d = len(prefix)
        lo_key = int(prefix @ self.strides[:d])
        hi_key = lo_key + int(self.strides[d - 1])
        return (
            int(np.searchsorted(self._sorted, lo_key, "left")),
            int(np.searchsorted(self._sorted, hi_key, "left")),
        )

    def parse(self, sids, *, allow_prefix: bool) -> list[np.ndarray]:
        """Token strings or code sequences -> list of int64 arrays, validated.

        Model levels must lie in their codebook's range; the collision level
        only has to be >= 0 (a number past the largest in use names no item).
        Raises :class:`~semantic_ids.tokens.TokenError` naming the offending ID.
        """
        out = []
        for s in sids:
            raw = np.asarray(parse_sid(s) if isinstance(s, str) else s).ravel()
            if raw.dtype.kind not in "iu":
                if raw.dtype.kind == "f" and np.all(np.mod(raw, 1) == 0):
                    raw = raw.astype(np.int64)
                else:
                    raise TokenError(f"semantic ID {s!r}: codes should be integers")
            codes = raw.astype(np.int64)
            if len(codes) == 0:
                raise TokenError("empty semantic ID")
            if len(codes) > len(self.sizes):
                raise TokenError(f"semantic ID {s!r} has {len(codes)} levels; this export has {len(self.sizes)}")
            if not allow_prefix and len(codes) != len(self.sizes):
                raise TokenError(
                    f"semantic ID {s!r} has {len(codes)} levels; a full ID has {len(self.sizes)} (use a prefix lookup)"
                )
            limit = self.sizes[: len(codes)].copy()
            if len(codes) > self.n_levels:
                limit[self.n_levels] = np.iinfo(np.int64).max  # collision level: any number >= 0
            bad = np.flatnonzero((codes < 0) | (codes >= limit))
            if len(bad):
                d = int(bad[0])
                raise TokenError(
                    f"semantic ID {s!r}: code {int(codes[d])} at level {d} is out of range [0, {int(self.sizes[d])})"
                )
            out.append(codes)
        return out
