"""Hugging Face ``generate`` adapters that keep every generated semantic ID valid.

Where the ID starts: the model's ``input_ids`` at every step are the prompt
followed by the tokens generated so far, so the ID's depth is
``input_ids.shape[1] - prompt_length``:

- decoder-only model: ``prompt_length`` = the width of the (padded) prompt
  batch passed to ``generate`` (left padding keeps it the same for every row);
- encoder-decoder model (T5): the decoder starts from ``decoder_start_token_id``,
  so ``prompt_length = 1``.

At depth ``t < L`` only the level-``t`` tokens the trie allows after the tokens
generated so far stay possible. Once the ID is complete (``t >= L``) only
``eos_token_id`` is allowed; without an EOS token, stop generation with
``max_new_tokens = L``. A row whose generated tokens are not a valid prefix
(possible only if the constraint was not applied from the start) also gets
EOS only, or nothing when there is no EOS.

Two contracts, same beams:

- :class:`SIDLogitsProcessor` (``logits_processor=LogitsProcessorList([...])``):
  batched, one gather and scatter per step for all beams;
- :meth:`IDConstraint.prefix_allowed_tokens_fn` (``prefix_allowed_tokens_fn=``):
  the simple per-row contract of ``transformers``, slower.

``transformers`` is imported only when :class:`SIDLogitsProcessor` is first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .constrain import level_columns
from .trie import PrefixTrie
from .vocab import SIDVocab
from ..errors import VocabError


def token_map(vocab: SIDVocab, tokenizer: Any) -> np.ndarray:
    """(vocab.size,) int64: the tokenizer's id of each ID token (after
    ``tokenizer.add_tokens(vocab.tokens)``); raises naming a token it lacks."""
    ids = tokenizer.convert_tokens_to_ids(vocab.tokens)
    unk = getattr(tokenizer, "unk_token_id", None)
    for tok, i in zip(vocab.tokens, ids):
        if i is None or (unk is not None and i == unk):
            raise VocabError(f"the tokenizer has no token {tok!r}; call tokenizer.add_tokens(vocab.tokens) first")
    return np.asarray(ids, dtype=np.int64)


class IDConstraint:
    """Which token may come next, for a batch of sequences that end in a partial ID.

    Parameters
    ----------
    trie : the valid IDs.
    vocab : their token vocabulary (same level sizes).
    prompt_length : tokens before the ID in every row of ``input_ids`` (see the module docstring).
    token_ids : (vocab.size,) the model's token id of each ID token; or give ``tokenizer``.
        Default: ID tokens are model tokens ``0..vocab.size-1`` in ``vocab`` order.
    tokenizer : a tokenizer holding ``vocab.tokens`` (see :func:`token_map`).
    eos_token_id : the only token allowed once the ID is complete.
    """

    def __init__(
        self,
        trie: PrefixTrie,
        vocab: SIDVocab,
        *,
        prompt_length: int,
        token_ids: Sequence[int] | np.ndarray | None = None,
        tokenizer: Any = None,
        eos_token_id: int | None = None,
    ) -> None:
        if tuple(vocab.level_sizes) != tuple(trie.level_sizes):
            raise VocabError(f"vocab level sizes {vocab.level_sizes} differ from the trie's {trie.level_sizes}")
        if prompt_length < 0:
            raise ValueError(f"prompt_length={prompt_length} should be >= 0")
        if token_ids is None:
            token_ids = token_map(vocab, tokenizer) if tokenizer is not None else np.arange(vocab.size)
        ids = np.asarray(token_ids, dtype=np.int64)
        if ids.shape != (vocab.size,) or (ids < 0).any() or len(np.unique(ids)) != len(ids):
            raise VocabError(f"token_ids should give {vocab.size} distinct non-negative token ids, got shape {ids.shape}")
        if eos_token_id is not None and eos_token_id in set(ids.tolist()):
            raise VocabError(f"eos_token_id={eos_token_id} is also an ID token")
        self.trie, self.vocab, self.prompt_length, self.eos_token_id = trie, vocab, int(prompt_length), eos_token_id
        self.token_ids = torch.from_numpy(ids)
        # model token id -> position in vocab.tokens, -1 for tokens that are not ID tokens
        self._inverse = torch.full((int(ids.max()) + 1,), -1, dtype=torch.int64)
        self._inverse[self.token_ids] = torch.arange(vocab.size)
        self._offsets = torch.from_numpy(vocab.offsets)
        self._sizes = torch.tensor(vocab.level_sizes)
        self._columns = [level_columns(vocab, d, ids) for d in range(vocab.n_levels)]
        self._on: dict[torch.device, tuple] = {}

    def _tables(self, device: torch.device) -> tuple:
        """The trie and lookup tables on ``device``, moved once and cached."""
        if device not in self._on:
            self._on[device] = (self.trie.to(device), self._inverse.to(device), self._offsets.to(device),
                                self._sizes.to(device), [c.to(device) for c in self._columns])  # fmt: skip
        return self._on[device]

    def nodes(self, input_ids: torch.Tensor) -> tuple[int, torch.Tensor]:
        """(depth, (B,) trie nodes) of the partial IDs that end ``input_ids`` (B, cur)."""
        depth = input_ids.shape[1] - self.prompt_length
        if depth < 0:
            raise ValueError(f"input_ids have {input_ids.shape[1]} tokens, fewer than prompt_length={self.prompt_length}")
        trie, inverse, offsets, sizes, _ = self._tables(input_ids.device)
        nodes = torch.zeros(input_ids.shape[0], dtype=torch.int64, device=input_ids.device)
        for d in range(min(depth, trie.n_levels)):  # one batched step per generated level
            tok = input_ids[:, self.prompt_length + d]
            idx = inverse[tok.clamp(0, inverse.numel() - 1)]
            idx = torch.where((tok >= 0) & (tok < inverse.numel()), idx, -1)
            code = idx - offsets[d]
            # a token of another level, or no ID token at all, is not a child: code -1
            code = torch.where((idx >= 0) & (code >= 0) & (code < sizes[d]), code, -1)
            nodes = trie.advance(d, nodes, code)
        return depth, nodes

    def allowed(self, input_ids: torch.Tensor, width: int) -> torch.Tensor:
        """(B, width) bool: the tokens allowed next after each row of ``input_ids`` (B, cur)."""
        depth, nodes = self.nodes(input_ids)
        trie, _, _, _, columns = self._tables(input_ids.device)
        mask = torch.zeros(input_ids.shape[0], width, dtype=torch.bool, device=input_ids.device)
        if depth < trie.n_levels:
            mask[:, columns[depth]] = trie.next_mask(depth, nodes)
            done = nodes < 0
        else:
            done = torch.ones_like(nodes, dtype=torch.bool)
            if self.eos_token_id is None:
                raise ValueError(
                    f"the ID is complete after {trie.n_levels} tokens and no eos_token_id was given; "
                    f"generate with max_new_tokens={trie.n_levels} or pass eos_token_id"
                )
        if self.eos_token_id is not None:
            mask[:, self.eos_token_id] = done
        return mask

    def prefix_allowed_tokens_fn(self, batch_id: int, input_ids: torch.Tensor) -> list[int]:
        """The ``generate(prefix_allowed_tokens_fn=...)`` contract: allowed next token
        ids for one sequence ``input_ids`` (cur,)."""
        width = max(int(self._inverse.numel()), (self.eos_token_id or 0) + 1)
        mask = self.allowed(input_ids.reshape(1, -1), width)
        return torch.nonzero(mask[0]).reshape(-1).tolist()

    def ids_of(self, sequences: torch.Tensor) -> np.ndarray:
        """Generated sequences (B, prompt_length + L [+ EOS ...]) -> (B, L) codes, -1 rows
        where the tokens after the prompt are not a complete valid ID."""
        seq = sequences[:, self.prompt_length : self.prompt_length + self.trie.n_levels].cpu()
        out = np.full((seq.shape[0], self.trie.n_levels), -1, dtype=np.int64)
        if seq.shape[1] < self.trie.n_levels:
            return out
        idx = self._inverse[seq.clamp(0, self._inverse.numel() - 1)]
        idx = torch.where((seq >= 0) & (seq < self._inverse.numel()), idx, -1).numpy()
        ok = (idx >= 0).all(axis=1)
        if ok.any():
            levels, codes = self.vocab.split(idx[ok])
            good = (levels == np.arange(self.trie.n_levels)).all(axis=1)
            rows = np.flatnonzero(ok)[good]
            out[rows] = codes[good]
        out[self.trie.rows_of(np.where(out < 0, 0, out)) < 0] = -1
        return out


def _processor_class() -> type:
    from transformers import LogitsProcessor

    class SIDLogitsProcessor(LogitsProcessor):
        """Batched ``LogitsProcessor``: ``-inf`` for every token an :class:`IDConstraint` forbids.

        Build it from an :class:`IDConstraint`, or with that class's arguments:
        ``SIDLogitsProcessor(trie, vocab, prompt_length=..., eos_token_id=...)``.
        """

        def __init__(self, constraint: IDConstraint | PrefixTrie, *args: Any, **kwargs: Any) -> None:
            self.constraint = constraint if isinstance(constraint, IDConstraint) else IDConstraint(constraint, *args, **kwargs)

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            """input_ids (B, cur), scores (B, vocab) -> scores with forbidden tokens at ``-inf``."""
            allowed = self.constraint.allowed(input_ids, scores.shape[1])
            return scores.masked_fill(~allowed, float("-inf"))

    return SIDLogitsProcessor


def __getattr__(name: str) -> Any:
    # SIDLogitsProcessor subclasses transformers' class, so it is made on first use
    # (PEP 562): importing this module does not import transformers.
    if name == "SIDLogitsProcessor":
        cls = _processor_class()
        cls.__module__ = __name__
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
