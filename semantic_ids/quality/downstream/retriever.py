"""The generative retriever: train on users' sequences of item tokens, rank by beam search.

An item is a row of codes (N, L): semantic IDs (L levels, the collision level
included) or, for the SASRec-style reference, one code per item (L = 1, one
level of N codes). Training is next-token cross-entropy over every item of every
training window after its first (teacher forcing), AdamW with warm-up and cosine
decay, and early stopping on validation Recall@10 measured with the same beam
search used for the test. Optionally (``dense_weight``, after LIGER) a linear head
also learns to predict the next item's text embedding, which ranks items the beam
does not reach (:mod:`.coldstart`); ``candidates`` limits what the ranking returns.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...decoding.trie import PrefixTrie
from .beam import beam_search
from .metrics import recall_ndcg, target_ranks
from .model import BOS, GPT, N_SPECIAL, PAD, GPTConfig
from .sequences import Split, training_windows
from ...errors import ConfigError, SequenceError

log = logging.getLogger(__name__)


# The settings behind the README's downstream numbers (benchmarks/downstream.py reads them from
# here): the small preset, and for MovieLens-100K more epochs and a shorter warm-up, so that its
# few users train for a comparable number of steps. A user's run prints how it differs from these.
BENCHMARK_SETTINGS = {"Amazon Beauty": {}, "MovieLens-100K": {"epochs": 20, "warmup_steps": 50}}


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of windows of similar length (less padding), in shuffled order.

    Windows are shuffled, then sorted by length within chunks of 50 batches, so a
    batch holds similar lengths while which windows meet still varies by epoch.
    """
    order = rng.permutation(len(lengths))
    chunk = 50 * batch_size
    batches = []
    for i in range(0, len(order), chunk):
        part = order[i:i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


@dataclass(frozen=True)
class RetrieverConfig:
    """Model size, training budget and decoding of the generative retriever.

    The defaults are the small CPU configuration of ``benchmarks/downstream.py``;
    ``RetrieverConfig.tiger()`` is TIGER-sized (for a GPU).
    """

    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int = 256
    dropout: float = 0.1
    max_history: int = 20
    epochs: int = 10  # at most; early stopping may end sooner
    patience: int = 2  # evaluations after warm-up without a better validation Recall@10
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    beam: int = 20
    valid_users: int = 1000  # users sampled (seeded) for early stopping; 0 = all
    eval_batch: int = 512  # prompts per beam-search batch
    seed: int = 0
    device: str = "cpu"
    # weight of a second loss (LIGER, Yang et al. 2024): a linear head predicts the next item's text
    # embedding (cosine loss); it ranks cold items (coldstart.dense_rerank). 0: no head, as before
    dense_weight: float = 0.0

    @classmethod
    def tiger(cls, **kw) -> "RetrieverConfig":
        """TIGER-like size (Rajput et al. 2023 use a 4+4-layer encoder-decoder, d 128, 6 heads, ff 1024)."""
        base = dict(n_layer=8, n_head=8, d_model=128, d_ff=1024, epochs=200, patience=10, batch_size=256, valid_users=0)
        base.update(kw)
        return cls(**base)

    @classmethod
    def full(cls, **kw) -> "RetrieverConfig":
        """Trained to convergence, as the field trains SASRec (Kang & McAuley 2018; RecBole's SASRec): d 64, two
        blocks of two heads, histories of 50, dropout 0.5, lr 1e-3, up to 200 epochs with patience 10 on
        validation Recall@10 of 4,000 seeded users. On Beauty, SASRec reaches test Recall@10 0.0780 so (seed 0;
        dropout 0.3, lr 2e-3, patience 5: 0.0754; and weight decay 0: 0.0749)."""
        base = dict(n_layer=2, n_head=2, d_model=64, d_ff=256, dropout=0.5, max_history=50, epochs=200, patience=10,
                    lr=1e-3, warmup_steps=200, valid_users=4000)
        base.update(kw)
        return cls(**base)

    @classmethod
    def preset(cls, name: str, **kw) -> "RetrieverConfig":
        """``"small"`` (the defaults: the quick check), ``"full"`` (:meth:`full`) or ``"tiger"`` (:meth:`tiger`),
        with ``kw`` fields over it."""
        presets = {"small": cls, "full": cls.full, "tiger": cls.tiger}
        if name not in presets:
            raise ConfigError(f"retriever preset {name!r} should be one of {sorted(presets)}")
        return presets[name](**kw)

    def __post_init__(self):
        for name in ("n_layer", "n_head", "d_model", "d_ff", "max_history", "epochs", "patience", "batch_size", "beam", "eval_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"RetrieverConfig.{name}={v!r} should be a positive integer")
        if self.d_model % self.n_head:
            raise ConfigError(f"RetrieverConfig.d_model={self.d_model} should be divisible by n_head={self.n_head}")
        if not self.dense_weight >= 0:
            raise ConfigError(f"RetrieverConfig.dense_weight={self.dense_weight} should be >= 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"RetrieverConfig.dropout={self.dropout} should be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: "RetrieverConfig") -> dict[str, tuple]:
        """``{field: (this value, other's value)}`` for the fields where they differ."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (v, theirs[k]) for k, v in mine.items() if v != theirs[k]}


def _pad(seqs: list[np.ndarray], value: int = PAD) -> np.ndarray:
    """(B, T) right-padded."""
    T = max(len(s) for s in seqs)
    out = np.full((len(seqs), T), value, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def training_batch(windows: list[np.ndarray], n_levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, next-token targets and loss mask for windows of tokens (BOS + items' tokens).

    Position p predicts token p + 1; the loss covers the tokens of every item but the
    window's first (its tokens sit at 1..L, so targets start at position L).

    Returns
    -------
    x, y : (B, T) int64 right-padded; keep : (B, T) bool.
    """
    x = torch.from_numpy(_pad([w[:-1] for w in windows]))
    y = torch.from_numpy(_pad([w[1:] for w in windows]))
    keep = torch.from_numpy(_pad([np.arange(len(w) - 1) >= n_levels for w in windows], value=0).astype(bool))
    return x, y, keep


class GenerativeRetriever:
    """A decoder-only model over item tokens, ranked by trie-constrained beam search.

    Parameters
    ----------
    codes : (N, L) int64, each item's codes; rows must be unique (semantic IDs with
        the collision level, or ``np.arange(N)[:, None]`` for plain item IDs).
    level_sizes : codes per level (defaults to max + 1 per level).
    config : RetrieverConfig.
    item_embeddings : (N, D) text embeddings, the targets of the dense head (``config.dense_weight > 0``).
    candidates : rows the ranking may return (default all): an item-ID model cannot return an item
        it never saw trained (the cold-start protocol gives it the warm items only).
    """

    def __init__(self, codes: np.ndarray, level_sizes=None, config: RetrieverConfig | None = None, *, show_progress: bool = True,
                 item_embeddings: np.ndarray | None = None, candidates: np.ndarray | None = None):
        self.config = config or RetrieverConfig()
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2:
            raise ValueError(f"codes should be (items, levels), got shape {codes.shape}")
        if self.config.dense_weight > 0 and (item_embeddings is None or len(item_embeddings) != len(codes)):
            raise ConfigError(f"dense_weight={self.config.dense_weight} needs item_embeddings with one row per item ({len(codes)})")
        self.item_embeddings = item_embeddings
        self.candidates = None if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
        if self.candidates is None:
            self.trie = PrefixTrie.from_codes(codes, level_sizes)  # raises on duplicate IDs
        else:  # the trie holds the candidates only; the token space stays the whole catalog's
            sizes = list(level_sizes) if level_sizes is not None else (codes.max(0) + 1).tolist()
            self.trie = PrefixTrie.from_codes(codes[self.candidates], sizes)
        if self.config.device != "cpu":
            self.trie = self.trie.to(self.config.device)
        sizes = np.asarray(self.trie.level_sizes, dtype=np.int64)
        self.token_offsets = N_SPECIAL + np.concatenate([[0], np.cumsum(sizes)[:-1]])  # (L,)
        self.item_tokens = codes + self.token_offsets  # (N, L) model token ids
        self.n_levels = codes.shape[1]
        self.show_progress = show_progress
        self.history_: list[dict] = []

    # -- data ---------------------------------------------------------------------------
    def _prompts(self, histories: list[np.ndarray]) -> list[np.ndarray]:
        return [np.concatenate([[BOS], self.item_tokens[h].reshape(-1)]) for h in histories]

    def _model(self) -> GPT:
        c = self.config
        cfg = GPTConfig(
            vocab_size=int(self.token_offsets[-1] + self.trie.level_sizes[-1]),
            max_positions=1 + (c.max_history + 1) * self.n_levels,
            n_layer=c.n_layer, n_head=c.n_head, d_model=c.d_model, d_ff=c.d_ff, dropout=c.dropout,
        )
        return GPT(cfg).to(c.device)

    # -- training -----------------------------------------------------------------------
    def fit(self, split: Split) -> "GenerativeRetriever":
        """Train on ``split.train`` with early stopping on validation Recall@10."""
        c = self.config
        if split.max_history != c.max_history:
            raise ValueError(f"split.max_history={split.max_history} differs from config.max_history={c.max_history}")
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        row_windows = training_windows(split.train, c.max_history)
        windows = [np.concatenate([[BOS], self.item_tokens[w].reshape(-1)]) for w in row_windows]
        if not windows:
            raise SequenceError("no training windows: every user's training part has fewer than 2 items")
        lengths = np.array([len(w) for w in windows])
        pool = np.arange(len(split.valid_target)) if split.valid_users is None else np.asarray(split.valid_users, dtype=np.int64)
        n_valid = len(pool)
        pick = pool[np.sort(rng.choice(n_valid, c.valid_users, replace=False))] if 0 < c.valid_users < n_valid else pool
        self.history_ = []
        self.model_ = model = self._model()
        params = list(model.parameters())
        if c.dense_weight > 0:  # created after the model, so the model's initialisation is the same with or without it
            emb = torch.from_numpy(np.ascontiguousarray(self.item_embeddings, dtype=np.float32)).to(c.device)
            self.head_ = torch.nn.Linear(c.d_model, emb.shape[1]).to(c.device)
            params += list(self.head_.parameters())
        opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, betas=(0.9, 0.98))
        steps_per_epoch = math.ceil(len(windows) / c.batch_size) + 1  # the schedule's length: one step more than the batches
        total = steps_per_epoch * c.epochs

        def lr_at(step):
            if step < c.warmup_steps:
                return (step + 1) / c.warmup_steps
            frac = (step - c.warmup_steps) / max(1, total - c.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        best, best_state, bad, step = -1.0, None, 0, 0
        L = self.n_levels
        start = time.perf_counter()
        for epoch in range(1, c.epochs + 1):
            model.train()
            total_loss, count = 0.0, 0
            last = {"valid R@10": f"{self.history_[-1]['valid_recall@10']:.4f}", "best": f"{best:.4f}"} if self.history_ else {}
            bar = tqdm(self._batches(lengths, rng), desc=f"epoch {epoch}/{c.epochs}", leave=False, disable=not self.show_progress)
            for idx in bar:
                batch = [windows[j] for j in idx]
                x, y, keep = (t.to(c.device) for t in training_batch(batch, L))
                hidden, _, _ = model(x)
                loss = F.cross_entropy(model.logits(hidden[keep]), y[keep])
                if c.dense_weight > 0:
                    loss = loss + c.dense_weight * self._dense_loss(hidden, [row_windows[j] for j in idx], emb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                step += 1
                n = int(keep.sum())
                total_loss += loss.item() * n
                count += n
                bar.set_postfix(loss=f"{loss.item():.3f}", **last)  # validation figures: the previous epoch's
            valid = self.score([split.valid_history[i] for i in pick], split.valid_target[pick])
            r10 = float(valid["recall@10"].mean())
            self.history_.append({"epoch": epoch, "loss": total_loss / max(1, count), "valid_recall@10": r10,
                                  "valid_ndcg@10": float(valid["ndcg@10"].mean()), "seconds": round(time.perf_counter() - start, 1)})
            log.info("epoch %d: loss %.4f, validation R@10 %.4f", epoch, total_loss / max(1, count), r10)
            if r10 > best:
                best, bad = r10, 0
                best_state = copy.deepcopy(model.state_dict())
                best_head = copy.deepcopy(self.head_.state_dict()) if c.dense_weight > 0 else None
                self.best_epoch_ = epoch
            elif step > c.warmup_steps:  # evaluations during warm-up do not count against patience
                bad += 1
                if bad >= c.patience:
                    break
        model.load_state_dict(best_state)
        if c.dense_weight > 0:
            self.head_.load_state_dict(best_head)
        self.train_seconds_ = time.perf_counter() - start
        if self.still_improving:
            log.warning("the best epoch was the last (%d of at most %d): validation Recall@10 was still improving; "
                        "more epochs may give a better model", self.best_epoch_, c.epochs)
        return self

    @property
    def still_improving(self) -> bool:
        """Training stopped at ``config.epochs`` with its best validation Recall@10 on the last epoch."""
        return bool(self.history_) and self.best_epoch_ == len(self.history_) == self.config.epochs

    def _dense_loss(self, hidden: torch.Tensor, rows: list[np.ndarray], emb: torch.Tensor) -> torch.Tensor:
        """Mean 1 - cosine between the head's prediction and each trained item's text embedding.

        Item i of a window (i >= 1) is predicted at position i * L, the last token of item i - 1:
        the position that also predicts its first code.
        """
        L = self.n_levels
        b = torch.from_numpy(np.concatenate([np.full(len(w) - 1, j) for j, w in enumerate(rows)])).to(hidden.device)
        p = torch.from_numpy(np.concatenate([np.arange(1, len(w)) * L for w in rows])).to(hidden.device)
        t = torch.from_numpy(np.concatenate([w[1:] for w in rows])).to(hidden.device)
        return (1 - F.cosine_similarity(self.head_(hidden[b, p]), emb[t], dim=-1)).mean()

    def _batches(self, lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        return length_batches(lengths, self.config.batch_size, rng)

    # -- ranking ------------------------------------------------------------------------
    @torch.no_grad()
    def rank(self, histories: list[np.ndarray], k: int | None = None) -> np.ndarray:
        """(U, k) item rows, best first, by trie-constrained beam search (k <= beam; -1 pads)."""
        c = self.config
        k = c.beam if k is None else k
        if k > c.beam:
            raise ConfigError(f"k={k} should be <= beam={c.beam}")
        model = self.model_
        model.eval()
        prompts = self._prompts(histories)
        out = np.empty((len(prompts), k), dtype=np.int64)
        # prompts of similar length share a batch: less padding, and results do not depend on it
        order = np.argsort([len(p) for p in prompts], kind="stable")
        for i in range(0, len(order), c.eval_batch):
            idx = order[i:i + c.eval_batch]
            x = torch.from_numpy(_pad([prompts[j] for j in idx])).to(c.device)
            lengths = torch.tensor([len(prompts[j]) for j in idx], device=c.device)
            rows, _ = beam_search(model, x, lengths, self.trie, self.token_offsets, c.beam)
            out[idx] = rows[:, :k].cpu().numpy()
        if self.candidates is not None:  # trie leaves are positions in the candidates
            out = np.where(out >= 0, self.candidates[np.maximum(out, 0)], -1)
        return out

    @torch.no_grad()
    def _last_states(self, histories: list[np.ndarray]):
        """Yield (positions, (b, d_model) final hidden state at each history's last token), batch by batch."""
        c = self.config
        self.model_.eval()
        prompts = self._prompts(histories)
        for i in range(0, len(prompts), c.eval_batch):
            idx = np.arange(i, min(i + c.eval_batch, len(prompts)))
            x = torch.from_numpy(_pad([prompts[j] for j in idx])).to(c.device)
            last = torch.tensor([len(prompts[j]) - 1 for j in idx], device=c.device)
            hidden, _, _ = self.model_(x)
            yield idx, hidden[torch.arange(len(idx), device=c.device), last]

    @torch.no_grad()
    def predict_embedding(self, histories: list[np.ndarray]) -> np.ndarray:
        """(U, D) the dense head's prediction of each history's next item's text embedding."""
        if self.config.dense_weight <= 0:
            raise ConfigError("predict_embedding needs a retriever trained with dense_weight > 0")
        out = np.empty((len(histories), self.head_.out_features), dtype=np.float32)
        for idx, state in self._last_states(histories):
            out[idx] = self.head_(state).cpu().numpy()
        return out

    @torch.no_grad()
    def first_code_logprobs(self, histories: list[np.ndarray]) -> np.ndarray:
        """(U, V1) log-probability of each first-level code as the next item's, given each history.

        The beam's first step: log-softmax over the whole vocabulary at the history's last token,
        then the first level's codes. Every item, seen in training or not, has a first code, so
        this is the model's prior over where in the ID space the next item lies (:mod:`.coldstart`).
        """
        off, V = int(self.token_offsets[0]), int(self.trie.level_sizes[0])
        out = np.empty((len(histories), V), dtype=np.float32)
        for idx, state in self._last_states(histories):
            out[idx] = torch.log_softmax(self.model_.logits(state).float(), -1)[:, off:off + V].cpu().numpy()
        return out

    def score(self, histories: list[np.ndarray], targets: np.ndarray, ks=(5, 10)) -> dict[str, np.ndarray]:
        """Per-user Recall@k / NDCG@k arrays, plus ``invalid`` (1 where a returned slot is no item)."""
        ranked = self.rank(histories)
        m = recall_ndcg(target_ranks(ranked, targets), ks)
        m["invalid"] = (ranked < 0).mean(1).astype(np.float64)
        return m


def popularity_ranking(split: Split, n_items: int, k: int) -> np.ndarray:
    """(k,) item rows by descending count in the training parts (ties: lower row first)."""
    counts = np.bincount(np.concatenate(split.train) if split.train else np.zeros(0, np.int64), minlength=n_items)
    return np.argsort(-counts, kind="stable")[:k]


def popularity_scores(split: Split, n_items: int, ks=(5, 10)) -> dict[str, np.ndarray]:
    """Per-user test metrics of ranking every item by its training count."""
    top = popularity_ranking(split, n_items, max(ks))
    return recall_ndcg(target_ranks(np.broadcast_to(top, (len(split.test_target), len(top))), split.test_target), ks)
