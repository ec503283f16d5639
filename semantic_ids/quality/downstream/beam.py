"""Trie-constrained beam search over an item's tokens, with the model's KV cache.

The history is run once (prefill); its cache is copied to the beams and
reordered as beams are chosen, so each further level costs one token per beam.
At every level only codes that extend a beam to a valid ID prefix are allowed
(``PrefixTrie.next_mask``), so every finished beam is an item: the invalid-ID
rate is zero by construction, and measured anyway. Scores are the model's log
probabilities (log-softmax over the whole vocabulary, then masked, as
``transformers``' constrained beam search does).
"""

from __future__ import annotations

import numpy as np
import torch

from ...decoding.trie import PrefixTrie
from .model import GPT


@torch.no_grad()
def beam_search(
    model: GPT,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    trie: PrefixTrie,
    token_offsets: np.ndarray,
    beam: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beam`` best items for each prompt, best first.

    Parameters
    ----------
    tokens : (B, T) right-padded prompts (BOS + history tokens); lengths : (B,) their real lengths.
    trie : the valid IDs; ``trie.leaf_rows`` maps a finished beam to an item row.
    token_offsets : (L,) the model token id of code 0 at each level.
    beam : beam width; at most ``beam`` items come back per prompt.

    Returns
    -------
    rows : (B, beam) int64 item rows, -1 where fewer items were reachable.
    scores : (B, beam) float, the sum of log-probabilities, -inf for -1 rows.
    """
    B = tokens.shape[0]
    dev = tokens.device
    hidden, cache, cvalid = model(tokens)
    last = hidden[torch.arange(B, device=dev), lengths - 1]  # (B, D), each prompt's last real token
    logp = torch.log_softmax(model.logits(last).float(), dim=-1)  # (B, V)
    nodes = torch.zeros(B, dtype=torch.long, device=dev)  # the root, depth 0
    scores = torch.zeros(B, 1, device=dev)
    L = trie.n_levels
    for d in range(L):
        V = trie.level_sizes[d]
        off = int(token_offsets[d])
        lvl = logp[:, off:off + V].masked_fill(~trie.next_mask(d, nodes), float("-inf"))  # (B * K, V)
        K = scores.shape[1]
        cand = (scores.reshape(-1, 1) + lvl).reshape(B, K * V)
        width = min(beam, K * V)
        scores, flat = cand.topk(width, dim=1)  # (B, width), best first
        parent = torch.div(flat, V, rounding_mode="floor")
        code = flat - parent * V
        pick = (torch.arange(B, device=dev)[:, None] * K + parent).reshape(-1)
        nodes = trie.advance(d, nodes[pick], code.reshape(-1))
        nodes = torch.where(torch.isfinite(scores.reshape(-1)), nodes, torch.full_like(nodes, -1))
        if d == L - 1:
            break
        cache = [(k[pick], v[pick]) for k, v in cache]
        cvalid = cvalid[pick]
        step = (code.reshape(-1, 1) + off).to(tokens.dtype)
        hidden, cache, cvalid = model(step, cache, cvalid)
        logp = torch.log_softmax(model.logits(hidden[:, -1]).float(), dim=-1)
    leaf = trie.leaf_rows.to(dev)
    rows = torch.where(nodes >= 0, leaf[nodes.clamp_min(0)], torch.full_like(nodes, -1)).reshape(B, -1)
    if rows.shape[1] < beam:  # fewer items in the whole catalog than the beam
        pad = beam - rows.shape[1]
        rows = torch.cat([rows, rows.new_full((B, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((B, pad), float("-inf"))], 1)
    return rows, scores
