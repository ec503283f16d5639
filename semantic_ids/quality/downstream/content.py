"""Content-kNN: rank items by text similarity to the end of a user's history.

TIGER's ``Semantic_KNN`` baseline (Rajput et al. 2023): the query is the mean of the
last ``last`` history items' unit text embeddings, and every item is scored by the
cosine of its text embedding to it. Nothing is trained, so an item nobody has used
yet (cold start) is ranked exactly like any other: the baseline any cold-start
method has to beat.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...errors import ConfigError


def unit_rows(x: np.ndarray) -> np.ndarray:
    """(N, D) float32 rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def history_queries(emb: np.ndarray, histories: list[np.ndarray], last: int = 3) -> np.ndarray:
    """(U, D) mean of the unit embeddings of each history's last ``last`` items (a zero row for an empty one)."""
    if last < 1:
        raise ConfigError(f"last={last} should be >= 1")
    unit = unit_rows(emb)
    q = np.zeros((len(histories), unit.shape[1]), dtype=np.float32)
    for u, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-last:]
        if len(h):
            q[u] = unit[h].mean(0)
    return q


def top_k_by_score(queries: np.ndarray, items: np.ndarray, k: int, *, exclude: list[np.ndarray] | None = None,
                   candidates: np.ndarray | None = None, batch: int = 2048,
                   bias: Callable[[int, int], np.ndarray] | None = None) -> np.ndarray:
    """(U, k) rows of ``items`` with the highest ``queries @ items.T``, best first (ties: lower row).

    Parameters
    ----------
    queries : (U, D) float; items : (N, D) float.
    exclude : per user, rows never returned (e.g. the history), or None.
    candidates : rows that may be returned (default: all), e.g. only the cold items.
    bias : ``bias(lo, hi)`` -> (hi - lo, N) float added to the scores of users ``lo:hi`` (e.g. a
        log-probability of each item's first code); only the returnable items' entries are read.
    Fewer than ``k`` returnable rows leave -1 at the end.
    """
    items = np.asarray(items, dtype=np.float32)
    n = len(items)
    allowed = np.ones(n, dtype=bool) if candidates is None else np.isin(np.arange(n), candidates)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for i in range(0, len(queries), batch):
        s = np.asarray(queries[i:i + batch], dtype=np.float32) @ items.T  # (b, N)
        if bias is not None:
            s += np.asarray(bias(i, i + len(s)), dtype=np.float32)
        s[:, ~allowed] = -np.inf
        if exclude is not None:
            for j, h in enumerate(exclude[i:i + batch]):
                s[j, np.asarray(h, dtype=np.int64)] = -np.inf
        kk = min(k, n)
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(s), 1))
        ps = np.take_along_axis(s, part, 1)
        order = np.lexsort((part, -ps), axis=1)  # by score, then by row
        top = np.take_along_axis(part, order, 1)
        top = np.where(np.isfinite(np.take_along_axis(ps, order, 1)), top, -1)
        out[i:i + len(s), :kk] = top
    return out


def content_knn(emb: np.ndarray, histories: list[np.ndarray], k: int = 20, *, last: int = 3,
                exclude_history: bool = True, candidates: np.ndarray | None = None) -> np.ndarray:
    """(U, k) item rows ranked by cosine to the mean of each history's last ``last`` items.

    Parameters
    ----------
    emb : (N, D) text embeddings of the items (rows = item rows of the histories).
    histories : per user, int64 item rows in time order.
    exclude_history : never return an item of the user's history (on Amazon Beauty no test
        target repeats a history item, and the history's own items are otherwise its nearest).
    candidates : rows that may be returned (default: all).
    """
    q = history_queries(emb, histories, last)
    return top_k_by_score(q, unit_rows(emb), k, exclude=histories if exclude_history else None, candidates=candidates)
