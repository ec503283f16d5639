"""The Hugging Face T5 recipe (pipelines/tiger_t5.py) at tiny size: it learns, every beam is an
export ID, the metrics are the shared functions' and a seed fixes the run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from semantic_ids.decoding import PrefixTrie, SIDVocab
from semantic_ids.errors import ConfigError, ExportError, NotFittedError
from semantic_ids.export.io import read_export
from semantic_ids.quality.downstream import check_holdout, leave_one_out, read_sequences
from semantic_ids.quality.downstream.metrics import recall_ndcg, target_ranks
from semantic_ids.quality.downstream.retriever import popularity_scores
from semantic_ids.quality.downstream.t5 import N_SPECIAL, T5RecipeConfig, T5Recommender, training_examples

ROOT = Path(__file__).resolve().parents[1]
CYCLE = 12  # users walk a fixed cycle of 12 items: a next item the model can learn from the history
TINY = dict(num_layers=1, num_heads=2, d_model=32, d_kv=16, d_ff=64, max_history=5, epochs=5, patience=5,
            batch_size=16, lr=1e-2, warmup_steps=5, beam=10, valid_users=0, eval_batch=64)  # fmt: skip


def recipe():
    spec = importlib.util.spec_from_file_location("tiger_t5", ROOT / "pipelines" / "tiger_t5.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_sequences(path: Path, ids, users: int = 120, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(len(ids))[:CYCLE]
    with open(path, "w") as f:
        for u in range(users):
            rows = cycle[(rng.integers(CYCLE) + np.arange(rng.integers(4, 9))) % CYCLE]
            f.write(json.dumps({"user_id": u, "items": [str(ids[r]) for r in rows]}) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tiny_export, tmp_path_factory):
    """The recipe run once on the tiny export: (result, out dir, sequences path)."""
    tmp = tmp_path_factory.mktemp("t5")
    seqs = write_sequences(tmp / "sequences.jsonl", read_export(tiny_export, model=False).ids)
    out = tmp / "out"
    res = recipe().run(tiny_export, seqs, out, T5RecipeConfig(**TINY), show_progress=False, n_boot=200)
    return res, out, seqs


@pytest.mark.slow  # trains the tiny T5 (about 10 s on 2 cores; the module trains it once)
def test_training_reduces_the_loss_and_learns_the_cycle(run):
    res, _, _ = run
    losses = [h["loss"] for h in res["t5"]["history"]]
    assert len(losses) == TINY["epochs"]
    assert losses[-1] < 0.5 * losses[0], losses
    # a learnt cycle: the next item follows from the history; popularity only knows the 12 items
    assert res["t5"]["ndcg@10"]["mean"] > res["popularity"]["ndcg@10"]["mean"] + 0.15


@pytest.mark.slow  # trains the tiny T5 (about 10 s on 2 cores; the module trains it once)
def test_every_generated_id_is_an_export_id(run, tiny_export):
    from transformers import LogitsProcessorList

    from semantic_ids.decoding.hf import SIDLogitsProcessor

    _, out, seqs = run
    ex = read_export(tiny_export, model=False)
    model = T5Recommender(ex.codes, SIDVocab.from_export(ex).level_sizes, T5RecipeConfig(**TINY), show_progress=False)
    from transformers import T5ForConditionalGeneration

    model.model_ = T5ForConditionalGeneration.from_pretrained(out / "model").eval()  # the saved model, no pickle
    split = leave_one_out(read_sequences(seqs, ex.ids), TINY["max_history"])
    x, mask = model.encoder_inputs(split.test_history[:16])
    with torch.no_grad():
        gen = model.model_.generate(input_ids=x, attention_mask=mask, num_beams=10, num_return_sequences=10,
                                    max_new_tokens=model.n_levels, do_sample=False, output_scores=True,
                                    return_dict_in_generate=True,
                                    logits_processor=LogitsProcessorList([SIDLogitsProcessor(model.constraint)]))  # fmt: skip
    seq, scores = gen.sequences, gen.sequences_scores.reshape(16, 10)
    assert torch.isfinite(scores).all() and (scores[:, 1:] <= scores[:, :-1]).all()  # best first, as rank assumes
    codes = model.vocab.codes_of(seq[:, 1:].numpy() - N_SPECIAL)  # after the decoder start; raises on a wrong level
    valid = {tuple(r) for r in ex.codes.tolist()}
    assert all(tuple(r) in valid for r in codes.tolist())
    # rank: distinct items per user, none missing, the saved vocabulary is the export's
    ranked = model.rank(split.test_history)
    assert ranked.shape == (len(split.test_target), 10) and (ranked >= 0).all()
    assert all(len(set(r)) == 10 for r in ranked.tolist())
    assert SIDVocab.from_json((out / "model" / "sid_vocab.json").read_text()) == model.vocab
    assert PrefixTrie.from_codes(ex.codes[ranked[0]], model.vocab.level_sizes).n_items == 10


@pytest.mark.slow  # trains the tiny T5 (about 10 s on 2 cores; the module trains it once)
def test_metrics_are_the_shared_functions(run, tiny_export):
    res, out, seqs = run
    ranks = np.load(out / "ranks.npy", allow_pickle=False)
    per_user = recall_ndcg(ranks)
    for k, v in per_user.items():
        assert res["t5"][k]["mean"] == pytest.approx(v.mean())
        assert res["t5"][k]["low"] <= v.mean() <= res["t5"][k]["high"]
    split = leave_one_out(read_sequences(seqs, read_export(tiny_export, model=False).ids), TINY["max_history"])
    assert len(ranks) == len(split.test_target)
    pop = popularity_scores(split, 200)
    assert res["popularity"]["recall@10"]["mean"] == pytest.approx(pop["recall@10"].mean())
    assert res["t5_minus_popularity"]["recall@10"]["mean"] == pytest.approx(per_user["recall@10"].mean() - pop["recall@10"].mean())
    assert json.loads((out / "metrics.json").read_text())["t5"]["recall@10"] == res["t5"]["recall@10"]


@pytest.mark.slow  # trains the tiny T5 (about 10 s on 2 cores; the module trains it once)
def test_a_seed_fixes_the_run(run, tiny_export):
    res, _, seqs = run
    ex = read_export(tiny_export, model=False)
    split = leave_one_out(read_sequences(seqs, ex.ids), TINY["max_history"])
    again = T5Recommender(ex.codes, SIDVocab.from_export(ex).level_sizes, T5RecipeConfig(**TINY), show_progress=False).fit(split)
    assert [h["loss"] for h in again.history_] == [h["loss"] for h in res["t5"]["history"]]
    assert [h["valid_recall@10"] for h in again.history_] == [h["valid_recall@10"] for h in res["t5"]["history"]]
    other = T5Recommender(ex.codes, None, T5RecipeConfig(**{**TINY, "seed": 1, "epochs": 1}), show_progress=False).fit(split)
    assert other.history_[0]["loss"] != res["t5"]["history"][0]["loss"]


def test_training_pairs_and_sampled_epochs(tiny_export):
    hist, targets = training_examples([np.array([3, 4, 5, 6]), np.array([7])], max_history=2)
    assert [h.tolist() for h in hist] == [[3], [3, 4], [4, 5]] and targets.tolist() == [4, 5, 6]
    with pytest.raises(ConfigError, match="num_layers=0"):
        T5RecipeConfig(num_layers=0)
    with pytest.raises(ConfigError, match="sample=-1"):
        T5RecipeConfig(sample=-1)
    with pytest.raises(NotFittedError, match="fit"):
        T5Recommender(read_export(tiny_export, model=False).codes, show_progress=False).rank([np.array([0])])


def test_ids_that_saw_the_targets_are_refused():
    seen = {"collab_items": 10, "config": {"collab": {"holdout_last": 0}}}
    with pytest.raises(ExportError, match="holdout_last=0"):
        check_holdout("ids/", seen)
    check_holdout("ids/", {"collab_items": 10, "config": {"collab": {"holdout_last": 2}}})
    check_holdout("ids/", {})  # text only: nothing to leak


def test_cli_refuses_an_unknown_config_field(tiny_export, tmp_path, capsys):
    seqs = write_sequences(tmp_path / "s.jsonl", read_export(tiny_export, model=False).ids)
    code = recipe().main(["--export", str(tiny_export), "--sequences", str(seqs), "--out", str(tmp_path / "o"),
                          "--config", '{"layers": 2}'])  # fmt: skip
    assert code == 2 and "layers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
