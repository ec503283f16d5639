"""Batched logit masking for constrained decoding of semantic IDs.

Two spaces of logits:

- one level's codes, ``(B, level_sizes[depth])``: what a model with one output
  head per level produces (TIGER's decoder, Rajput et al. 2023);
- a token vocabulary, ``(B, W)``: a language model whose vocabulary holds the
  ID tokens (``SIDVocab.tokens``, possibly among others). Only the tokens of
  level ``depth`` that the trie allows stay finite.

Everything is a gather or scatter over the batch; nothing loops over rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .trie import PrefixTrie
from .vocab import SIDVocab
from ..errors import VocabError


def mask_logits(trie: PrefixTrie, depth: int, nodes: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Fill the logits of codes the trie does not allow with ``-inf``.

    Parameters
    ----------
    trie : the valid IDs, on the same device as ``logits``.
    depth : codes already generated, 0 <= depth < L.
    nodes : (B,) int64 trie nodes at ``depth`` (-1 for a dead prefix: all ``-inf``).
    logits : (B, level_sizes[depth]) float.

    Returns
    -------
    torch.Tensor
        (B, level_sizes[depth]), a new tensor; ``logits`` is not modified.
    """
    size = trie.level_sizes[depth]
    if logits.ndim != 2 or logits.shape[1] != size:
        raise ValueError(f"logits at depth {depth} should be (batch, {size}), got {tuple(logits.shape)}")
    allowed = trie.next_mask(depth, nodes)
    return logits.masked_fill(~allowed, float("-inf"))


def level_columns(vocab: SIDVocab, depth: int, token_ids: Sequence[int] | np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
    """(level_sizes[depth],) int64: the logit column of each code of level ``depth``.

    Without ``token_ids`` the columns are ``vocab.offsets[depth] + code`` (logits
    over exactly the ID tokens); with ``token_ids`` (vocab.size,) mapping each ID
    token to a model token id, those ids.
    """
    start, size = int(vocab.offsets[depth]), vocab.level_sizes[depth]
    if token_ids is None:
        return torch.arange(start, start + size, dtype=torch.int64)
    ids = torch.as_tensor(np.asarray(token_ids) if not isinstance(token_ids, torch.Tensor) else token_ids)
    if ids.shape != (vocab.size,):
        raise ValueError(f"token_ids should map all {vocab.size} ID tokens, got shape {tuple(ids.shape)}")
    return ids[start : start + size].to(torch.int64)


def vocab_mask(trie: PrefixTrie, depth: int, nodes: torch.Tensor, columns: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) bool: True at the columns of the allowed codes of level ``depth``.

    ``columns`` (level_sizes[depth],) from :func:`level_columns`.
    """
    allowed = trie.next_mask(depth, nodes)  # (B, V_depth)
    mask = torch.zeros(allowed.shape[0], width, dtype=torch.bool, device=allowed.device)
    mask[:, columns.to(allowed.device)] = allowed
    return mask


def mask_vocab_logits(
    trie: PrefixTrie,
    vocab: SIDVocab,
    depth: int,
    nodes: torch.Tensor,
    logits: torch.Tensor,
    token_ids: Sequence[int] | np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """Keep finite only the level-``depth`` ID tokens the trie allows.

    Parameters
    ----------
    trie, depth, nodes : as in :func:`mask_logits`.
    vocab : the ID token vocabulary (its level sizes must match the trie's).
    logits : (B, W) float over a token vocabulary: W = vocab.size when the
        columns are the ID tokens in ``vocab`` order, or any W when
        ``token_ids`` (vocab.size,) gives each ID token's column.

    Returns
    -------
    torch.Tensor
        (B, W), a new tensor: every other column, other levels' tokens and
        non-ID tokens included, is ``-inf``.
    """
    if tuple(vocab.level_sizes) != tuple(trie.level_sizes):
        raise VocabError(f"vocab level sizes {vocab.level_sizes} differ from the trie's {trie.level_sizes}")
    columns = level_columns(vocab, depth, token_ids)
    if logits.ndim != 2 or (columns.numel() and int(columns.max()) >= logits.shape[1]):
        raise ValueError(f"logits of shape {tuple(logits.shape)} do not cover the ID token columns of level {depth}")
    mask = vocab_mask(trie, depth, nodes, columns, logits.shape[1])
    return logits.masked_fill(~mask, float("-inf"))
