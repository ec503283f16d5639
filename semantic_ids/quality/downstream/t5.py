"""TIGER on Hugging Face: ``T5ForConditionalGeneration`` trained on semantic IDs, ranked by ``generate``.

TIGER (Rajput et al. 2023) is an encoder-decoder: the encoder reads a user's history
as ID tokens, the decoder emits the next item's ID one level at a time. This module
is that model as a ``transformers`` user writes it, with the project's decoding layer
doing the parts that are specific to semantic IDs:

- :class:`~semantic_ids.decoding.SIDVocab` lays out the tokens: model token
  ``N_SPECIAL + vocab.token_ids(codes)`` for an item, after T5's PAD (also the
  decoder start) and EOS;
- :class:`~semantic_ids.decoding.PrefixTrie` holds the valid IDs;
- :class:`~semantic_ids.decoding.hf.SIDLogitsProcessor` keeps ``model.generate``'s
  beam search on them, so every returned beam is an item.

Encoder input: the history's item tokens (at most ``max_history`` items, oldest
first), then EOS. Labels: the target item's L tokens (no EOS: an ID has a fixed
length, so ``generate`` stops after ``max_new_tokens = L``). Training examples are
every item of a user's training part after its first, with the items before it as
history (TIGER's sliding window), so every training item is a target once per epoch
as in the decoder-only retriever (:mod:`.retriever`). Evaluation follows
:mod:`.retriever`: validation Recall@10 after each epoch for early stopping, beam
``beam``, metrics from :mod:`.metrics`.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ...decoding.hf import IDConstraint
from ...decoding.trie import PrefixTrie
from ...decoding.vocab import SIDVocab
from ...errors import ConfigError, NotFittedError, SequenceError
from .metrics import recall_ndcg, target_ranks
from .retriever import length_batches
from .sequences import Split

log = logging.getLogger(__name__)

PAD, EOS, N_SPECIAL = 0, 1, 2  # T5's conventions: PAD is also the decoder start token


@dataclass(frozen=True)
class T5RecipeConfig:
    """Model size, training budget and decoding of the T5 recipe.

    The defaults train on a CPU in minutes an epoch on Amazon Beauty; ``tiger()`` is
    the paper's size (4 + 4 layers, d_model 128, 6 heads of 64, MLP 1024, dropout 0.1).
    """

    num_layers: int = 2  # encoder layers; the decoder has as many
    num_heads: int = 4
    d_model: int = 64
    d_kv: int = 16
    d_ff: int = 256
    dropout: float = 0.1
    max_history: int = 20
    epochs: int = 30  # at most; early stopping may end sooner
    patience: int = 3  # evaluations after warm-up without a better validation Recall@10
    batch_size: int = 256
    sample: int = 0  # training pairs per epoch, a fresh seeded draw from all of them each epoch; 0 = all
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    beam: int = 20
    valid_users: int = 1000  # users sampled (seeded) for early stopping; 0 = all
    eval_batch: int = 256  # prompts per generate call
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def tiger(cls, **kw) -> "T5RecipeConfig":
        """TIGER's size (Rajput et al. 2023, section 4.1), for a GPU."""
        base = dict(num_layers=4, num_heads=6, d_model=128, d_kv=64, d_ff=1024, epochs=200, patience=10, valid_users=0)
        return cls(**{**base, **kw})

    def __post_init__(self):
        for name in ("num_layers", "num_heads", "d_model", "d_kv", "d_ff", "max_history", "epochs", "patience",
                     "batch_size", "beam", "eval_batch", "sample", "valid_users"):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name in ("sample", "valid_users") else 1):
                raise ConfigError(f"T5RecipeConfig.{name}={v!r} should be a {'non-negative' if name in ('sample', 'valid_users') else 'positive'} integer")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"T5RecipeConfig.dropout={self.dropout} should be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


def t5_model(vocab: SIDVocab, config: T5RecipeConfig):
    """A randomly initialised ``T5ForConditionalGeneration`` over PAD, EOS and the ID tokens."""
    from transformers import T5Config, T5ForConditionalGeneration

    c = config
    cfg = T5Config(vocab_size=N_SPECIAL + vocab.size, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff, num_layers=c.num_layers,
                   num_decoder_layers=c.num_layers, num_heads=c.num_heads, dropout_rate=c.dropout,
                   pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)  # fmt: skip
    return T5ForConditionalGeneration(cfg).to(c.device)


