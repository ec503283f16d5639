"""Constrained decoding: logit masks, and Hugging Face generate with tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_ids.decoding.constrain import mask_logits, mask_vocab_logits
from semantic_ids.decoding.hf import IDConstraint, token_map
from semantic_ids.decoding.trie import PrefixTrie
from semantic_ids.decoding.vocab import SIDVocab
from tests.test_decoding_trie import Reference, prefixes_at

SIZES = (6, 5, 4, 3)


@pytest.fixture(scope="module")
def ids():
    rng = np.random.default_rng(11)  # uniform, so that nodes branch widely
    codes = np.unique(np.column_stack([rng.integers(0, k, 80) for k in SIZES]), axis=0)
    codes = codes[rng.permutation(len(codes))]
    return codes, PrefixTrie.from_codes(codes, SIZES), SIDVocab(SIZES)


# -- constrain.py ----------------------------------------------------------------


def test_mask_logits_keeps_exactly_the_allowed_codes(ids):
    codes, trie, vocab = ids
    ref = Reference(codes)
    for t in range(len(SIZES)):
        p = prefixes_at(codes, SIZES, t, seed=t)
        logits = torch.randn(len(p), SIZES[t], generator=torch.Generator().manual_seed(t))
        out = mask_logits(trie, t, trie.nodes_of(p), logits)
        want = np.stack([ref.mask(r, SIZES[t]) for r in p.tolist()])
        assert np.array_equal(torch.isfinite(out).numpy(), want)
        assert torch.equal(out[torch.isfinite(out)], logits[torch.from_numpy(want)])
    with pytest.raises(ValueError, match="should be"):
        mask_logits(trie, 0, torch.zeros(2, dtype=torch.long), torch.zeros(2, SIZES[1]))


def test_mask_vocab_logits_in_vocab_order_and_through_a_token_map(ids):
    codes, trie, vocab = ids
    ref = Reference(codes)
    perm = np.random.default_rng(0).permutation(vocab.size + 7)[: vocab.size]  # ID tokens scattered among others
    for t in range(len(SIZES)):
        p = prefixes_at(codes, SIZES, t, seed=t)
        want = np.stack([ref.mask(r, SIZES[t]) for r in p.tolist()])
        nodes = trie.nodes_of(p)
        out = mask_vocab_logits(trie, vocab, t, nodes, torch.zeros(len(p), vocab.size))
        finite = torch.isfinite(out).numpy()
        lo = vocab.offsets[t]
        assert np.array_equal(finite[:, lo : lo + SIZES[t]], want)
        assert finite.sum() == want.sum()  # no other level's token survives
        mapped = mask_vocab_logits(trie, vocab, t, nodes, torch.zeros(len(p), vocab.size + 7), token_ids=perm)
        assert np.array_equal(torch.isfinite(mapped).numpy()[:, perm[lo : lo + SIZES[t]]], want)
        assert torch.isfinite(mapped).sum() == want.sum()


# -- hf.py -------------------------------------------------------------------------

N_OTHER = 12  # non-ID tokens in the model vocabulary: 0 = EOS/pad, 1 = BOS, the rest plain words
EOS, BOS = 0, 1


def model_ids(vocab: SIDVocab) -> np.ndarray:
    """ID tokens at shuffled positions after the plain tokens, so the map matters."""
    return N_OTHER + np.random.default_rng(3).permutation(vocab.size)


def gpt2(vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=vocab_size,
                     bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS)  # fmt: skip
    return GPT2LMHeadModel(cfg).eval()


def prompts(vocab: SIDVocab, codes: np.ndarray, ids_map: np.ndarray) -> torch.Tensor:
    """Two users' histories: BOS + two items' ID tokens each."""
    rows = [[BOS] + ids_map[vocab.token_ids(codes[[i, j]]).reshape(-1)].tolist() for i, j in ((0, 1), (5, 9))]
    return torch.tensor(rows)


def generate(model, prompt, **kw):
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), num_beams=8, num_return_sequences=8,
                         do_sample=False, eos_token_id=EOS, pad_token_id=EOS, return_dict_in_generate=True,
                         output_scores=True, **kw)  # fmt: skip
    return out.sequences, out.sequences_scores


def test_gpt2_beams_are_valid_ids_and_both_contracts_agree(ids):
    from transformers import LogitsProcessorList

    from semantic_ids.decoding.hf import SIDLogitsProcessor

    codes, trie, vocab = ids
    ids_map = model_ids(vocab)
    model = gpt2(N_OTHER + vocab.size)
    prompt = prompts(vocab, codes, ids_map)
    L = len(SIZES)
    c = IDConstraint(trie, vocab, prompt_length=prompt.shape[1], token_ids=ids_map, eos_token_id=EOS)

    with torch.no_grad():
        free, _ = generate(model, prompt, max_new_tokens=L)
        fast, fast_scores = generate(model, prompt, max_new_tokens=L + 2,
                                     logits_processor=LogitsProcessorList([SIDLogitsProcessor(c)]))  # fmt: skip
        slow, slow_scores = generate(model, prompt, max_new_tokens=L + 2, prefix_allowed_tokens_fn=c.prefix_allowed_tokens_fn)

    # unconstrained, the random model emits token sequences that are not IDs
    assert (c.ids_of(free) < 0).all(axis=1).any()
    # constrained, every beam is a distinct valid ID that maps to its item, then EOS
    got = c.ids_of(fast)
    assert (got >= 0).all()
    rows = trie.rows_of(got)
    assert (rows >= 0).all() and np.array_equal(codes[rows], got)
    for user in range(2):
        assert len({tuple(r) for r in got[user * 8 : user * 8 + 8].tolist()}) == 8
    assert (fast[:, prompt.shape[1] + L] == EOS).all()
    # the simple per-row contract gives the same beams and scores
    assert torch.equal(fast, slow)
    assert torch.allclose(fast_scores, slow_scores)


def test_processor_built_from_trie_arguments_and_max_new_tokens_stop(ids):
    from transformers import LogitsProcessorList

    from semantic_ids.decoding.hf import SIDLogitsProcessor

    codes, trie, vocab = ids
    ids_map = model_ids(vocab)
    model = gpt2(N_OTHER + vocab.size)
    prompt = prompts(vocab, codes, ids_map)
    proc = SIDLogitsProcessor(trie, vocab, prompt_length=prompt.shape[1], token_ids=ids_map)  # no EOS
    with torch.no_grad():
        seq, _ = generate(model, prompt, max_new_tokens=len(SIZES), logits_processor=LogitsProcessorList([proc]))
    assert seq.shape[1] == prompt.shape[1] + len(SIZES)
    assert (proc.constraint.ids_of(seq) >= 0).all()
    with pytest.raises(ValueError, match="max_new_tokens=4"):
        proc(torch.zeros(1, prompt.shape[1] + len(SIZES), dtype=torch.long), torch.zeros(1, N_OTHER + vocab.size))


def test_tokenizer_with_added_id_tokens_maps_like_the_explicit_map(ids):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    codes, trie, vocab = ids
    words = {"[EOS]": 0, "[BOS]": 1, "[UNK]": 2, "user": 3}
    tk = Tokenizer(WordLevel(words, unk_token="[UNK]"))
    tk.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", eos_token="[EOS]", bos_token="[BOS]")
    with pytest.raises(ValueError, match="<a_0>"):
        token_map(vocab, tok)
    tok.add_tokens(vocab.tokens)
    m = token_map(vocab, tok)
    assert m.tolist() == list(range(4, 4 + vocab.size))
    # the tokenizer reads an ID string as the tokens the map predicts
    enc = tok("<a_1><b_2><c_3><d_0>", add_special_tokens=False)["input_ids"]
    assert enc == m[vocab.token_ids(np.array([[1, 2, 3, 0]]))[0]].tolist()
    c = IDConstraint(trie, vocab, prompt_length=1, tokenizer=tok, eos_token_id=0)
    allowed = c.prefix_allowed_tokens_fn(0, torch.tensor([1]))
    assert allowed == m[sorted(set(codes[:, 0].tolist()))].tolist()


def test_t5_encoder_decoder_beams_are_valid(ids):
    from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

    from semantic_ids.decoding.hf import SIDLogitsProcessor

    codes, trie, vocab = ids
    ids_map = model_ids(vocab)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=N_OTHER + vocab.size, d_model=32, d_ff=64, d_kv=16, num_layers=1, num_heads=2,
                   decoder_start_token_id=EOS, pad_token_id=EOS, eos_token_id=EOS)  # fmt: skip
    model = T5ForConditionalGeneration(cfg).eval()
    prompt = prompts(vocab, codes, ids_map)
    c = IDConstraint(trie, vocab, prompt_length=1, token_ids=ids_map, eos_token_id=EOS)  # after decoder start
    with torch.no_grad():
        seq, _ = generate(model, prompt, max_new_tokens=len(SIZES) + 1,
                          logits_processor=LogitsProcessorList([SIDLogitsProcessor(c)]))  # fmt: skip
    got = c.ids_of(seq)
    assert (got >= 0).all() and np.array_equal(codes[trie.rows_of(got)], got)


def test_bad_maps_are_refused(ids):
    codes, trie, vocab = ids
    with pytest.raises(ValueError, match="distinct"):
        IDConstraint(trie, vocab, prompt_length=1, token_ids=np.zeros(vocab.size))
    with pytest.raises(ValueError, match="also an ID token"):
        IDConstraint(trie, vocab, prompt_length=1, eos_token_id=0)
    with pytest.raises(ValueError, match="level sizes"):
        IDConstraint(trie, SIDVocab((6, 5, 4, 9)), prompt_length=1)
