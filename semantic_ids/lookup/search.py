"""Nearest items in code space, for code sequences and for items.

An item's vector is the sum of its chosen codebook vectors (the RQ-VAE's latent,
or with the k-means first level the level-1 centroid beside the weighted latent,
see ``RQVAE.code_books``); a prefix's vector is the sum over its levels. The
search runs over the distinct code tuples' vectors, see :mod:`semantic_ids.ann`
for the index chosen by size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .index import CodeKeys

if TYPE_CHECKING:
    from .ann import CodeIndex


@dataclass(frozen=True)
class Neighbors:
    """Result of a nearest-code search for Q queries and k neighbours.

    ``rows``: (Q, k) int64 row numbers into the export (-1 where fewer than k
    exist); ``ids``: (Q, k) item ids (None where rows is -1); ``distances``:
    (Q, k) float32 squared L2 distances in code space (inf where rows is -1);
    ``codes``: (Q, L) the query codes (model levels only).
    """

    rows: np.ndarray
    ids: np.ndarray
    distances: np.ndarray
    codes: np.ndarray


def neighbors(ids: np.ndarray, rows: np.ndarray, dist: np.ndarray, codes: np.ndarray) -> Neighbors:
    """Package (Q, k) ``rows`` and ``dist`` with the item ids of ``ids`` they point at."""
    out = np.empty(rows.shape, dtype=object)
    valid = rows >= 0
    out[valid] = ids[rows[valid]]
    return Neighbors(rows=rows, ids=out, distances=dist.astype(np.float32), codes=codes)


def search_codes(
    index: CodeIndex, keys: CodeKeys, queries: list[np.ndarray], k: int, *, prefer_prefix: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest items of validated code sequences (a prefix, L or L + 1 levels each).

    Returns ``rows`` (Q, k) int64 (-1 past the end), ``dist`` (Q, k) float32
    (inf past the end) and the queries' model codes (Q, L) (-1 below a prefix).
    With ``prefer_prefix``, candidates are first the items under the longest
    prefix of the query that exists, ranked by distance (ties by collision
    number), then the nearest others; without it, distance alone.
    """
    n_levels = keys.n_levels
    model_codes = np.full((len(queries), n_levels), -1, dtype=np.int64)
    for i, c in enumerate(queries):
        model_codes[i, : min(len(c), n_levels)] = c[:n_levels]
    vecs = index.decode_partial(model_codes)
    if not prefer_prefix:
        rows, dist = index.search(vecs, k)
        return rows, dist, model_codes
    all_rows = np.full((len(queries), k), -1, dtype=np.int64)
    all_dist = np.full((len(queries), k), np.inf, dtype=np.float32)
    for i, c in enumerate(queries):
        depth = min(len(c), n_levels)
        lo = hi = 0
        while depth > 0:
            lo, hi = keys.range(c[:depth])
            if hi > lo:
                break
            depth -= 1
        chosen: list[int] = []
        dists: list[float] = []
        if depth > 0:
            cand = keys.order[lo:hi]
            d = index.distances(vecs[i], cand)
            order = np.lexsort((keys.codes[cand, -1], d))[:k]
            chosen = cand[order].tolist()
            dists = d[order].tolist()
        _fill_with_nearest(index, vecs[i : i + 1], chosen, dists, k)
        all_rows[i, : len(chosen)] = chosen
        all_dist[i, : len(dists)] = dists
    return all_rows, all_dist, model_codes


def _fill_with_nearest(index: CodeIndex, vec: np.ndarray, chosen: list[int], dists: list[float], k: int) -> None:
    """Append the nearest items of ``vec`` (1, D_c) not chosen yet to ``chosen`` / ``dists``, up to k."""
    if len(chosen) >= k:
        return
    extra_rows, extra_d = index.search(vec, k + len(chosen))
    taken = set(chosen)
    for r, dd in zip(extra_rows[0], extra_d[0]):
        if r >= 0 and r not in taken and len(chosen) < k:
            chosen.append(int(r))
            dists.append(float(dd))


def search_vectors(
    index: CodeIndex, keys: CodeKeys, vecs: np.ndarray, codes: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest items of query vectors (Q, D_c) in code space, ranked by their IDs first.

    ``codes`` (Q, L) are the queries' own model codes. Items that share more leading
    codes with the query come first: every item sharing its first L codes, then those
    sharing L - 1, ... down to its level-1 code, each tier by distance (ties by
    collision number); then, if fewer than k, the nearest others. So a hit list read
    top-down never shares a longer prefix with the query than the hit before it, and
    the query's printed codes say where its first hits are.

    Returns ``rows`` (Q, k) int64 (-1 past the end) and ``dist`` (Q, k) float32 (inf past the end).
    """
    all_rows = np.full((len(vecs), k), -1, dtype=np.int64)
    all_dist = np.full((len(vecs), k), np.inf, dtype=np.float32)
    n_levels = keys.n_levels
    for i, c in enumerate(np.asarray(codes, dtype=np.int64)):
        lo, hi = keys.range(c[:1])
        cand = keys.order[lo:hi]  # the query's level-1 group (empty if no item has its level-1 code)
        chosen: list[int] = []
        dists: list[float] = []
        if len(cand):
            d = index.distances(vecs[i], cand)
            shared = np.cumprod(keys.codes[cand, :n_levels] == c[None, :n_levels], axis=1).sum(1)
            order = np.lexsort((keys.codes[cand, -1], d, -shared))[:k]
            chosen, dists = cand[order].tolist(), d[order].tolist()
        _fill_with_nearest(index, vecs[i : i + 1], chosen, dists, k)
        all_rows[i, : len(chosen)] = chosen
        all_dist[i, : len(dists)] = dists
    return all_rows, all_dist


def similar_rows(index: CodeIndex, codes: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows of each of ``rows`` (Q,), given every item's model codes (N, L).

    Returns ``rows`` (Q, k) int64 (-1 past the end) and ``dist`` (Q, k) float32 (inf past the end).
    """
    vecs = index.decode_partial(codes[rows])
    got, dist = index.search(vecs, k + 1)
    out_rows = np.full((len(rows), k), -1, dtype=np.int64)
    out_d = np.full((len(rows), k), np.inf, dtype=np.float32)
    for i, r in enumerate(rows):
        keep = [(g, d) for g, d in zip(got[i], dist[i]) if g >= 0 and g != r][:k]
        out_rows[i, : len(keep)] = [g for g, _ in keep]
        out_d[i, : len(keep)] = [d for _, d in keep]
    return out_rows, out_d
