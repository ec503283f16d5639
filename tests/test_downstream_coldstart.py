"""Content-kNN, popularity buckets, the cold-start split and the ways to rank cold items."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_ids.errors import ConfigError
from semantic_ids.quality.downstream import Sequences, leave_one_out
from semantic_ids.quality.downstream.coldstart import (
    choose_beam_slots,
    choose_neighbour_prior,
    choose_prior_weight,
    code_weights,
    cold_items,
    cold_split,
    dense_rerank,
    dense_share,
    neighbour_codes,
    prefix_share,
    prior_rank,
    share_slots,
    split_masks,
    without_items,
)
from semantic_ids.quality.downstream.content import content_knn, top_k_by_score, unit_rows
from semantic_ids.quality.downstream.metrics import by_group, popularity_buckets
from semantic_ids.quality.downstream.retriever import GenerativeRetriever, RetrieverConfig

from .test_downstream import SMALL, synthetic


# -- content-kNN -----------------------------------------------------------------------------

def test_content_knn_by_hand():
    emb = np.array([[1, 0], [0, 1], [1, 1], [1, -1], [-1, 0]], dtype=np.float32)
    # the mean of items 0 and 1 points at (1, 1): item 2 (cos 1), then 3 (cos 0), then 4; 0 and 1 are the history
    assert content_knn(emb, [np.array([0, 1])], k=4, last=3).tolist() == [[2, 3, 4, -1]]
    # only the last item counts with last=1; nothing excluded
    assert content_knn(emb, [np.array([1, 0])], k=2, last=1, exclude_history=False).tolist() == [[0, 2]]
    # candidates restrict what may be returned
    assert content_knn(emb, [np.array([0])], k=2, candidates=np.array([3, 4])).tolist() == [[3, 4]]


def test_content_knn_agrees_with_a_brute_force_ranking():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 16)).astype(np.float32)
    hist = [rng.choice(300, rng.integers(1, 8), replace=False) for _ in range(50)]
    got = content_knn(emb, hist, k=20, last=3)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for u, h in enumerate(hist):
        s = unit @ unit[h[-3:]].mean(0)
        s[h] = -np.inf
        assert got[u].tolist() == np.argsort(-s, kind="stable")[:20].tolist()
    # batch size does not change the result
    q = unit[[h[-1] for h in hist]]
    assert np.array_equal(top_k_by_score(q, unit, 7, batch=7), top_k_by_score(q, unit, 7))


def test_unit_rows_keeps_zero_rows():
    u = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(u, [[0.6, 0.8], [0, 0]])


# -- popularity buckets ----------------------------------------------------------------------

def test_popularity_buckets_split_the_interactions_and_keep_ties_together():
    counts = np.round(np.random.default_rng(0).lognormal(2.0, 1.2, size=5000)).astype(np.int64)
    counts[:100] = 0
    bucket, lowest = popularity_buckets(counts, 5)
    assert bucket.min() == 0 and bucket.max() == 4
    assert (bucket[:100] == 0).all()  # never trained on: the tail
    for c in np.unique(counts):  # the same count, the same bucket
        assert len(np.unique(bucket[counts == c])) == 1
    order = np.argsort(counts, kind="stable")
    assert (np.diff(bucket[order]) >= 0).all()  # more interactions, never a lower bucket
    share = np.bincount(bucket, weights=counts, minlength=5) / counts.sum()
    assert share[0] > 0.1 and share.max() < 0.5  # roughly a fifth each (ties and single heavy items blur it)
    assert lowest[0] == 0 and (np.diff(lowest) > 0).all()


def test_popularity_buckets_reject_negative_counts():
    with pytest.raises(ValueError, match="non-negative"):
        popularity_buckets(np.array([1, -1]))


def test_by_group_means():
    mean, n = by_group(np.array([1.0, 0.0, 1.0, 1.0]), np.array([0, 0, 2, 2]), 3)
    assert n.tolist() == [2, 0, 2] and mean[0] == 0.5 and np.isnan(mean[1]) and mean[2] == 1.0


# -- the cold-start split --------------------------------------------------------------------

def test_cold_items_are_seeded_and_sized():
    a = cold_items(1000, 0.1, seed=3)
    assert len(a) == 100 and np.array_equal(a, cold_items(1000, 0.1, seed=3)) and (np.diff(a) > 0).all()
    assert not np.array_equal(a, cold_items(1000, 0.1, seed=4))
    with pytest.raises(ConfigError, match="share=1.5"):
        cold_items(10, 1.5)


def test_cold_split_removes_cold_items_from_training_and_validation_only():
    seqs = Sequences(users=[0, 1, 2], items=[np.array([0, 5, 1, 2, 5, 3]), np.array([4, 1, 5, 6]), np.array([5, 2, 3, 1])])
    sp = leave_one_out(seqs, 10)
    cs = cold_split(sp, np.array([5]))
    assert [t.tolist() for t in cs.train] == [[0, 1, 2], [4, 1], [2]]
    assert all(5 not in h for h in cs.valid_history)
    assert cs.valid_users.tolist() == [2]  # users 0 and 1 have the cold item 5 as validation target
    # the test side is untouched: a new item may be in a history, and cold targets are what the cold split scores
    assert np.array_equal(cs.test_target, sp.test_target) and all(np.array_equal(a, b) for a, b in zip(cs.test_history, sp.test_history))
    masks = split_masks(cs.test_target, np.array([5, 6]))
    assert masks["cold"].tolist() == [False, True, False] and masks["warm"].tolist() == [True, False, True] and masks["all"].all()


def test_without_items_keeps_the_held_out_targets():
    got = without_items([np.array([5, 0, 5, 1, 5]), np.array([1, 2, 5])], np.array([5]), keep_last=2)
    assert [g.tolist() for g in got] == [[0, 1, 5], [1, 2, 5]]


def test_cold_split_restricts_early_stopping_to_warm_validation_targets():
    seqs, codes = synthetic(n_users=60)
    sp = cold_split(leave_one_out(seqs, SMALL.max_history), cold_items(len(codes), 0.2, seed=0))
    cfg = RetrieverConfig(**{**SMALL.to_dict(), "epochs": 1, "valid_users": 5})
    model = GenerativeRetriever(codes, None, cfg, show_progress=False).fit(sp)
    assert model.history_ and set(sp.valid_users.tolist()) < set(range(60))


# -- ranking cold items ----------------------------------------------------------------------

CODES = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 0]])  # (6, 3): 2 levels + collision


def test_prefix_share_inserts_cold_siblings_after_their_beam_item():
    ranked = np.array([[3, 2, 0, -1], [2, 5, 3, 0]])
    cold = np.array([1, 4])  # siblings of 0 (prefix 0,0) and of 3 (prefix 1,0)
    got = prefix_share(ranked, CODES, cold, k=4, eps=0.5)
    assert got[0].tolist() == [3, 4, 2, 0]  # 4 follows 3; 1 would follow 0 but there is no room
    assert got[1].tolist() == [2, 5, 3, 4]
    # eps caps the cold items in the top k; eps 0 gives the beam unchanged
    assert prefix_share(ranked, CODES, cold, k=4, eps=0.25)[0].tolist() == [3, 4, 2, 0]
    assert np.array_equal(prefix_share(ranked, CODES, cold, k=3, eps=0.0), ranked[:, :3])
    with pytest.raises(ConfigError, match="eps=2"):
        prefix_share(ranked, CODES, cold, eps=2)


def test_dense_rerank_ranks_the_beam_and_the_cold_items_by_the_prediction():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    pred = rng.normal(size=(6, 8)).astype(np.float32)
    ranked = rng.integers(0, 50, size=(6, 5))
    ranked[0, -1] = -1
    cold = np.array([1, 7, 20, 33])
    got = dense_rerank(ranked, pred, emb, cold, k=4)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for u in range(6):
        cand = np.union1d(ranked[u][ranked[u] >= 0], cold)
        s = unit[cand] @ (pred[u] / np.linalg.norm(pred[u]))
        assert got[u].tolist() == cand[np.argsort(-s, kind="stable")[:4]].tolist()
    hist = [np.array([ranked[u, 0], 7]) for u in range(6)]  # excluded rows never come back
    got = dense_rerank(ranked, pred, emb, cold, k=4, exclude=hist, batch=4)
    for u in range(6):
        cand = np.setdiff1d(np.union1d(ranked[u][ranked[u] >= 0], cold), hist[u])
        s = unit[cand] @ (pred[u] / np.linalg.norm(pred[u]))
        assert got[u].tolist() == cand[np.argsort(-s, kind="stable")[:4]].tolist()


def test_dense_share_keeps_the_beams_head_and_adds_the_nearest_cold_items():
    emb = np.eye(6, dtype=np.float32)
    pred = np.array([[0, 0.1, 0, 0, 0.9, 0]], dtype=np.float32)  # nearest cold item: 4, then 1
    got = dense_share(np.array([[3, 2, 0, 5]]), pred, emb, np.array([1, 4]), k=4, m=2)
    assert got.tolist() == [[3, 2, 4, 1]]
    assert dense_share(np.array([[3, 2, 0, 5]]), pred, emb, np.array([1, 4]), k=4, m=0).tolist() == [[3, 2, 0, 5]]


def prior_case(seed: int):
    """30 items with 4 first codes, 5 users' queries, log-probabilities and histories, every third item cold."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(30, 8)).astype(np.float32)
    first = rng.integers(0, 4, 30)
    logp = np.log(rng.dirichlet(np.ones(4), size=5)).astype(np.float32)
    q = rng.normal(size=(5, 8)).astype(np.float32)
    hist = [rng.choice(30, 3, replace=False) for _ in range(5)]
    cold = np.arange(0, 30, 3)
    return emb, first, logp, q, hist, cold


