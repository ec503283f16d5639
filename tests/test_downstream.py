"""The downstream retriever: sequences and split, metrics, model, beam search, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from semantic_ids.decoding.trie import PrefixTrie
from semantic_ids.quality.downstream import (
    SequenceError,
    Sequences,
    evaluate_downstream,
    leave_one_out,
    paired_bootstrap,
    read_sequences,
    recall_ndcg,
    target_ranks,
    training_windows,
)
from semantic_ids.quality.downstream.beam import beam_search
from semantic_ids.quality.downstream.model import BOS, GPT, PAD, GPTConfig
from semantic_ids.quality.downstream.retriever import GenerativeRetriever, RetrieverConfig, popularity_scores, training_batch


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- sequences -------------------------------------------------------------------------------

def test_read_sequences_maps_items_to_rows(tmp_path):
    p = write_jsonl(tmp_path / "s.jsonl", [{"user_id": "u1", "items": ["b", "a", "c"]}, {"user_id": "u2", "items": ["c", "c", "a", "b"]}])
    s = read_sequences(p, ["a", "b", "c"])
    assert s.users == ["u1", "u2"]
    assert [x.tolist() for x in s.items] == [[1, 0, 2], [2, 2, 0, 1]]


def test_read_sequences_matches_int_catalog_ids_given_as_strings(tmp_path):
    p = write_jsonl(tmp_path / "s.jsonl", [{"user_id": 1, "items": ["10", "20", "30"]}])
    assert read_sequences(p, np.array([10, 20, 30])).items[0].tolist() == [0, 1, 2]


def test_read_sequences_reports_every_problem_with_counts(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(
        json.dumps({"user_id": "u1", "items": ["a", "b", "zz"]}) + "\n"
        + json.dumps({"user_id": "u1", "items": ["a", "b", "c"]}) + "\n"
        + json.dumps({"user_id": "u2", "items": []}) + "\n"
        + json.dumps({"user_id": "u3", "items": ["a", "b"]}) + "\n"
        + "not json\n"
        + json.dumps({"user_id": "u4", "items": ["yy", "zz", "a"]}) + "\n"
    )
    with pytest.raises(SequenceError) as e:
        read_sequences(p, ["a", "b", "c"])
    msg = str(e.value)
    assert "1 line(s) are not JSON objects" in msg and "line 5" in msg
    assert "1 duplicate user id(s): 'u1'" in msg
    assert "1 empty sequence(s) (users 'u2')" in msg
    assert "shorter than 3 items" in msg and "'u3'" in msg
    assert "2 item id(s) not in the catalog, in 3 interaction(s)" in msg and "'zz'" in msg and "'yy'" in msg


def test_missing_sequences_file_is_named(tmp_path):
    with pytest.raises(SequenceError, match="nope.jsonl"):
        read_sequences(tmp_path / "nope.jsonl", ["a"])


def test_leave_one_out_never_trains_on_a_target():
    seqs = Sequences(users=[0, 1], items=[np.arange(10), np.array([5, 6, 7])])
    sp = leave_one_out(seqs, max_history=4)
    assert sp.test_target.tolist() == [9, 7] and sp.valid_target.tolist() == [8, 6]
    assert [t.tolist() for t in sp.train] == [list(range(8)), [5]]
    assert sp.valid_history[0].tolist() == [4, 5, 6, 7]  # the last 4 before the validation target
    assert sp.test_history[0].tolist() == [5, 6, 7, 8]  # ends with the validation item
    # the training part is exactly what precedes the validation target
    assert all(np.array_equal(tr, s[:-2]) for tr, s in zip(sp.train, seqs.items))


@pytest.mark.parametrize("n,h", [(1, 3), (2, 3), (4, 3), (5, 3), (9, 3), (23, 20), (60, 20)])
def test_training_windows_make_each_item_a_target_once(n, h):
    part = np.arange(n) + 100
    wins = training_windows([part], h)
    assert all(2 <= len(w) <= h + 1 for w in wins)
    targets = np.concatenate([w[1:] for w in wins]) if wins else np.zeros(0, int)
    assert sorted(targets.tolist()) == part[1:].tolist()
    for w in wins:  # a window is a contiguous run of the part
        start = int(w[0] - 100)
        assert w.tolist() == part[start:start + len(w)].tolist()


# -- metrics ---------------------------------------------------------------------------------

def test_recall_ndcg_by_hand():
    ranked = np.array([[3, 1, 2], [5, 6, 7], [9, -1, -1]])
    ranks = target_ranks(ranked, np.array([1, 8, 9]))
    assert ranks.tolist() == [1, -1, 0]
    m = recall_ndcg(ranks, ks=(1, 2))
    assert m["recall@1"].tolist() == [0, 0, 1] and m["recall@2"].tolist() == [1, 0, 1]
    assert np.allclose(m["ndcg@2"], [1 / np.log2(3), 0, 1])


def test_drop_seen_removes_history_items_and_moves_the_rest_up():
    from semantic_ids.quality.downstream.metrics import drop_seen

    ranked = np.array([[3, 1, 2, 7], [5, -1, -1, -1], [4, 4, 8, 9]])
    got = drop_seen(ranked, [np.array([1, 7]), np.array([], dtype=np.int64), np.array([9])])
    assert got.tolist() == [[3, 2, -1, -1], [5, -1, -1, -1], [4, 4, 8, -1]]
    # a target behind a seen item moves up one rank
    assert target_ranks(got, np.array([2, 5, 8])).tolist() == [1, 0, 2]


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(0)
    a = rng.random(5000)
    d, lo, hi = paired_bootstrap(a, a)
    assert d == lo == hi == 0.0
    d, lo, hi = paired_bootstrap(a + 0.1, a)  # a constant shift is exact under pairing
    assert np.isclose(d, 0.1) and np.isclose(lo, 0.1) and np.isclose(hi, 0.1)
    b = rng.random(5000)
    d, lo, hi = paired_bootstrap(a, b)
    assert lo < d < hi and lo < 0 < hi  # independent draws of one distribution: 0 inside


# -- model -----------------------------------------------------------------------------------

def tiny_model(vocab=20, positions=32, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, max_positions=positions, n_layer=2, n_head=2, d_model=16, d_ff=32, dropout=0.0)).eval()


def test_padding_does_not_change_a_sequence():
    m = tiny_model()
    seq = torch.tensor([[BOS, 5, 6, 7, 8]])
    alone = m.logits(m(seq)[0])
    padded = torch.tensor([[BOS, 5, 6, 7, 8, PAD, PAD, PAD], [BOS, 9, 9, 9, 9, 9, 9, 9]])
    both = m.logits(m(padded)[0])
    assert torch.allclose(alone[0], both[0, :5], atol=1e-5)


def test_kv_cache_gives_the_same_logits_as_a_full_pass():
    m = tiny_model()
    seqs = [[BOS, 4, 5, 6, 7], [BOS, 3, 3, 4, 5, 9]]
    ref = [m.logits(m(torch.tensor([s]))[0])[0] for s in seqs]
    # prefill the first 3 and 4 tokens (right-padded), then feed one token at a time
    prompt = torch.tensor([[BOS, 4, 5, PAD], [BOS, 3, 3, 4]])
    lengths = [3, 4]
    _, cache, valid = m(prompt)
    for t in range(2):
        step = torch.tensor([[seqs[0][3 + t]], [seqs[1][4 + t]]])
        hidden, cache, valid = m(step, cache, valid)
        out = m.logits(hidden[:, -1])
        assert torch.allclose(out[0], ref[0][lengths[0] + t], atol=1e-5)
        assert torch.allclose(out[1], ref[1][lengths[1] + t], atol=1e-5)


# -- beam search -----------------------------------------------------------------------------

def exact_scores(model, prompt, codes, offsets):
    """Log-probability of every item's tokens after ``prompt``, by full forward passes."""
    out = []
    for row in codes:
        toks = torch.tensor([list(prompt) + [int(offsets[i] + c) for i, c in enumerate(row)]])
        with torch.no_grad():
            logp = torch.log_softmax(model.logits(model(toks)[0][0]), -1)
        n = len(prompt)
        out.append(sum(float(logp[n - 1 + i, toks[0, n + i]]) for i in range(len(row))))
    return np.array(out)


