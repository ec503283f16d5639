"""PPMI of co-occurrence counts and its randomized SVD, block by block.

The PPMI matrix ``A`` is never stored: :class:`PPMI` computes each row block of
``A`` (or of ``A.T``) from the same block of counts when a product needs it, so
memory holds one block of counts and the thin dense factors (N, k), whether the
counts live in memory or on disk (:class:`~semantic_ids.model.cooccur.CountBlocks`).

``A.T`` comes from the counts' symmetry: ``A[r, c] = log(C[r, c] * T / (row[r] * ctx[c]))``,
so row ``c`` of ``A.T`` is row ``c`` of ``C`` with the roles of ``row`` and ``ctx``
swapped. Each output row of ``A @ X`` and ``A.T @ X`` is summed over its row's
entries in column order, as scipy does for the whole matrix, so the blocks give
the whole matrix's products bit for bit, for any block size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


class PPMI:
    """Positive PMI of symmetric co-occurrence counts, context counts raised to ``alpha``
    (Levy & Goldberg 2015), applied block by block.

    Parameters
    ----------
    blocks : iterable of (lo, CSR counts of rows lo..lo+h), re-iterable, in row order.
    row : (N,) float64 row sums of the counts.
    """

    def __init__(self, blocks, row: np.ndarray, alpha: float = 0.75):
        self.blocks = blocks
        self.row = np.asarray(row, dtype=np.float64)
        self.ctx = self.row**alpha
        self.ctx_total = self.ctx.sum()
        self.shape = (len(self.row), len(self.row))

    def block(self, lo: int, counts, transpose: bool = False):
        """Rows ``lo..lo+h`` of ``A`` (or of ``A.T``) as CSR, from the same rows of the counts."""
        from scipy import sparse

        r = lo + np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        c = counts.indices
        if transpose:  # A.T[r, c] = A[c, r]
            pmi = np.log(counts.data * self.ctx_total / (self.row[c] * self.ctx[r]))
        else:
            pmi = np.log(counts.data * self.ctx_total / (self.row[r] * self.ctx[c]))
        keep = pmi > 0
        indptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(r[keep] - lo, minlength=counts.shape[0]), out=indptr[1:])
        return sparse.csr_matrix((pmi[keep], c[keep], indptr), shape=counts.shape)

    def _apply(self, x: np.ndarray, transpose: bool) -> np.ndarray:
        out = np.empty((self.shape[0], x.shape[1]), dtype=np.float64)
        for lo, counts in self.blocks:
            out[lo: lo + counts.shape[0]] = self.block(lo, counts, transpose) @ x
        return out

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        return self._apply(x, False)

    def rmatmul(self, x: np.ndarray) -> np.ndarray:
        """``A.T @ x``."""
        return self._apply(x, True)

    def to_csr(self):
        """The whole matrix (tests and small catalogs)."""
        from scipy import sparse

        parts = [self.block(lo, c) for lo, c in self.blocks]
        return sparse.vstack(parts, format="csr") if parts else sparse.csr_matrix(self.shape)


def randomized_svd(a, rank: int, *, seed: int, oversample: int = 10, power_iters: int = 4):
    """Top ``rank`` singular triplets of ``a`` (Halko et al. 2011), seeded, with fixed signs.

    ``a``: a scipy sparse matrix, or a :class:`PPMI` (read block by block: ``a @ X`` and
    ``a.T @ X`` through :meth:`PPMI.rmatmul`). Returns ``u`` (n, rank) and ``s`` (rank,).
    Memory: a few (n, rank + oversample) float64 factors. BLAS runs on one thread: the
    matrices are thin, and on a busy machine threaded BLAS is several times slower here.
    """
    from threadpoolctl import threadpool_limits

    rmatmul: Callable[[np.ndarray], np.ndarray] = a.rmatmul if isinstance(a, PPMI) else (lambda x: a.T @ x)
    n = a.shape[1]
    k = min(rank + oversample, min(a.shape))
    rng = np.random.default_rng(seed)
    with threadpool_limits(1, user_api="blas"):
        q, _ = np.linalg.qr(a @ rng.standard_normal((n, k)))
        for _ in range(power_iters):
            q, _ = np.linalg.qr(rmatmul(q))
            q, _ = np.linalg.qr(a @ q)
        u_small, s, _ = np.linalg.svd(rmatmul(q).T, full_matrices=False)
        u = q @ u_small
    u, s = u[:, :rank], s[:rank]
    # a singular vector's sign is arbitrary: fix it so the largest entry is positive
    flip = np.sign(u[np.abs(u).argmax(0), np.arange(u.shape[1])])
    flip[flip == 0] = 1
    return u * flip, s