def test_prior_rank_adds_the_first_codes_log_probability_to_the_cosine():
    emb, first, logp, q, hist, cold = prior_case(0)
    got = prior_rank(q, emb, logp, first, 6, 0.5, exclude=hist, candidates=cold)
    unit, qu = unit_rows(emb), unit_rows(q)
    for u in range(5):  # brute force: cosine + beta * logp of the item's first code, over the cold items not in the history
        s = qu[u] @ unit.T + 0.5 * logp[u, first]
        allowed = np.isin(np.arange(30), cold) & ~np.isin(np.arange(30), hist[u])
        s[~allowed] = -np.inf
        assert got[u].tolist() == np.argsort(-s, kind="stable")[:6].tolist()
    # beta 0 is content-kNN (its query's scale does not matter)
    assert np.array_equal(prior_rank(q, emb, logp, first, 6, 0.0, exclude=hist),
                          top_k_by_score(unit_rows(q), unit, 6, exclude=hist))
    # a large beta ranks by the code's probability first: the top item has the user's most likely code
    top = prior_rank(q, emb, logp, first, 1, 1e3)[:, 0]
    assert np.array_equal(logp[np.arange(5), first[top]], logp[:, np.unique(first)].max(1))
    with pytest.raises(ConfigError, match="first codes"):
        prior_rank(q, emb, logp, first + 4, 6, 0.5)