def training_examples(train: list[np.ndarray], max_history: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Every (history, next item) pair of the training parts: histories of at most ``max_history`` items.

    Returns
    -------
    histories : list of int64 item-row arrays, each non-empty; targets : (E,) int64 item rows.
    """
    histories, targets = [], []
    for s in train:
        for t in range(1, len(s)):
            histories.append(s[max(0, t - max_history):t])
            targets.append(s[t])
    return histories, np.asarray(targets, dtype=np.int64)


class T5Recommender:
    """TIGER's encoder-decoder as ``transformers.T5ForConditionalGeneration``, on unique item codes.

    Parameters
    ----------
    codes : (N, L) int64 unique IDs, one row per item (an export's codes, collision level included).
    level_sizes : codes per level (e.g. ``SIDVocab.from_export(...).level_sizes``; default max + 1).
    config : T5RecipeConfig.
    """

    def __init__(self, codes: np.ndarray, level_sizes=None, config: T5RecipeConfig | None = None, *, show_progress: bool = True):
        self.config = config or T5RecipeConfig()
        self.vocab = SIDVocab.from_codes(codes, level_sizes)
        self.trie = PrefixTrie.from_codes(codes, self.vocab.level_sizes)  # raises on duplicate IDs
        self.token_ids = N_SPECIAL + np.arange(self.vocab.size)  # model token of each vocab token
        self.item_tokens = self.vocab.token_ids(codes) + N_SPECIAL  # (N, L)
        # the decoder's input_ids start with decoder_start_token_id: the ID begins at position 1
        self.constraint = IDConstraint(self.trie, self.vocab, prompt_length=1, token_ids=self.token_ids)
        self.n_levels = self.vocab.n_levels
        self.show_progress = show_progress
        self.history_: list[dict] = []

    # -- data ---------------------------------------------------------------------------
    def encoder_inputs(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) right-padded ``input_ids`` (history tokens, EOS) and their ``attention_mask``."""
        seqs = [np.append(self.item_tokens[h].reshape(-1), EOS) for h in histories]
        x = np.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=np.int64)
        for i, s in enumerate(seqs):
            x[i, :len(s)] = s
        x = torch.from_numpy(x)
        return x, (x != PAD).long()

    # -- training -----------------------------------------------------------------------
    def fit(self, split: Split) -> "T5Recommender":
        """Train on ``split.train`` with early stopping on validation Recall@10; keep the best epoch."""
        from transformers import get_cosine_schedule_with_warmup

        c = self.config
        if split.max_history != c.max_history:
            raise ConfigError(f"split.max_history={split.max_history} differs from T5RecipeConfig.max_history={c.max_history}")
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        histories, targets = training_examples(split.train, c.max_history)
        if not len(targets):
            raise SequenceError("no training examples: every user's training part has fewer than 2 items")
        lengths = np.array([len(h) for h in histories])
        n_valid = len(split.valid_target)
        pick = np.sort(rng.choice(n_valid, c.valid_users, replace=False)) if 0 < c.valid_users < n_valid else np.arange(n_valid)
        self.model_ = model = t5_model(self.vocab, c)
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay, betas=(0.9, 0.98))
        per_epoch = min(c.sample, len(targets)) if c.sample else len(targets)
        total = -(-per_epoch // c.batch_size) * c.epochs
        sched = get_cosine_schedule_with_warmup(opt, c.warmup_steps, total)
        best, best_state, bad, step = -1.0, None, 0, 0
        self.history_ = []
        start = time.perf_counter()
        for epoch in range(1, c.epochs + 1):
            model.train()
            total_loss, count = 0.0, 0
            drawn = np.sort(rng.choice(len(targets), per_epoch, replace=False)) if per_epoch < len(targets) else np.arange(len(targets))
            batches = [drawn[b] for b in length_batches(lengths[drawn], c.batch_size, rng)]
            bar = tqdm(batches, desc=f"epoch {epoch}/{c.epochs}", leave=False, disable=not self.show_progress)
            for idx in bar:
                x, mask = self.encoder_inputs([histories[j] for j in idx])
                labels = torch.from_numpy(self.item_tokens[targets[idx]])  # (B, L)
                loss = model(input_ids=x.to(c.device), attention_mask=mask.to(c.device), labels=labels.to(c.device)).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                total_loss += loss.item() * len(idx)
                count += len(idx)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            valid = self.score([split.valid_history[i] for i in pick], split.valid_target[pick])
            r10 = float(valid["recall@10"].mean())
            self.history_.append({"epoch": epoch, "loss": total_loss / count, "valid_recall@10": r10,
                                  "valid_ndcg@10": float(valid["ndcg@10"].mean()), "seconds": round(time.perf_counter() - start, 1)})
            log.info("epoch %d/%d: loss %.4f, validation R@10 %.4f", epoch, c.epochs, total_loss / count, r10)
            if r10 > best:
                best, bad = r10, 0
                best_state = copy.deepcopy(model.state_dict())
                self.best_epoch_ = epoch
            elif step > c.warmup_steps:  # evaluations during warm-up do not count against patience
                bad += 1
                if bad >= c.patience:
                    break
        if self.best_epoch_ == len(self.history_) == c.epochs:
            log.warning("the best validation Recall@10 came at the last epoch (%d): training was still improving; "
                        "raise epochs", c.epochs)  # fmt: skip
        model.load_state_dict(best_state)
        self.train_seconds_ = time.perf_counter() - start
        return self

    # -- ranking ------------------------------------------------------------------------
    @torch.no_grad()
    def rank(self, histories: list[np.ndarray], k: int | None = None) -> np.ndarray:
        """(U, k) item rows, best first, by ``model.generate`` beam search under the trie (k <= beam; -1 pads).

        A beam whose score is ``-inf`` (fewer valid IDs below the history than the beam width) is no
        item and comes back as -1.
        """
        from transformers import LogitsProcessorList

        from ...decoding.hf import SIDLogitsProcessor

        c = self.config
        k = c.beam if k is None else k
        if k > c.beam:
            raise ConfigError(f"k={k} should be <= beam={c.beam}")
        if not hasattr(self, "model_"):
            raise NotFittedError("this T5Recommender is not trained yet: call fit(split) first")
        model = self.model_
        model.eval()
        processors = LogitsProcessorList([SIDLogitsProcessor(self.constraint)])
        out = np.full((len(histories), k), -1, dtype=np.int64)
        order = np.argsort([len(h) for h in histories], kind="stable")  # similar lengths share a batch
        for i in range(0, len(order), c.eval_batch):
            idx = order[i:i + c.eval_batch]
            x, mask = self.encoder_inputs([histories[j] for j in idx])
            gen = model.generate(input_ids=x.to(c.device), attention_mask=mask.to(c.device), num_beams=c.beam,
                                 num_return_sequences=c.beam, max_new_tokens=self.n_levels, do_sample=False,
                                 logits_processor=processors, output_scores=True, return_dict_in_generate=True)  # fmt: skip
            rows = self.trie.rows_of(self.constraint.ids_of(gen.sequences))  # (B * beam,), -1 = no item
            rows[~np.isfinite(gen.sequences_scores.cpu().numpy())] = -1
            out[idx] = rows.reshape(len(idx), c.beam)[:, :k]
        return out

    def score(self, histories: list[np.ndarray], targets: np.ndarray, ks=(5, 10)) -> dict[str, np.ndarray]:
        """Per-user Recall@k / NDCG@k arrays, plus ``invalid`` (the share of returned slots that are no item)."""
        ranked = self.rank(histories)
        m = recall_ndcg(target_ranks(ranked, targets), ks)
        m["invalid"] = (ranked < 0).mean(1).astype(np.float64)
        return m

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model_.parameters())

    def save(self, path) -> None:
        """``save_pretrained`` (safetensors + config.json) and the vocabulary (``sid_vocab.json``): no pickle.

        Reload with ``T5ForConditionalGeneration.from_pretrained(path)`` and
        ``SIDVocab.from_json(open(path / "sid_vocab.json").read())``.
        """
        from pathlib import Path

        path = Path(path)
        self.model_.save_pretrained(path)
        (path / "sid_vocab.json").write_text(self.vocab.to_json())