def test_beam_search_with_a_full_beam_is_exact_and_valid():
    rng = np.random.default_rng(1)
    codes = np.unique(rng.integers(0, 3, (40, 3)), axis=0)  # ragged trie over 3 x 3 x 3
    trie = PrefixTrie.from_codes(codes, (3, 3, 3))
    offsets = np.array([2, 5, 8])
    model = tiny_model(vocab=11, positions=16)
    prompts = [[BOS, 2, 6, 9], [BOS, 4, 5, 8, 3, 7, 10]]
    x = torch.from_numpy(np.stack([np.pad(p, (0, 7 - len(p))) for p in prompts]))
    rows, scores = beam_search(model, x, torch.tensor([len(p) for p in prompts]), trie, offsets, beam=len(codes))
    for b, p in enumerate(prompts):
        ref = exact_scores(model, p, codes, offsets)
        assert sorted(rows[b].tolist()) == sorted(range(len(codes)))  # every item exactly once
        assert np.allclose(scores[b].numpy(), ref[rows[b].numpy()], atol=1e-4)
        assert np.all(np.diff(scores[b].numpy()) <= 1e-6)  # best first
        assert rows[b, 0] == np.argmax(ref)


@pytest.mark.parametrize("beam", [1, 2, 4, 7])
def test_narrow_beam_returns_distinct_items_with_exact_scores(beam):
    rng = np.random.default_rng(1)
    codes = np.unique(rng.integers(0, 3, (40, 3)), axis=0)
    trie = PrefixTrie.from_codes(codes, (3, 3, 3))
    offsets = np.array([2, 5, 8])
    model = tiny_model(vocab=11, positions=16)
    prompt = [BOS, 2, 6, 9]
    rows, scores = beam_search(model, torch.tensor([prompt]), torch.tensor([4]), trie, offsets, beam=beam)
    ref = exact_scores(model, prompt, codes, offsets)
    assert len(set(rows[0].tolist())) == beam and (rows[0] >= 0).all()
    assert np.allclose(scores[0].numpy(), ref[rows[0].numpy()], atol=1e-4)
    # a wider beam never finds a worse best item
    wide, wide_scores = beam_search(model, torch.tensor([prompt]), torch.tensor([4]), trie, offsets, beam=len(codes))
    assert float(wide_scores[0, 0]) >= float(scores[0, 0]) - 1e-6