def test_choose_prior_weight_picks_the_best_validation_recall_and_ties_go_to_the_smaller():
    rng = np.random.default_rng(3)
    n, users = 60, 40
    emb = rng.normal(size=(n, 6)).astype(np.float32)
    first = np.arange(n) % 6
    targets = rng.integers(0, n, users)
    q = rng.normal(size=(users, 6)).astype(np.float32)  # text says nothing about the target
    logp = np.full((users, 6), np.log(0.01), dtype=np.float32)
    logp[np.arange(users), first[targets]] = np.log(0.95)  # the prior knows the target's first code
    beta, curve = choose_prior_weight(q, emb, logp, first, targets, k=10, grid=(0.0, 0.1, 1.0, 10.0))
    assert set(curve) == {0.0, 0.1, 1.0, 10.0}
    assert curve[1.0] == curve[10.0] == 1.0 > curve[0.0]  # 10 items share a code: a strong prior puts the target in the top 10
    assert beta == 1.0  # the best recall, and of the tied weights the smaller
    assert choose_prior_weight(q, emb, np.zeros_like(logp), first, targets, grid=(0.0, 0.5))[0] == 0.0  # a flat prior: no weight


def test_neighbour_codes_are_the_softmax_weighted_codes_of_the_nearest_pool_items():
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    first = rng.integers(0, 5, 40)
    items, pool = np.array([0, 3, 7]), np.arange(0, 40, 2)  # item 0 is in the pool: it never votes for itself
    got = neighbour_codes(emb, first, 5, items, pool, k=4, tau=0.1)
    unit = unit_rows(emb)
    for i, item in enumerate(items):
        others = pool[pool != item]
        cos = unit[others] @ unit[item]
        near = np.argsort(-cos, kind="stable")[:4]
        w = np.exp((cos[near] - cos[near].max()) / 0.1)
        want = np.zeros(5)
        np.add.at(want, first[others[near]], w / w.sum())
        assert np.allclose(got[i], want, atol=1e-6)
    assert np.allclose(got.sum(1), 1)
    # a tiny temperature is the nearest neighbour's code
    one = neighbour_codes(emb, first, 5, items, pool, k=4, tau=1e-4)
    nearest = [pool[pool != it][np.argmax(unit[pool[pool != it]] @ unit[it])] for it in items]
    assert np.array_equal(one.argmax(1), first[nearest]) and np.allclose(one.max(1), 1)
    with pytest.raises(ConfigError, match="tau"):
        neighbour_codes(emb, first, 5, items, pool, tau=0)


