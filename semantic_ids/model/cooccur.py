"""Co-occurrence counts of items in user sequences, as sparse row blocks in memory or on disk.

Within each user's sequence, items at most ``window`` positions apart co-occur,
weighted 1 / distance (an item next to itself does not count). The counts are a
symmetric (N, N) sparse matrix, kept as CSR blocks of ``block_rows`` rows:

1. every sequence chunk becomes int64 keys, ``row``, ``col`` and ``distance - 1`` packed
   in bit fields (shifts and masks: integer division is slow), one per ordered pair, appended to the key store of the pair's row block (a list
   in memory, or a raw ``.bin`` file per block on disk for the streaming build);
2. each block's keys are counted (``np.unique``) and summed per pair in distance
   order, ``sum_d n_d / d``: every pair's value depends only on how often it occurs
   at each distance, never on the order of the users, the chunks or the blocks,
   so the two stores and any chunking give bit-identical counts, and ``(i, j)``
   equals ``(j, i)`` bit for bit (the PPMI transpose relies on it,
   :mod:`semantic_ids.model.svd`).

Memory: the in-memory store holds 8 bytes per ordered pair (about ``2 * window``
per event); the disk store holds one block's keys at a time, and the counts of
one block when they are read back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import SequenceError

log = logging.getLogger(__name__)

BLOCK_ROWS = 65536  # rows per count block: at 10 events per item, about 6M pairs per block


def _bits(x: int) -> int:
    return max(1, int(x - 1).bit_length())


def key_fields(n_items: int, window: int) -> tuple[int, int]:
    """Bits of the column and of the distance in a pair key (the row takes the rest)."""
    nb, wb = _bits(n_items), _bits(window)
    if 2 * nb + wb > 63:
        raise SequenceError(f"{n_items} items with window {window}: too many for 64-bit pair keys")
    return nb, wb


def pair_keys(sequences: Iterable[np.ndarray], n_items: int, window: int) -> np.ndarray:
    """(M,) int64 keys of every ordered co-occurring pair of ``sequences`` (rows into the
    catalog, time order): ``row | col | distance - 1`` in bit fields (:func:`key_fields`),
    both directions; sorted keys are sorted by row, column, then distance."""
    nb, wb = key_fields(n_items, window)
    seqs = [np.asarray(s, dtype=np.int64) for s in sequences if len(s) > 1]
    if not seqs:
        return np.zeros(0, dtype=np.int64)
    flat = np.concatenate(seqs)
    user = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    parts = []
    for d in range(1, window + 1):
        a, b = flat[:-d], flat[d:]
        keep = (user[:-d] == user[d:]) & (a != b)  # same user, not an item next to itself
        a, b = a[keep], b[keep]
        parts += [(a << (nb + wb)) | (b << wb) | (d - 1), (b << (nb + wb)) | (a << wb) | (d - 1)]
    return np.concatenate(parts)


def count_block(keys: np.ndarray, lo: int, hi: int, n_items: int, window: int):
    """The (hi - lo, N) CSR counts of rows ``lo..hi`` from their pairs' keys, with float64
    values ``sum_d n_d / d`` summed in distance order, columns sorted."""
    from scipy import sparse

    nb, wb = key_fields(n_items, window)
    uk = np.sort(keys)  # by row, column, then distance
    new = np.empty(len(uk), dtype=bool)
    new[:1] = True
    np.not_equal(uk[1:], uk[:-1], out=new[1:])
    first = np.flatnonzero(new)
    n = np.diff(np.r_[first, len(uk)])  # occurrences of each (row, col, distance)
    uk = uk[first]
    w = n / ((uk & ((1 << wb) - 1)) + 1)
    pair = uk >> wb
    new = np.empty(len(pair), dtype=bool)
    new[:1] = True
    np.not_equal(pair[1:], pair[:-1], out=new[1:])
    # bincount adds the weights in input order: each pair's distances in ascending order
    vals = np.bincount(np.cumsum(new) - 1, weights=w) if len(pair) else w
    pair = pair[new]
    rows = (pair >> nb) - lo
    indptr = np.zeros(hi - lo + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=hi - lo), out=indptr[1:])
    return sparse.csr_matrix((vals, (pair & ((1 << nb) - 1)).astype(np.int32), indptr), shape=(hi - lo, n_items))


@dataclass
class CountBlocks:
    """The co-occurrence counts as CSR row blocks, in memory or on disk (``directory``).

    Attributes
    ----------
    n_items : N
    bounds : [(lo, hi)] row ranges of the blocks, in order.
    row_sums : (N,) float64 summed weight per item (0 = no interactions).
    nnz : stored pairs (both directions).
    longest : the longest sequence counted (for error messages).
    """

    n_items: int
    window: int
    block_rows: int = BLOCK_ROWS
    directory: Path | None = None
    bounds: list = field(default_factory=list)
    row_sums: np.ndarray | None = None
    nnz: int = 0
    longest: int = 0
    _keys: dict = field(default_factory=dict, repr=False)
    _blocks: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        key_fields(self.n_items, self.window)  # fails early for a catalog too large for the keys
        if self.block_rows & (self.block_rows - 1):
            raise ValueError(f"block_rows={self.block_rows} should be a power of two")
        self.bounds = [(lo, min(self.n_items, lo + self.block_rows)) for lo in range(0, self.n_items, self.block_rows)]
        if self.directory is not None:
            self.directory = Path(self.directory)
            self.directory.mkdir(parents=True, exist_ok=True)

    def add(self, sequences: list[np.ndarray]) -> None:
        """Count a chunk of sequences (rows into the catalog), appending their keys to each block's store."""
        self.longest = max([self.longest, *(len(s) for s in sequences)])
        keys = pair_keys(sequences, self.n_items, self.window)
        nb, wb = key_fields(self.n_items, self.window)
        block = keys >> (nb + wb + self.block_rows.bit_length() - 1)  # row // block_rows
        order = np.argsort(block, kind="stable")
        cuts = np.searchsorted(block[order], np.arange(len(self.bounds) + 1))
        for b in range(len(self.bounds)):
            part = keys[order[cuts[b]: cuts[b + 1]]]
            if not len(part):
                continue
            if self.directory is None:
                self._keys.setdefault(b, []).append(part)
            else:
                with open(self.directory / f"keys-{b:05d}.bin", "ab") as f:
                    part.tofile(f)

    def finish(self) -> "CountBlocks":
        """Turn every block's keys into its CSR counts (kept, or saved as ``counts-NNNNN.npz``)."""
        self.row_sums = np.zeros(self.n_items, dtype=np.float64)
        for b, (lo, hi) in enumerate(self.bounds):
            if self.directory is None:
                parts = self._keys.pop(b, [])
                keys = np.concatenate(parts) if parts else np.zeros(0, np.int64)
                del parts
            else:
                raw = self.directory / f"keys-{b:05d}.bin"
                keys = np.fromfile(raw, dtype=np.int64) if raw.exists() else np.zeros(0, np.int64)
            self.row_sums[lo:hi], nnz = self.finish_block(b, keys)
            del keys
            self.nnz += nnz
        return self

    def finish_block(self, b: int, keys: np.ndarray) -> tuple[np.ndarray, int]:
        """Block ``b``'s CSR counts from all its pairs' keys, in any order (kept, or saved as
        ``counts-NNNNN.npz``); returns its (hi - lo,) row sums and its stored pairs.
        :meth:`finish` runs it on every block in turn; the Ray engine runs it one block per
        task (:mod:`semantic_ids.runners.ray_behaviour`)."""
        lo, hi = self.bounds[b]
        c = count_block(keys, lo, hi, self.n_items, self.window)
        if self.directory is None:
            self._blocks.append(c)
        else:
            np.savez(self.directory / f"counts-{b:05d}.npz", indptr=c.indptr, indices=c.indices, data=c.data)
            (self.directory / f"keys-{b:05d}.bin").unlink(missing_ok=True)
        return row_sums(c), c.nnz

    def __iter__(self) -> Iterator[tuple[int, object]]:
        """(lo, CSR counts of rows lo..hi) per block, in row order (read from disk one at a time)."""
        from scipy import sparse

        for b, (lo, hi) in enumerate(self.bounds):
            if self.directory is None:
                yield lo, self._blocks[b]
            else:
                with np.load(self.directory / f"counts-{b:05d}.npz", allow_pickle=False) as z:
                    yield lo, sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(hi - lo, self.n_items))

    def to_csr(self):
        """The whole (N, N) matrix (tests and small catalogs)."""
        from scipy import sparse

        blocks = [c for _, c in self]
        return sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((self.n_items, self.n_items))


def row_sums(c) -> np.ndarray:
    """Per-row sums of a CSR block, each row summed in column order (block-size independent)."""
    out = np.zeros(c.shape[0], dtype=np.float64)
    nonempty = np.flatnonzero(np.diff(c.indptr))
    if len(nonempty):
        out[nonempty] = np.add.reduceat(c.data, c.indptr[nonempty])
    return out


def count_sequences(sequences: list[np.ndarray], n_items: int, window: int, *, chunk: int = 100_000,
                    directory: str | Path | None = None, block_rows: int = BLOCK_ROWS) -> CountBlocks:
    """:class:`CountBlocks` of in-memory sequences, ``chunk`` users at a time."""
    counts = CountBlocks(n_items, window, block_rows, None if directory is None else Path(directory))
    for s in range(0, len(sequences), chunk):
        counts.add(sequences[s: s + chunk])
    return counts.finish()


def cooccurrence(sequences: list[np.ndarray], n_items: int, window: int):
    """Symmetric (N, N) scipy CSR matrix: summed 1 / distance over pairs within ``window``."""
    return count_sequences(sequences, n_items, window).to_csr()

