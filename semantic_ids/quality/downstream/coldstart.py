"""Cold-start evaluation (after LIGER, Yang et al. 2024) and ways to rank cold items.

A seeded share of the items is *cold*: removed from every training sequence and from
the sequences the IDs are built from, so no model and no ID saw them used. They keep
their place in the catalog (their text, hence their IDs) and in histories at test time.
Test users whose target is cold form the cold split; the others the warm split.

A generative retriever trained without cold items almost never emits one (TIGER and
LIGER report 0% Recall on them). Ways to let cold items into its top k, each a
plain function over a beam's ranked rows:

- :func:`prefix_share` (TIGER's epsilon, Rajput et al. 2023, section 4.2): a cold item
  whose semantic ID shares the generated ID's prefix (every level but the collision
  level) is placed right after that beam item, at most ``ceil(eps * k)`` of them.
- :func:`dense_rerank` (LIGER): the retriever also predicts the next item's text
  embedding; the beam's items plus every cold item are ranked by its cosine.
- :func:`dense_share`: the beam keeps ``k - m`` slots; the ``m`` cold items nearest
  the predicted embedding take the rest.
- :func:`prior_rank`: items ranked by their text's similarity to the history plus the
  model's log-probability of their first code (the semantic-ID prior); over the cold
  items alone it fills the cold slots of :func:`share_slots`.
- :func:`neighbour_codes`: for those cold slots, each cold item's first code voted by its
  text neighbours among the used items (placed by observed behaviour) instead of its own
  (placed by behaviour predicted from text); :func:`choose_neighbour_prior` rehearses the
  setting on validation users. The recommended cold-start ranking.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ...errors import ConfigError
from .content import top_k_by_score, unit_rows
from .sequences import Split


def cold_items(n_items: int, share: float = 0.1, seed: int = 0) -> np.ndarray:
    """Sorted int64 rows of a seeded ``share`` of ``n_items`` items (at least one)."""
    if not 0 < share < 1:
        raise ConfigError(f"cold share={share} should be in (0, 1)")
    n = max(1, int(round(share * n_items)))
    return np.sort(np.random.default_rng(seed).permutation(n_items)[:n]).astype(np.int64)


def cold_split(split: Split, cold: np.ndarray) -> Split:
    """``split`` with every cold item removed from the training parts and from validation.

    The test histories and targets stay as they are (a new item can be in a history by
    the time it is recommended); users whose validation target is cold are left out of
    early stopping (``valid_users``), since a cold item is unknown while training.
    """
    cold = np.asarray(cold, dtype=np.int64)
    seen = [split.test_target, split.valid_target, cold, *split.train, *split.test_history]
    is_cold = np.zeros(1 + max(int(a.max()) for a in seen if len(a)), dtype=bool)
    is_cold[cold] = True
    train = [t[~is_cold[t]] for t in split.train]
    valid = np.flatnonzero(~is_cold[split.valid_target])
    if split.valid_users is not None:
        valid = np.intersect1d(valid, split.valid_users)
    return replace(split, train=train, valid_history=[h[~is_cold[h]] for h in split.valid_history], valid_users=valid)


def without_items(items: list[np.ndarray], cold: np.ndarray, keep_last: int = 2) -> list[np.ndarray]:
    """Sequences for building IDs: cold items removed from all but each sequence's last ``keep_last``.

    The last ``keep_last`` items (the validation and test targets) stay so that a build
    with ``collab.holdout_last = keep_last`` drops exactly them, as on the standard split.
    """
    cold = np.asarray(cold, dtype=np.int64)
    out = []
    for s in items:
        head, tail = s[:len(s) - keep_last], s[len(s) - keep_last:]
        out.append(np.concatenate([head[~np.isin(head, cold)], tail]))
    return out


def prefix_share(ranked: np.ndarray, codes: np.ndarray, cold: np.ndarray, k: int = 10, eps: float = 0.3,
                 prefix_levels: int | None = None) -> np.ndarray:
    """(U, k) the beam's ranking with cold items sharing a ranked item's ID prefix inserted after it.

    Parameters
    ----------
    ranked : (U, B) item rows from the beam, best first (-1 = none).
    codes : (N, L) the items' IDs; the prefix is the first ``prefix_levels`` levels (default L - 1:
        all but the collision level, so siblings are items the RQ placed in the same cell).
    cold : rows of the cold items; eps : at most ``ceil(eps * k)`` cold items in the top k.
    """
    codes = np.asarray(codes, dtype=np.int64)
    p = codes.shape[1] - 1 if prefix_levels is None else prefix_levels
    if not 1 <= p <= codes.shape[1] or not 0 <= eps <= 1:
        raise ConfigError(f"prefix_levels={p} should be in [1, {codes.shape[1]}] and eps={eps} in [0, 1]")
    by_prefix: dict[tuple, list[int]] = {}
    for r in np.sort(np.asarray(cold, dtype=np.int64)):
        by_prefix.setdefault(tuple(codes[r, :p]), []).append(int(r))
    siblings = {r: by_prefix[key] for r, key in enumerate(map(tuple, codes[:, :p].tolist())) if key in by_prefix}
    cap = math.ceil(eps * k)
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    for u, row in enumerate(np.asarray(ranked)):
        got, seen, n_cold = [], set(), 0
        for r in row:
            if r < 0 or len(got) == k:
                break
            if r not in seen:
                got.append(int(r))
                seen.add(int(r))
            for c in siblings.get(int(r), ()):
                if n_cold < cap and len(got) < k and c not in seen:
                    got.append(c)
                    seen.add(c)
                    n_cold += 1
        out[u, :len(got)] = got
    return out


def dense_rerank(ranked: np.ndarray, predicted: np.ndarray, emb: np.ndarray, cold: np.ndarray, k: int = 10,
                 exclude: list[np.ndarray] | None = None, batch: int = 1024) -> np.ndarray:
    """(U, k) the beam's items and every cold item, ranked by cosine to the predicted embedding (LIGER).

    Parameters
    ----------
    ranked : (U, B) beam rows; predicted : (U, D) predicted next-item embeddings; emb : (N, D) item
    text embeddings; cold : cold rows; exclude : per user, rows never returned (e.g. the history).
    Ties go to the beam's order, then to the lower cold row.
    """
    unit, q = unit_rows(emb), unit_rows(predicted)
    cold = np.unique(np.asarray(cold, dtype=np.int64))
    ranked = np.asarray(ranked, dtype=np.int64)
    col_of = np.full(len(unit), -1, dtype=np.int64)
    col_of[cold] = np.arange(len(cold))
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    for i in range(0, len(ranked), batch):
        r, qq = ranked[i:i + batch], q[i:i + batch]
        beam = np.einsum("ud,ubd->ub", qq, unit[np.maximum(r, 0)])  # (b, B)
        # an item already earlier in the beam, or a cold one (scored in the cold block), is scored once
        dup = ((r[:, :, None] == r[:, None, :]) & np.tri(r.shape[1], k=-1, dtype=bool)).any(2)
        beam[(r < 0) | (col_of[np.maximum(r, 0)] >= 0) | dup] = -np.inf
        colds = qq @ unit[cold].T  # (b, C)
        if exclude is not None:
            for j, h in enumerate(exclude[i:i + batch]):
                h = np.asarray(h, dtype=np.int64)
                beam[j, np.isin(r[j], h)] = -np.inf
                c = col_of[h]
                colds[j, c[c >= 0]] = -np.inf
        scores = np.concatenate([beam, colds], 1)
        rows = np.concatenate([r, np.broadcast_to(cold, (len(r), len(cold)))], 1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(rows, order, 1)
        out[i:i + len(r), :top.shape[1]] = np.where(np.isfinite(np.take_along_axis(scores, order, 1)), top, -1)
    return out


def dense_share(ranked: np.ndarray, predicted: np.ndarray, emb: np.ndarray, cold: np.ndarray, k: int = 10, m: int = 3,
                exclude: list[np.ndarray] | None = None) -> np.ndarray:
    """(U, k) the beam's first ``k - m`` items, then the ``m`` cold items nearest the predicted embedding."""
    if not 0 <= m <= k:
        raise ConfigError(f"m={m} cold slots should be in [0, k={k}]")
    cold_top = top_k_by_score(unit_rows(predicted), unit_rows(emb), m, exclude=exclude, candidates=cold) if m else None
    return share_slots(ranked, cold_top, k, m)