def test_prior_rank_with_code_weights_sums_the_probability_over_each_items_codes():
    emb, first, logp, q, hist, cold = prior_case(6)
    rng = np.random.default_rng(6)
    # one-hot weights are the hard codes
    assert np.array_equal(prior_rank(q, emb, logp, code_weights(first, 4), 6, 0.5, exclude=hist),
                          prior_rank(q, emb, logp, first, 6, 0.5, exclude=hist))
    mix = rng.dirichlet(np.ones(4), size=len(cold)).astype(np.float32)
    weights = code_weights(first, 4, cold, mix)
    assert np.array_equal(weights[1], np.eye(4)[first[1]]) and np.array_equal(weights[cold], mix)
    got = prior_rank(q, emb, logp, weights, 4, 0.5, exclude=hist, candidates=cold)
    unit, qu = unit_rows(emb), unit_rows(q)
    for u in range(5):  # brute force: cosine + beta * log sum_c P(c) w[item, c]
        s = qu[u] @ unit[cold].T + 0.5 * np.log(mix @ np.exp(logp[u]))
        s[np.isin(cold, hist[u])] = -np.inf
        assert got[u].tolist() == cold[np.argsort(-s, kind="stable")[:4]].tolist()
    with pytest.raises(ConfigError, match="weights"):
        prior_rank(q, emb, logp, weights[:, :3], 6, 0.5)


def test_choose_neighbour_prior_finds_the_code_that_only_the_neighbours_know():
    rng = np.random.default_rng(7)
    clusters, per = 8, 25
    centre = rng.normal(size=(clusters, 12))
    emb = (np.repeat(centre, per, 0) + 0.3 * rng.normal(size=(clusters * per, 12))).astype(np.float32)
    n = len(emb)
    first = np.repeat(np.arange(clusters), per)  # an item's code is its cluster (its behaviour) ...
    users = 120
    targets = rng.integers(0, n, users)
    q = rng.normal(size=(users, 12)).astype(np.float32)  # ... the history's text says nothing about the target ...
    logp = np.full((users, clusters), np.log(0.02), dtype=np.float32)
    logp[np.arange(users), first[targets]] = np.log(0.86)  # ... and the model knows the target's code
    grid = dict(neighbours=(1, 5), temperatures=(0.05,), weights=(0.0, 0.5, 5.0))
    (k, tau, beta), recall = choose_neighbour_prior(q, emb, logp, first, np.arange(n), targets, slots=3, **grid)
    assert set(recall) == {(a, 0.05, b) for a in (1, 5) for b in (0.0, 0.5, 5.0)}
    assert recall[(k, tau, beta)] == max(recall.values()) > 3 * recall[(1, 0.05, 0.0)]
    assert beta > 0 and k == 1  # a text neighbour shares the cluster: one is enough, and ties go to fewer