def test_narrow_beam_returns_valid_items_and_pads_when_the_catalog_is_small():
    codes = np.array([[0, 0], [0, 1], [2, 0]])
    trie = PrefixTrie.from_codes(codes, (3, 2))
    model = tiny_model(vocab=7, positions=8)
    x = torch.tensor([[BOS, 2, 5], [BOS, 4, PAD]])
    rows, scores = beam_search(model, x, torch.tensor([3, 2]), trie, np.array([2, 5]), beam=5)
    assert rows.shape == (2, 5)
    assert (rows[:, :3] >= 0).all() and (rows[:, 3:] == -1).all() and torch.isinf(scores[:, 3:]).all()


def test_training_batch_supervises_every_item_after_the_first():
    L = 3
    items = [np.array([[10, 11, 12], [20, 21, 22]]), np.array([[30, 31, 32], [40, 41, 42], [50, 51, 52]])]
    windows = [np.concatenate([[BOS], it.reshape(-1)]) for it in items]
    x, y, keep = training_batch(windows, L)
    assert int(keep.sum()) == sum((len(it) - 1) * L for it in items)
    assert y[keep].tolist() == [20, 21, 22, 40, 41, 42, 50, 51, 52]  # targets: items 2.. of each window
    assert (x[~(x != PAD)] == PAD).all() and x[0, 0] == BOS and x[1, 0] == BOS
    assert torch.equal(x[keep], torch.tensor([12, 20, 21, 32, 40, 41, 42, 50, 51]))  # each target's previous token


# -- training --------------------------------------------------------------------------------

