"""FAISS index over the decoded code vectors of an export's distinct code tuples.

An item's code vector is the sum of its chosen codebook vectors (the RQ-VAE's
quantized latent; with the k-means first level, ``RQVAE.code_books`` puts the
level-1 centroid and the weighted latent in separate blocks). Items that share every model code share that vector, so the
index holds each distinct tuple once and results expand to its items in
collision-level order.

With ``split`` (the RQ-VAE's k-means first level: level 1's codebook fills the
first ``split`` dimensions, the deeper levels the rest, see ``RQVAE.code_books``)
and more than ``GROUPED_MIN_FLOATS`` floats of full code vectors (or
``kind="grouped"``), the search is exact and needs no FAISS index: distinct tuples are grouped by
level-1 code (they already are, in key order); a query visits level-1 groups in
order of its distance to their centroid and stops once that distance alone
exceeds its k-th best total, so only the small latent block is stored per tuple.

Below that size the full vectors go into an exact ``IndexFlatL2``, faster per
batch. Index type by size otherwise (``kind="auto"``):
- up to ``FLAT_MAX`` distinct tuples: ``IndexFlatL2``, exact;
- above: ``IndexIVFFlat`` (nlist = 4·√U, nprobe = ``IVF_NPROBE``), approximate;
  ``kind="hnsw"`` gives ``IndexHNSWFlat`` (M=32, efSearch=128) instead.
Recall@10 against exact search and latency are measured in
``benchmarks/lookup.py`` (tables in ``benchmarks/README.md``). The FAISS index is built on the first
search, so exact lookups never pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import threading

import faiss
import numpy as np

from ..model.keys import radix_strides
from ..errors import ConfigError

FLAT_MAX = 200_000
GROUPED_MIN_FLOATS = 2**26  # 256 MB of float32 code vectors
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
        split: int | None = None,
    ):
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        self.codebooks = [np.ascontiguousarray(c, dtype=np.float32) for c in codebooks]
        self.dim = self.codebooks[0].shape[1]
        n, L = codes.shape
        if split is not None and kind not in ("grouped", "auto", "flat"):
            raise ConfigError(f"index kind {kind!r} does not apply to split code vectors; use auto, flat or grouped")
        if split is None and kind == "grouped":
            raise ConfigError('index kind "grouped" needs split code vectors (the k-means first level\'s code space)')
        # Distinct tuples via a mixed-radix key; members sorted by (group, row).
        keys = codes @ radix_strides([len(c) for c in self.codebooks])
        uniq_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        u = len(uniq_keys)
        if kind == "auto":
            if split is not None:  # full vectors while they fit (exact, faster per batch), else grouped
                kind = "flat" if u * self.dim <= GROUPED_MIN_FLOATS else "grouped"
            else:
                kind = "flat" if u <= FLAT_MAX else "ivf"
        if kind not in ("flat", "ivf", "hnsw", "grouped"):
            raise ConfigError(f"unknown index kind {kind!r}; use auto, flat, ivf or hnsw")
        self.kind = kind
        self.split = split if kind == "grouped" else None
        self.group_codes = codes[first]  # (U, L)
        if self.split is None:
            self.vectors = self.decode(self.group_codes)  # (U, D)
        else:
            # level-1 centroids and each tuple's latent block; tuples are in key order, so
            # the tuples of level-1 code c are rows first_start[c]:first_start[c + 1]
            self.centroids = self.codebooks[0][:, :split]
            self.vectors = np.zeros((len(first), self.dim - split), dtype=np.float32)
            for d in range(1, L):
                self.vectors += self.codebooks[d][self.group_codes[:, d], split:]
            k1 = len(self.codebooks[0])
            self.first_start = np.searchsorted(self.group_codes[:, 0], np.arange(k1 + 1))
        # rows grouped; within a group by ``within_group`` (the collision level), else row order
        tiebreak = np.arange(n) if within_group is None else np.asarray(within_group)
        self.member_rows = np.lexsort((tiebreak, inverse))
        counts = np.bincount(inverse, minlength=len(uniq_keys))
        self.group_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.group_size = counts.astype(np.int64)
        self.row_group = inverse.astype(np.int64)
        self.all_singletons = bool((counts == 1).all())
        self._index = None
        self._lock = threading.Lock()

    @property
    def index(self) -> faiss.Index | None:
        """The FAISS index, built once on first use (thread-safe); None for the
        grouped search, which needs none."""
        if self.split is not None:
            return None
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
        g = self.row_group[rows]
        if self.split is not None:
            s = self.split
            da = ((self.centroids[self.group_codes[g, 0]] - vec[None, :s]) ** 2).sum(1)
            return (da + ((self.vectors[g] - vec[None, s:]) ** 2).sum(1)).astype(np.float32)
        return ((self.vectors[g] - vec[None, :]) ** 2).sum(1).astype(np.float32)

    def _grouped_search(self, q: np.ndarray, kg: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest tuples with the level-1 block split off (see the module doc).
        Ties: lower tuple index first."""
        s = self.split
        qa, qb = q[:, :s], q[:, s:]
        # squared distances from every query to every level-1 centroid, (Q, K1)
        da = (qa**2).sum(1)[:, None] - 2.0 * (qa @ self.centroids.T) + (self.centroids**2).sum(1)[None, :]
        da = np.maximum(da, 0.0)
        dist = np.full((len(q), kg), np.inf, dtype=np.float32)
        groups = np.full((len(q), kg), -1, dtype=np.int64)
        for i in range(len(q)):
            best_d = np.empty(0, dtype=np.float64)
            best_g = np.empty(0, dtype=np.int64)
            for c in np.argsort(da[i], kind="stable"):
                if len(best_d) >= kg and da[i, c] > best_d[-1]:
                    break  # every further tuple is at least this far
                lo, hi = self.first_start[c], self.first_start[c + 1]
                if lo == hi:
                    continue
                d = da[i, c] + ((self.vectors[lo:hi] - qb[i]) ** 2).sum(1)
                cand_d = np.concatenate([best_d, d])
                cand_g = np.concatenate([best_g, np.arange(lo, hi)])
                keep = np.lexsort((cand_g, cand_d))[:kg]
                best_d, best_g = cand_d[keep], cand_g[keep]
            dist[i, : len(best_d)] = best_d
            groups[i, : len(best_g)] = best_g
        return dist, groups

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest rows (Q, k) and squared distances (Q, k); -1 / inf past the end."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        kg = min(k, len(self.vectors))
        if self.split is not None:
            dist, groups = self._grouped_search(q, kg)
        else:
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