def test_choose_neighbour_prior_rehearses_exactly_what_the_cold_slots_do():
    rng = np.random.default_rng(8)
    n, users, V = 90, 60, 6
    emb = rng.normal(size=(n, 5)).astype(np.float32)
    first = rng.integers(0, V, n)
    pool = np.setdiff1d(np.arange(n), np.arange(0, n, 9))  # a few items were never used
    targets = rng.choice(pool, users)
    q = rng.normal(size=(users, 5)).astype(np.float32)
    logp = np.log(rng.dirichlet(np.ones(V), size=users)).astype(np.float32) - 120  # far below exp's float32 range
    hist = [rng.choice(n, 4, replace=False) for _ in range(users)]
    hist[0] = np.append(hist[0], targets[0])  # a target in its user's history is never returned: a miss
    grid = dict(neighbours=(2, 5), temperatures=(0.05, 1.0), weights=(0.0, 0.3))
    _, recall = choose_neighbour_prior(q, emb, logp, first, pool, targets, exclude=hist, slots=3, folds=3, seed=4, **grid)
    fold_of = np.random.default_rng(4).permutation(len(pool)) % 3
    for (k, tau, beta), got in recall.items():  # brute force: each fold ranked by prior_rank over its own items
        hits = 0
        for f in range(3):
            items, rest = pool[fold_of == f], pool[fold_of != f]
            who = np.flatnonzero(np.isin(targets, items))
            weights = code_weights(first, V, items, neighbour_codes(emb, first, V, items, rest, k, tau))
            top = prior_rank(q[who], emb, logp[who], weights, 3, beta, exclude=[hist[u] for u in who], candidates=items)
            hits += int((top == targets[who, None]).any(1).sum())
        assert got == pytest.approx(hits / users)
    with pytest.raises(ConfigError, match="folds"):
        choose_neighbour_prior(q, emb, logp, first, pool, targets, folds=1)


def test_code_weights_and_log_probabilities_far_below_floats_range():
    rng = np.random.default_rng(9)
    emb = rng.normal(size=(20, 4)).astype(np.float32)
    first = rng.integers(0, 3, 20)
    q = rng.normal(size=(4, 4)).astype(np.float32)
    logp = np.log(rng.dirichlet(np.ones(3), size=4)).astype(np.float32) - 150
    assert np.array_equal(prior_rank(q, emb, logp, code_weights(first, 3), 8, 0.2),
                          prior_rank(q, emb, logp, first, 8, 0.2))  # one-hot weights are the hard codes, even here
    # an item without neighbours (an all-zero vote) keeps its own code
    w = code_weights(first, 3, np.array([2, 5]), np.array([[0.5, 0.5, 0], [0, 0, 0]], dtype=np.float32))
    assert w[2].tolist() == [0.5, 0.5, 0] and w[5].tolist() == np.eye(3)[first[5]].tolist()
    with pytest.raises(ConfigError, match="both"):
        code_weights(first, 3, np.array([2]))


def test_choose_beam_slots_keeps_as_many_beam_items_as_validation_rewards():
    beam = np.array([[5, 6, 7], [8, 9, 10], [11, 12, 13]])
    prior = np.array([[1, 2, 3], [7, 2, 3], [1, 4, 3]])
    # targets: user 0's is the beam's first, user 1's the beam's second, user 2's the prior's second
    m, curve = choose_beam_slots(beam, prior, np.array([5, 9, 4]), k=3, grid=(0, 1, 2, 3))
    assert curve == {0: 1 / 3, 1: 2 / 3, 2: 2 / 3, 3: 2 / 3}
    assert m == 1  # ties go to fewer beam slots
    assert choose_beam_slots(beam, prior, np.array([1, 2, 4]), k=3, grid=(0, 2))[0] == 0


def test_share_slots_keeps_the_beams_head_and_skips_duplicates():
    ranked = np.array([[3, 2, 0, 5], [1, -1, -1, -1]])
    cold_top = np.array([[2, 4, 1], [1, 4, -1]])
    # user 0: 2 is already in the beam's head, so 4 and 1 fill the two slots; user 1: a short beam, then 4
    assert share_slots(ranked, cold_top, 4, 2).tolist() == [[3, 2, 4, 1], [1, 4, -1, -1]]
    assert share_slots(ranked, None, 4, 0).tolist() == ranked.tolist()


# -- the retriever's candidates and dense head -----------------------------------------------

def test_candidates_restrict_what_the_retriever_returns():
    seqs, codes = synthetic(n_users=80)
    split = leave_one_out(seqs, SMALL.max_history)
    cfg = RetrieverConfig(**{**SMALL.to_dict(), "epochs": 2})
    full = GenerativeRetriever(codes, None, cfg, show_progress=False).fit(split)
    every = GenerativeRetriever(codes, None, cfg, show_progress=False, candidates=np.arange(len(codes)))
    every.model_ = full.model_
    assert np.array_equal(every.rank(split.test_history), full.rank(split.test_history))  # all candidates: the same ranking
    warm = np.arange(0, len(codes), 2)
    some = GenerativeRetriever(codes, None, cfg, show_progress=False, candidates=warm)
    some.model_ = full.model_
    ranked = some.rank(split.test_history)
    assert np.isin(ranked[ranked >= 0], warm).all() and (ranked >= 0).any()


