"""A compact decoder-only transformer over item tokens, with a KV cache.

The generative retriever: a user's history is the token sequence ``BOS, item_1
tokens, ..., item_h tokens``; the model emits the next item's tokens one at a
time. With semantic IDs an item is L tokens (one per level); with plain item IDs
(SASRec's setting) it is one token, so the same network serves both arms.
Batches are right-padded, so causal attention never lets padding reach a real
position: a sequence gets the same states padded or not (batch independence).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int  # item tokens + specials (PAD = 0, BOS = 1)
    max_positions: int  # BOS + history tokens + the generated item
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    d_ff: int = 512
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


PAD, BOS, N_SPECIAL = 0, 1, 2

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (K, V), each (B, H, T, Dh)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.p = cfg.dropout

    def forward(self, x, mask=None, past=None):
        # x (B, T, D); past (K, V) of (B, H, S - T, Dh). mask None: causal over x alone (a prefill
        # without cache: flash attention); else (B, 1, T, S) bool, True = may attend.
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                           dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, T, D)))
        x = x + self.drop(self.ff(self.ln2(x)))
        return x, (k, v)


class GPT(nn.Module):
    """Token + position embeddings, pre-LayerNorm blocks, tied output head."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("proj.weight") or name.endswith("ff.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, tokens: torch.Tensor, past: Cache | None = None, past_valid: torch.Tensor | None = None):
        """Final hidden states for every position, and the updated cache.

        Without ``past`` the batch is a prefill: sequences are right-padded with PAD, and
        causal attention keeps padding out of every real position's view, so a sequence
        gives the same states whatever it is batched with. With ``past`` the new tokens
        follow the cache (whose padding ``past_valid`` marks) and are all real.

        Parameters
        ----------
        tokens : (B, T) int64.
        past, past_valid : an earlier call's cache and its (B, S) validity, or None.

        Returns
        -------
        hidden (B, T, D) (see :meth:`logits`), the cache (per layer K, V of (B, H, S + T, Dh))
        and its (B, S + T) validity.
        """
        B, T = tokens.shape
        dev = tokens.device
        if past is None:
            valid = tokens != PAD
            pos = torch.arange(T, device=dev).expand(B, T)
            mask = None
        else:
            S = past_valid.shape[1]
            valid = torch.cat([past_valid, torch.ones(B, T, dtype=torch.bool, device=dev)], 1)  # (B, S + T)
            pos = past_valid.sum(1, keepdim=True) + torch.arange(T, device=dev)  # real tokens so far
            causal = torch.ones(T, S + T, dtype=torch.bool, device=dev).tril(S)
            mask = (causal[None] & valid[:, None, :])[:, None]  # (B, 1, T, S + T)
        x = self.drop(self.tok(tokens) + self.pos(pos))
        new = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, mask, None if past is None else past[i])
            new.append(kv)
        return self.ln(x), new, valid

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) final hidden states -> (..., V) logits (the head is tied to the token embedding).

        Separate from ``forward`` so callers compute the vocabulary projection only
        where they need it: training at positions with a target, decoding at the last.
        """
        return hidden @ self.tok.weight.T

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