def synthetic(n_items=40, n_users=240, seed=0):
    """Users walk the catalog in steps of +1: the next item is fully determined."""
    rng = np.random.default_rng(seed)
    items = [np.array([(s + j) % n_items for j in range(rng.integers(4, 9))]) for s in rng.integers(0, n_items, n_users)]
    codes = np.stack([np.arange(n_items) // 8, np.arange(n_items) % 8], 1)
    return Sequences(users=list(range(n_users)), items=items), codes


SMALL = RetrieverConfig(d_model=32, n_head=2, d_ff=64, n_layer=1, dropout=0.0, epochs=8, patience=2, batch_size=16,
                        lr=5e-3, warmup_steps=5, beam=10, valid_users=0, max_history=5)


@pytest.mark.slow
def test_retriever_learns_a_pattern_popularity_cannot():
    seqs, codes = synthetic()
    split = leave_one_out(seqs, SMALL.max_history)
    model = GenerativeRetriever(codes, None, SMALL, show_progress=False).fit(split)
    m = model.score(split.test_history, split.test_target)
    pop = popularity_scores(split, len(codes))
    assert m["invalid"].max() == 0.0
    assert m["recall@10"].mean() > 0.9 and m["recall@10"].mean() > 3 * pop["recall@10"].mean()
    assert model.history_[0]["loss"] > model.history_[-1]["loss"]
    assert 1 <= model.best_epoch_ <= len(model.history_)
    # early stopping: training ended `patience` evaluations after the best one, or at the epoch cap
    assert len(model.history_) in (model.best_epoch_ + SMALL.patience, SMALL.epochs)


def test_evaluations_during_warmup_do_not_count_against_patience():
    """A small catalog has few steps an epoch: early stopping must not end training in warm-up."""
    seqs, codes = synthetic(n_users=60)
    split = leave_one_out(seqs, SMALL.max_history)
    # lr so small that validation cannot improve after epoch 1: every later epoch is "bad"
    frozen = {**SMALL.to_dict(), "epochs": 4, "patience": 1, "lr": 1e-12}
    steps = len(GenerativeRetriever(codes, None, SMALL, show_progress=False)._batches(
        np.array([len(w) for w in training_windows(split.train, SMALL.max_history)]), np.random.default_rng(0)))
    in_warmup = GenerativeRetriever(codes, None, RetrieverConfig(**{**frozen, "warmup_steps": 4 * steps + 1}),
                                    show_progress=False).fit(split)
    assert len(in_warmup.history_) == 4  # never out of warm-up: patience never ran out
    after = GenerativeRetriever(codes, None, RetrieverConfig(**{**frozen, "warmup_steps": 1}), show_progress=False).fit(split)
    assert len(after.history_) == 2  # epoch 2 is not better than epoch 1: stopped with patience 1


def test_fit_keeps_the_best_epochs_weights():
    seqs, codes = synthetic(n_users=120)
    split = leave_one_out(seqs, SMALL.max_history)
    cfg = RetrieverConfig(**{**SMALL.to_dict(), "epochs": 4, "patience": 4, "lr": 2e-2})
    model = GenerativeRetriever(codes, None, cfg, show_progress=False).fit(split)
    best = model.history_[model.best_epoch_ - 1]["valid_recall@10"]
    assert best == max(h["valid_recall@10"] for h in model.history_)
    again = model.score(split.valid_history, split.valid_target)["recall@10"].mean()  # valid_users=0: all of them
    assert np.isclose(again, best)


def test_training_is_deterministic_and_ranking_batch_independent():
    seqs, codes = synthetic(n_users=80)
    split = leave_one_out(seqs, SMALL.max_history)
    cfg = RetrieverConfig(**{**SMALL.to_dict(), "epochs": 2})
    a = GenerativeRetriever(codes, None, cfg, show_progress=False).fit(split)
    b = GenerativeRetriever(codes, None, cfg, show_progress=False).fit(split)
    ra = a.rank(split.test_history)
    assert np.array_equal(ra, b.rank(split.test_history))
    small_batches = GenerativeRetriever(codes, None, RetrieverConfig(**{**cfg.to_dict(), "eval_batch": 3}), show_progress=False)
    small_batches.model_ = a.model_
    assert np.array_equal(ra, small_batches.rank(split.test_history))


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="uplicate"):
        GenerativeRetriever(np.array([[0, 1], [0, 1]]), None, SMALL)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="d_model"):
        RetrieverConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="beam"):
        RetrieverConfig(beam=0)
    with pytest.raises(ValueError, match="preset"):
        RetrieverConfig.preset("huge")
    assert RetrieverConfig.preset("tiger", epochs=3) == RetrieverConfig.tiger(epochs=3)


def test_evaluate_downstream_end_to_end(tmp_path):
    seqs, codes = synthetic(n_users=120)
    ids = np.array([f"i{k}" for k in range(len(codes))])
    p = write_jsonl(tmp_path / "s.jsonl", [{"user_id": u, "items": ids[s].tolist()} for u, s in zip(seqs.users, seqs.items)])
    res = evaluate_downstream(ids, codes, p, RetrieverConfig(**{**SMALL.to_dict(), "epochs": 3}), show_progress=False, n_boot=200)
    assert res["protocol"]["users"] == 120 and res["ids"]["invalid_id_rate"] == 0.0
    r = res["ids"]["recall@10"]
    assert r["low"] <= r["mean"] <= r["high"]
    assert set(res["ids_minus_popularity"]) == {"recall@5", "ndcg@5", "recall@10", "ndcg@10"}


# -- the CLI -----------------------------------------------------------------------------------

@pytest.fixture
def small_export(tmp_path, small_catalog, tiny_fitted):
    """The session's fitted ``small_catalog``, saved for this test."""
    return tiny_fitted.save(tmp_path / "ids"), small_catalog["item_id"].tolist()