def test_dense_head_learns_the_next_items_embedding():
    seqs, codes = synthetic(n_users=160)
    split = leave_one_out(seqs, SMALL.max_history)
    emb = np.random.default_rng(1).normal(size=(len(codes), 12)).astype(np.float32)
    cfg = RetrieverConfig(**{**SMALL.to_dict(), "epochs": 6, "dense_weight": 1.0})
    with pytest.raises(ConfigError, match="item_embeddings"):
        GenerativeRetriever(codes, None, cfg)
    model = GenerativeRetriever(codes, None, cfg, show_progress=False, item_embeddings=emb).fit(split)
    pred = model.predict_embedding(split.test_history)
    assert pred.shape == (len(split.test_target), 12)
    # the prediction is nearest its target far more often than chance (1 in 40)
    top = top_k_by_score(unit_rows(pred), unit_rows(emb), 1)[:, 0]
    assert (top == split.test_target).mean() > 0.3
    # the first code's log-probabilities: one distribution per history, the beam's first step
    logp = model.first_code_logprobs(split.test_history)
    assert logp.shape == (len(split.test_target), int(codes[:, 0].max()) + 1)
    assert np.all(np.exp(logp).sum(1) <= 1 + 1e-5)  # a slice of a softmax over the whole vocabulary
    assert (logp.argmax(1) == codes[split.test_target, 0]).mean() > 0.5  # the walk is learned: it knows the next block
    assert np.allclose(model.first_code_logprobs(split.test_history[:3]), logp[:3], atol=1e-5)  # batch-independent
    plain = GenerativeRetriever(codes, None, RetrieverConfig(**{**cfg.to_dict(), "dense_weight": 0.0}), show_progress=False)
    with pytest.raises(ConfigError, match="dense_weight"):
        plain.predict_embedding(split.test_history)


# -- the benchmark's tables ------------------------------------------------------------------

def bench():
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_downstream", Path(__file__).resolve().parents[1] / "benchmarks" / "downstream.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_summary_reports_warm_cold_all_and_asserts_construction_zeros(tmp_path):
    mod = bench()
    rng = np.random.default_rng(0)
    seqs = Sequences(users=list(range(200)), items=[rng.choice(30, 6, replace=False) for _ in range(200)])
    cold = np.array([0, 1, 2])
    split = cold_split(leave_one_out(seqs, 5), cold)
    is_cold = np.isin(split.test_target, cold)
    hit_all = np.zeros(200, dtype=np.int64)  # every target at rank 0
    miss_cold = np.where(is_cold, -1, 0)
    for seed in (0, 1):
        np.save(tmp_path / f"beauty-ours-seq-seed{seed}.npy", miss_cold)
        np.save(tmp_path / f"beauty-ours-seq+dense-share3-seed{seed}.npy", hit_all)
        np.save(tmp_path / f"beauty-sasrec-seed{seed}.npy", miss_cold)
    rows = mod.summarize("beauty", ["ours-seq", "sasrec"], [0, 1], split, 200, tmp_path, ("ours-seq+dense-share3",), cold)
    by = {r["arm"]: r for r in rows}
    assert set(by) == {"ours-seq", "ours-seq+dense-share3", "sasrec"}
    r = by["ours-seq"]
    assert r["recall@10_warm"] == 1.0 and r["recall@10_cold"] == 0.0 and r["users_cold"] == is_cold.sum()
    assert np.isclose(r["recall@10"], 1 - is_cold.mean(), atol=1e-5)
    assert r["recall@10_cold_minus_ours-seq+dense-share3"] == [-1.0, -1.0, -1.0]
    assert r["recall@10_warm_minus_ours-seq+dense-share3"] == [0.0, 0.0, 0.0]
    assert len(r["recall@10_by_popularity"]) == 5
    md = mod.markdown(rows, [], {"protocol": "p", "retriever": {}, "references": ["ours-seq+dense-share3"], "cold": {}})
    assert "R@10 cold − ours-seq+dense-share3" in md and "| beauty | sasrec | 0,1 | 1.0000 | 0.0000 |" in md
    np.save(tmp_path / "beauty-sasrec-seed1.npy", hit_all)  # an item-ID model that reached a cold item: a bug
    with pytest.raises(SystemExit, match="sasrec reached cold targets"):
        mod.summarize("beauty", ["sasrec"], [0, 1], split, 200, tmp_path, (), cold)
