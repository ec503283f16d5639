"""FAISS index over the decoded code vectors of an export's distinct code tuples.

An item's code vector is the sum of its chosen codebook vectors (the RQ-VAE's
quantized latent). Items that share every model code share that vector, so the
index holds each distinct tuple once and results expand to its items in
collision-level order.

Index type by size (``kind="auto"``):
- up to ``FLAT_MAX`` distinct tuples: ``IndexFlatL2``, exact;
- above: ``IndexIVFFlat`` (nlist = 4·√U, nprobe = ``IVF_NPROBE``), approximate;
  ``kind="hnsw"`` gives ``IndexHNSWFlat`` (M=32, efSearch=128) instead.
Recall@10 against exact search and latency are measured in
``benchmarks/lookup.py`` (see README). The FAISS index is built on the first
search, so exact lookups never pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import threading

import faiss
import numpy as np

from .keys import radix_strides

FLAT_MAX = 200_000
HNSW_M = 32
HNSW_EF_SEARCH = 128
HNSW_EF_CONSTRUCTION = 64
IVF_NPROBE = 16


class CodeIndex:
    """Nearest-code search over rows of ``codes`` (N, L) with ``codebooks``."""

    def __init__(
        self,
        codes: np.ndarray,
        codebooks: Sequence[np.ndarray],
        *,
        kind: str = "auto",
        within_group: np.ndarray | None = None,
    ):
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        self.codebooks = [np.ascontiguousarray(c, dtype=np.float32) for c in codebooks]
        self.dim = self.codebooks[0].shape[1]
        n, L = codes.shape
        # Distinct tuples via a mixed-radix key; members sorted by (group, row).
        keys = codes @ radix_strides([len(c) for c in self.codebooks])
        uniq_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        self.group_codes = codes[first]  # (U, L)
        self.vectors = self.decode(self.group_codes)  # (U, D)
        # rows grouped; within a group by ``within_group`` (the collision level), else row order
        tiebreak = np.arange(n) if within_group is None else np.asarray(within_group)
        self.member_rows = np.lexsort((tiebreak, inverse))
        counts = np.bincount(inverse, minlength=len(uniq_keys))
        self.group_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.group_size = counts.astype(np.int64)
        self.row_group = inverse.astype(np.int64)
        self.all_singletons = bool((counts == 1).all())
        u = len(uniq_keys)
        self.kind = ("flat" if u <= FLAT_MAX else "ivf") if kind == "auto" else kind
        if self.kind not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"unknown index kind {kind!r}; use auto, flat, ivf or hnsw")
        self._index = None
        self._lock = threading.Lock()

    @property
    def index(self) -> faiss.Index:
        """The FAISS index, built once on first use (thread-safe)."""
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = self._build()
        return self._index

    def _build(self) -> faiss.Index:
        u = len(self.vectors)
        if self.kind == "flat":
            index = faiss.IndexFlatL2(self.dim)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, HNSW_M)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            nlist = max(1, min(int(4 * np.sqrt(u)), u // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dim), self.dim, nlist)
            index.cp.seed = 1234  # deterministic training
            sample = self.vectors[np.random.default_rng(0).permutation(u)[: nlist * 64]]
            index.train(sample)
            index.nprobe = min(IVF_NPROBE, nlist)
        index.add(self.vectors)
        return index

    def __len__(self) -> int:
        return len(self.vectors)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(Q, L) codes -> (Q, D) sum of codebook vectors."""
        out = np.zeros((len(codes), self.dim), dtype=np.float32)
        for d in range(codes.shape[1]):
            out += self.codebooks[d][codes[:, d]]
        return out

    def decode_partial(self, codes: np.ndarray) -> np.ndarray:
        """Like :meth:`decode`, levels marked -1 contribute nothing (a prefix's vector)."""
        out = np.zeros((len(codes), self.dim), dtype=np.float32)
        for d in range(codes.shape[1]):
            have = codes[:, d] >= 0
            out[have] += self.codebooks[d][codes[have, d]]
        return out

    def distances(self, vec: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Squared L2 from ``vec`` (D,) to the code vectors of ``rows``."""
        v = self.vectors[self.row_group[rows]]
        return ((v - vec[None, :]) ** 2).sum(1).astype(np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest rows (Q, k) and squared distances (Q, k); -1 / inf past the end."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        kg = min(k, len(self.vectors))
        dist, groups = self.index.search(q, kg)
        rows = np.full((len(q), k), -1, dtype=np.int64)
        out_d = np.full((len(q), k), np.inf, dtype=np.float32)
        if self.all_singletons:
            ok = groups >= 0
            rows[:, :kg] = np.where(ok, self.member_rows[self.group_start[np.maximum(groups, 0)]], -1)
            out_d[:, :kg] = np.where(ok, dist, np.inf)
            return rows, out_d
        for i in range(len(q)):
            got_r: list[int] = []
            got_d: list[float] = []
            for g, d in zip(groups[i], dist[i]):
                if g < 0:
                    continue
                s, c = self.group_start[g], self.group_size[g]
                for r in self.member_rows[s : s + c][: k - len(got_r)]:
                    got_r.append(int(r))
                    got_d.append(float(d))
                if len(got_r) >= k:
                    break
            rows[i, : len(got_r)] = got_r
            out_d[i, : len(got_d)] = got_d
        return rows, out_d