@pytest.mark.slow
def test_cli_evaluate_downstream(tmp_path, small_export, capsys):
    from semantic_ids.cli.main import main

    out, ids = small_export
    rng = np.random.default_rng(0)
    rows = [{"user_id": u, "items": [ids[(s + j) % len(ids)] for j in range(6)]} for u, s in enumerate(rng.integers(0, len(ids), 80))]
    seq = write_jsonl(tmp_path / "seq.jsonl", rows)
    assert main(["evaluate", str(out), "--sequences", str(seq), "--downstream", "--epochs", "1", "--json", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["protocol"]["users"] == 80 and res["ids"]["invalid_id_rate"] == 0.0 and len(res["ids"]["history"]) == 1
    assert res["ids"]["still_improving"] is True  # one epoch of one: its best is its last
    # printed: the settings before training, and the best epoch flagged when it was the last
    assert main(["evaluate", str(out), "--sequences", str(seq), "--downstream", "--epochs", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert text.index("retriever settings") < text.index("recall@10") and "warm-up 100 steps" in text
    assert "1 / 1 (the last: still improving; try --epochs 2)" in text
    # a sequences file naming an unknown item fails with exit 2 and names it, before any training
    bad = write_jsonl(tmp_path / "bad.jsonl", rows + [{"user_id": "x", "items": [ids[0], "nope", ids[1]]}])
    assert main(["evaluate", str(out), "--sequences", str(bad), "--downstream"]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--downstream"]) == 2  # no --sequences
    assert "--sequences" in capsys.readouterr().err


def test_cli_decoding_files(tmp_path, small_export, capsys):
    from semantic_ids.cli.main import main
    from semantic_ids.decoding.formats import verify_decoding_files

    out, ids = small_export
    dec = tmp_path / "dec"
    assert main(["decoding-files", str(out), "--out", str(dec), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert {"sid2pid.json", "codes.npy", "vocab.json", "trie.safetensors"} <= set(written)
    verify_decoding_files(dec)
    sid2pid = json.loads((dec / "sid2pid.json").read_text())
    assert sorted(v for vs in sid2pid.values() for v in vs) == sorted(ids)
    assert main(["decoding-files", str(out), "--out", str(dec), "--formats", "sid2pid"]) == 0  # its own output: replaced
    assert sorted(p.name for p in dec.iterdir() if not p.name.startswith(".")) == ["decoding_files.json", "sid2pid.json"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["decoding-files", str(out), "--out", str(mine)]) == 2
    assert "mine" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep me"
    assert main(["decoding-files", str(out), "--out", str(tmp_path / "x"), "--formats", "pt"]) == 2


# -- issue 24: the downstream command shows its settings and its training --------------------------

def test_settings_rows_say_how_a_run_differs_from_the_readme_benchmark():
    from semantic_ids.cli.commands import downstream_settings_rows

    rows = dict(downstream_settings_rows(RetrieverConfig(), "small"))
    assert "at most 10 epochs, warm-up 100 steps" in rows["retriever settings"]
    assert rows["README's Amazon Beauty run (small preset)"] == "the same settings"
    ml = rows["README's MovieLens-100K run (small preset)"]
    assert ml == "epochs 20 (here 10), warmup_steps 50 (here 100); run with --epochs 20 --warmup-steps 50 to match"
    rows = dict(downstream_settings_rows(RetrieverConfig(epochs=20, warmup_steps=50, seed=3), "small"))
    assert rows["README's MovieLens-100K run (small preset)"] == "the same settings"  # the seed is not a setting to match
    assert rows["README's Amazon Beauty run (small preset)"].startswith("epochs 10 (here 20)")


def test_progress_bar_shows_epoch_total_and_validation_and_a_last_best_epoch_warns(capsys, caplog):
    seqs, codes = synthetic(n_users=60)
    split = leave_one_out(seqs, SMALL.max_history)
    cfg = RetrieverConfig(**{**SMALL.to_dict(), "epochs": 2, "patience": 5, "lr": 1e-12})  # epoch 2 cannot beat epoch 1
    with caplog.at_level("WARNING", logger="semantic_ids.quality.downstream.retriever"):
        model = GenerativeRetriever(codes, None, cfg, show_progress=True).fit(split)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    assert f"valid R@10={model.history_[0]['valid_recall@10']:.4f}" in err  # epoch 2's bar shows epoch 1's recall
    assert model.best_epoch_ == 1 and not model.still_improving and "still improving" not in caplog.text
    cfg = RetrieverConfig(**{**SMALL.to_dict(), "epochs": 1})
    with caplog.at_level("WARNING", logger="semantic_ids.quality.downstream.retriever"):
        model = GenerativeRetriever(codes, None, cfg, show_progress=False).fit(split)
    assert model.still_improving and "the best epoch was the last (1 of at most 1)" in caplog.text
