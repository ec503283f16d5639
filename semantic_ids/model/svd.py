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

    Memory: at most three (n, rank + oversample) float64 factors at once (1.8 GB at
    n = 1M, rank 64): two around each QR (the product and its Fortran-ordered copy,
    which LAPACK turns into ``Q`` in place, :func:`_qr_in_place`), three at the final
    small SVD (``Q``, ``A.T @ Q`` as LAPACK's work space, and ``V.T``). ``np.linalg.qr``
    held six (the old ``Q``, its input, a copy, two work buffers and the new ``Q``).
    The LAPACK routines are those numpy calls (``geqrf``, ``orgqr``, ``gesdd``, with
    their optimal work sizes), from scipy's build: the same bits as ``np.linalg`` where
    measured (the 1M x 74 factors of a PPMI, and the tests), within 1e-12 in any case.
    BLAS runs on one thread: the matrices are thin, and on a busy machine threaded
    BLAS is several times slower here (and threads change the sums).
    """
    import scipy.linalg.lapack  # noqa: F401 (loaded before threadpool_limits, which limits only the BLAS loaded)
    from threadpoolctl import threadpool_limits

    rmatmul: Callable[[np.ndarray], np.ndarray] = a.rmatmul if isinstance(a, PPMI) else (lambda x: a.T @ x)
    n = a.shape[1]
    k = min(rank + oversample, min(a.shape))
    rng = np.random.default_rng(seed)
    with threadpool_limits(1, user_api="blas"):
        y = a @ rng.standard_normal((n, k))
        for i in range(2 * power_iters + 1):  # Q of A @ Omega, then of A.T @ Q and A @ Q in turn
            f = np.asfortranarray(y)  # LAPACK's layout: the one copy (two factors at once)
            del y
            _qr_in_place(f)  # np.linalg.qr(y)[0] bit for bit (the same LAPACK geqrf and orgqr)
            q = np.ascontiguousarray(f)  # the products read C-ordered factors
            del f
            if i < 2 * power_iters:
                y = rmatmul(q) if i % 2 == 0 else a @ q
                del q
        u_small, s = _svd_left(rmatmul(q))  # (k, k), (k,): of (A.T @ Q).T = Q.T @ A
        u = q @ u_small
        del q
    u = np.ascontiguousarray(u[:, :rank])
    s = s[:rank]
    # a singular vector's sign is arbitrary: fix it so the largest entry is positive
    flip = np.sign(u[np.abs(u).argmax(0), np.arange(u.shape[1])])
    flip[flip == 0] = 1
    u *= flip
    return u, s


def _qr_in_place(f: np.ndarray) -> None:
    """Overwrite the Fortran-ordered (n, k) float64 ``f`` (n >= k) with the Q of its thin QR."""
    from scipy.linalg import lapack

    geqrf, orgqr = lapack.get_lapack_funcs(("geqrf", "orgqr"), (f,))
    lwork = int(geqrf(f, lwork=-1)[2][0])
    qr, tau, _, info = geqrf(f, lwork=lwork, overwrite_a=1)
    if info != 0 or not np.shares_memory(qr, f):
        raise RuntimeError(f"LAPACK geqrf failed (info={info})")
    lwork = int(orgqr(qr, tau, lwork=-1)[1][0])
    q, _, info = orgqr(qr, tau, lwork=lwork, overwrite_a=1)
    if info != 0 or not np.shares_memory(q, f):
        raise RuntimeError(f"LAPACK orgqr failed (info={info})")


def _svd_left(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``U, S`` of ``b.T`` (b: (n, k) C-ordered, n >= k) as ``np.linalg.svd(b.T,
    full_matrices=False)`` gives them bit for bit (LAPACK ``gesdd``, ``b`` its work space)."""
    from scipy.linalg import lapack

    bt = b.T  # (k, n), Fortran-ordered: no copy
    gesdd, gesdd_lwork = lapack.get_lapack_funcs(("gesdd", "gesdd_lwork"), (bt,))
    lwork, info = gesdd_lwork(bt.shape[0], bt.shape[1], compute_uv=1, full_matrices=0)
    u, s, _, info = gesdd(bt, compute_uv=1, full_matrices=0, lwork=int(lwork), overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"SVD did not converge (LAPACK gesdd info={info})")
    return u, s