def share_slots(ranked: np.ndarray, cold_top: np.ndarray | None, k: int, m: int) -> np.ndarray:
    """(U, k) the beam's first ``k - m`` items, then ``cold_top``'s (U, >= m) rows not already there."""
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    for u, row in enumerate(np.asarray(ranked)):
        beam = [int(r) for r in row if r >= 0][:k - m]
        extra = [] if cold_top is None else [int(c) for c in cold_top[u] if c >= 0 and c not in beam]
        got = (beam + extra)[:k]
        out[u, :len(got)] = got
    return out


PRIOR_WEIGHTS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1)  # the grid choose_prior_weight searches


def prior_rank(queries: np.ndarray, emb: np.ndarray, first_logp: np.ndarray, first_codes: np.ndarray, k: int,
               beta: float, *, exclude: list[np.ndarray] | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
    """(U, k) items ranked by ``cos(query, text) + beta * log P(item's first code | history)``, best first.

    The semantic-ID prior: the generative model cannot spell a cold item's whole ID, but it
    does put a probability on each first-level code, and a cold item's first code comes
    from its text and predicted behaviour like any other item's. So the model's belief
    about *where* the next item lies reaches items it never saw, and the text similarity
    to the history picks *which* one. ``beta = 0`` is content-kNN.

    Parameters
    ----------
    queries : (U, D) content queries (e.g. ``history_queries``); scaled to unit length here.
    emb : (N, D) item text embeddings; first_logp : (U, V1) ``GenerativeRetriever.first_code_logprobs``.
    first_codes : (N,) each item's first-level code, or (N, V1) a distribution over first codes per
        item (:func:`neighbour_codes`), whose log-probability is then ``log sum_c P(c | history) w[n, c]``.
    exclude, candidates : as :func:`top_k_by_score`.
    With plain item IDs (one level, one code per item) the "first code" is the item itself, and
    this is the item-ID model's log-probability fused with content: the same fusion for SASRec.
    """
    return top_k_by_score(unit_rows(queries), unit_rows(emb), k, exclude=exclude, candidates=candidates, batch=512,
                          bias=_prior_bias(first_logp, first_codes, beta, len(emb), candidates))


def _prior_bias(first_logp: np.ndarray, first_codes: np.ndarray, beta: float, n: int, candidates):
    """``bias(lo, hi)`` for :func:`top_k_by_score`: beta * log P(each item's first code) per user."""
    first_logp = np.asarray(first_logp, dtype=np.float32)
    beta = np.float32(beta)
    if np.ndim(first_codes) == 1:
        first_codes = np.asarray(first_codes, dtype=np.int64)
        if first_codes.min() < 0 or first_codes.max() >= first_logp.shape[1]:
            raise ConfigError(f"first codes should be in [0, {first_logp.shape[1]}), got {first_codes.min()}..{first_codes.max()}")
        return lambda lo, hi: beta * first_logp[lo:hi][:, first_codes]
    weights = np.asarray(first_codes, dtype=np.float32)
    if weights.shape != (n, first_logp.shape[1]) or (weights < 0).any():
        raise ConfigError(f"first-code weights should be non-negative, shape ({n}, {first_logp.shape[1]}), got {weights.shape}")
    cols = np.arange(n) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    w = weights[cols].T  # (V1, C): only the returnable items' mixtures are needed

    def bias(lo, hi):
        out = np.zeros((hi - lo, n), dtype=np.float32)
        out[:, cols] = beta * mixture_logp(first_logp[lo:hi], w)
        return out
    return bias


def mixture_logp(first_logp: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(U, C) ``log sum_c P(c | history) w[c, item]`` for (U, V1) log-probabilities and (V1, C) weights,
    each user's largest log-probability taken out first so that no probability underflows."""
    top = first_logp.max(1, keepdims=True)
    return top + np.log(np.exp(first_logp - top) @ w + np.finfo(np.float32).tiny)


def neighbour_codes(emb: np.ndarray, first_codes: np.ndarray, n_codes: int, items: np.ndarray, pool: np.ndarray,
                    k: int = 20, tau: float = 0.02) -> np.ndarray:
    """(len(items), n_codes) float32: each item's first code as its text neighbours vote it.

    Row i is the distribution of the first codes of the ``k`` ``pool`` items nearest ``items[i]``
    by text cosine (the item itself excluded), weighted by ``softmax(cosine / tau)``. An item
    nobody has used has a first code from its text and a *predicted* behaviour vector; its
    neighbours with interactions have codes placed by their observed behaviour. When the IDs
    carry behaviour, the vote says in which behavioural region the new item is likely to fall,
    which its own predicted code says less well; with text-only IDs the vote mostly repeats the
    item's own code. Fed to :func:`prior_rank` as ``first_codes`` (rows for the other items:
    :func:`code_weights`).
    """
    return vote_codes(*text_neighbours(emb, items, pool, k), first_codes, n_codes, k, tau)


def text_neighbours(emb: np.ndarray, items: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(I, k) the ``pool`` rows nearest each of ``items`` by text cosine, best first (the item itself
    excluded; -1 = none), and (I, k) their cosines (-inf for none)."""
    if k < 1:
        raise ConfigError(f"k={k} neighbours should be >= 1")
    items = np.asarray(items, dtype=np.int64)
    unit = unit_rows(emb)
    nbr = top_k_by_score(unit[items], unit, k, exclude=[[i] for i in items], candidates=np.asarray(pool, dtype=np.int64))
    cos = np.einsum("id,ikd->ik", unit[items], unit[np.maximum(nbr, 0)])
    return nbr, np.where(nbr >= 0, cos, -np.inf).astype(np.float32)


def vote_codes(nbr: np.ndarray, cos: np.ndarray, first_codes: np.ndarray, n_codes: int, k: int, tau: float) -> np.ndarray:
    """:func:`neighbour_codes` from :func:`text_neighbours`' output (its first ``k`` columns)."""
    if not tau > 0:
        raise ConfigError(f"tau={tau} should be > 0")
    nbr, cos = nbr[:, :k], cos[:, :k]
    top = cos.max(1, keepdims=True)
    w = np.exp((cos - np.where(np.isfinite(top), top, 0)) / tau)
    w /= np.maximum(w.sum(1, keepdims=True), np.finfo(np.float32).tiny)
    out = np.zeros((len(nbr), n_codes), dtype=np.float32)
    ok = nbr.ravel() >= 0
    rows = np.repeat(np.arange(len(nbr)), nbr.shape[1])[ok]
    np.add.at(out, (rows, np.asarray(first_codes, dtype=np.int64)[nbr.ravel()[ok]]), w.ravel()[ok])
    return out


NEIGHBOURS = (10, 20, 50)  # the grids choose_neighbour_prior searches
TEMPERATURES = (0.02, 0.1)
NEIGHBOUR_WEIGHTS = PRIOR_WEIGHTS + (0.15, 0.2)


def choose_neighbour_prior(queries: np.ndarray, emb: np.ndarray, first_logp: np.ndarray, first_codes: np.ndarray,
                           pool: np.ndarray, targets: np.ndarray, *, exclude: list[np.ndarray] | None = None,
                           slots: int = 3, folds: int = 5, seed: int = 0, neighbours=NEIGHBOURS,
                           temperatures=TEMPERATURES, weights=NEIGHBOUR_WEIGHTS) -> tuple[tuple[int, float, float], dict]:
    """``(k, tau, beta)`` for ranking new items with :func:`neighbour_codes`, chosen by rehearsing cold start.

    No cold item's use may inform the choice, so it is rehearsed on items that were used: the
    ``pool`` (the items with training interactions) is cut into ``folds`` seeded folds, and each
    fold in turn plays the new items. Its items' codes are voted by their neighbours in the other
    folds, and each validation user whose target is in the fold ranks the fold's items (history
    excluded) by ``cos(query, text) + beta * log sum_c P(c | history) w[c]``, as the cold slots
    rank the cold items. Recall@``slots`` over those users picks the setting; ties go to fewer
    neighbours, then the lower ``tau``, then the smaller ``beta``. Returns the setting and
    Recall@slots per ``(k, tau, beta)``.
    """
    if folds < 2 or slots < 1 or not (neighbours and temperatures and weights):
        raise ConfigError(f"folds={folds} should be >= 2, slots={slots} >= 1, and every grid non-empty")
    pool = np.unique(np.asarray(pool, dtype=np.int64))
    targets = np.asarray(targets, dtype=np.int64)
    first_codes = np.asarray(first_codes, dtype=np.int64)
    fold_of = np.random.default_rng(seed).permutation(len(pool)) % folds
    qu, unit = unit_rows(queries), unit_rows(emb)
    n_codes = first_logp.shape[1]
    grid = [(k, t, b) for k in neighbours for t in temperatures for b in weights]
    hits = dict.fromkeys(grid, 0)
    total = 0
    for f in range(folds):
        items, rest = pool[fold_of == f], pool[fold_of != f]
        users = np.flatnonzero(np.isin(targets, items))
        if not len(users):
            continue
        total += len(users)
        col = np.full(len(emb), -1, dtype=np.int64)
        col[items] = np.arange(len(items))
        cos = qu[users] @ unit[items].T  # (Uf, F)
        if exclude is not None:
            for j, u in enumerate(users):
                c = col[np.asarray(exclude[u], dtype=np.int64)]
                cos[j, c[c >= 0]] = -np.inf
        tcol = col[targets[users]]
        lp = np.asarray(first_logp, dtype=np.float32)[users]
        nbr, ncos = text_neighbours(emb, items, rest, max(neighbours))
        for k in neighbours:
            for t in temperatures:
                votes = vote_codes(nbr, ncos, first_codes, n_codes, k, t)
                logp = mixture_logp(lp, code_weights(first_codes[items], n_codes, np.arange(len(items)), votes).T)
                for b in weights:
                    s = cos + np.float32(b) * logp
                    ts = s[np.arange(len(users)), tcol][:, None]  # the target's score; -inf: in the history, never returned
                    ahead = (s > ts).sum(1) + ((s == ts) & (np.arange(len(items)) < tcol[:, None])).sum(1)
                    hits[(k, t, b)] += int(((ahead < slots) & np.isfinite(ts[:, 0])).sum())
    if not total:
        raise ConfigError("no validation target is a pool item: nothing to rehearse cold start on")
    recall = {key: h / total for key, h in hits.items()}
    best = max(grid, key=lambda key: (recall[key], -key[0], -key[1], -key[2]))
    return best, recall


def code_weights(first_codes: np.ndarray, n_codes: int, rows: np.ndarray | None = None,
                 mixtures: np.ndarray | None = None) -> np.ndarray:
    """(N, n_codes) float32: one-hot first codes, with ``rows`` replaced by ``mixtures`` (e.g. the cold items' votes);
    a row whose mixture is all zero (an item without neighbours) keeps its own code."""
    first_codes = np.asarray(first_codes, dtype=np.int64)
    out = np.zeros((len(first_codes), n_codes), dtype=np.float32)
    out[np.arange(len(first_codes)), first_codes] = 1.0
    if (rows is None) != (mixtures is None):
        raise ConfigError("code_weights needs both rows and mixtures, or neither")
    if rows is not None:
        mixtures = np.asarray(mixtures, dtype=np.float32)
        voted = mixtures.sum(1) > 0
        out[np.asarray(rows, dtype=np.int64)[voted]] = mixtures[voted]
    return out


def choose_prior_weight(queries: np.ndarray, emb: np.ndarray, first_logp: np.ndarray, first_codes: np.ndarray,
                        targets: np.ndarray, *, exclude: list[np.ndarray] | None = None, k: int = 10,
                        candidates: np.ndarray | None = None, grid=PRIOR_WEIGHTS) -> tuple[float, dict[float, float]]:
    """The ``beta`` of :func:`prior_rank` with the best Recall@k on validation targets, and Recall@k per ``beta``.

    Chosen on the validation users (whose targets are warm: the cold split leaves users with a
    cold validation target out), so no test target and no cold item's use informs it. Ties go
    to the smaller weight.
    """
    targets = np.asarray(targets, dtype=np.int64)
    recall = {}
    for beta in grid:
        top = prior_rank(queries, emb, first_logp, first_codes, k, beta, exclude=exclude, candidates=candidates)
        recall[float(beta)] = float((top == targets[:, None]).any(1).mean())
    best = max(recall, key=lambda b: (recall[b], -b))
    return best, recall


BEAM_SLOTS = (0, 1, 2, 3, 4, 5)  # the grid choose_beam_slots searches


def choose_beam_slots(beam: np.ndarray, prior: np.ndarray, targets: np.ndarray, *, k: int = 10,
                      grid=BEAM_SLOTS) -> tuple[int, dict[int, float]]:
    """How many of the beam's first items to keep before :func:`prior_rank`'s, by validation Recall@k.

    The beam spells whole IDs, so it ranks the popular items it reaches better than the prior
    over first codes; the prior reaches the tail and the cold items. ``share_slots(beam, prior,
    k, k - m)`` keeps the beam's first ``m``. Chosen on validation users like ``beta``; ties go
    to fewer beam slots. Returns the best ``m`` and Recall@k per ``m``.
    """
    targets = np.asarray(targets, dtype=np.int64)
    recall = {}
    for m in grid:
        top = share_slots(beam, prior, k, k - m)
        recall[int(m)] = float((top == targets[:, None]).any(1).mean())
    best = max(recall, key=lambda m: (recall[m], -m))
    return best, recall


def split_masks(targets: np.ndarray, cold: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean user masks ``warm``, ``cold`` and ``all`` by whether the target is a cold item."""
    c = np.isin(np.asarray(targets), np.asarray(cold))
    return {"warm": ~c, "cold": c, "all": np.ones_like(c)}
