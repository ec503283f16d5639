"""Residual quantizer: N levels, each with its own codebook (TIGER, Rajput et al. 2023).

Level n picks the code nearest (L2) to the residual r_{n-1} left by the levels
before it; the quantized vector is the sum of the chosen code vectors, so the
first codes say the most and a prefix of the codes is a coarse description.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kmeans import kmeans, nearest, sq_dists


class ResidualQuantizer(nn.Module):
    """Residual vector quantization with independent codebooks per level.

    Parameters
    ----------
    dim : latent dimension D.
    codebook_sizes : codes per level, e.g. ``(256, 256, 256)``.
    beta : commitment weight (the loss is Σ_n ||sg[r] − q||² + β||r − sg[q]||²).
    layer_norm : choose each level's code by comparing the LayerNorm-ed residual
        with LayerNorm-ed code vectors (scale-free matching, so small deep
        residuals are resolved as finely as large ones); the code vectors
        themselves stay in latent space, so the sum of codes still decodes.

    State kept in buffers so that it is saved with the weights: whether each
    level was k-means initialised, and per-level code usage counts since the
    last dead-code restart.
    """

    def __init__(self, *, dim: int, codebook_sizes: tuple[int, ...], beta: float = 0.25, layer_norm: bool = False):
        super().__init__()
        self.dim = dim
        self.codebook_sizes = tuple(codebook_sizes)
        self.beta = beta
        self.layer_norm = layer_norm
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(k, dim) / dim**0.5) for k in self.codebook_sizes]
        )
        self.register_buffer("initialized", torch.zeros(len(self.codebook_sizes), dtype=torch.bool))
        self.register_buffer("usage", torch.zeros(len(self.codebook_sizes), max(self.codebook_sizes), dtype=torch.long))

    @property
    def n_levels(self) -> int:
        return len(self.codebook_sizes)

    def as_compared(self, r: torch.Tensor) -> torch.Tensor:
        """Vectors (B, D) as the levels compare them: LayerNorm-ed when ``layer_norm`` is on."""
        return F.layer_norm(r, (self.dim,)) if self.layer_norm else r

    def forward(
        self, z: torch.Tensor, levels: int | None = None, anchor: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize ``z`` (B, D) with the first ``levels`` levels.

        ``anchor`` (B, >= levels) long, optional: a code to use instead of the
        nearest one where it is >= 0 (a warm-started rebuild trains the old items
        on their old codes, so the model keeps serving them there).

        Returns ``(quantized, codes, loss)``: quantized (B, D) with straight-through
        gradients to ``z``, codes (B, levels) long, and the codebook + commitment loss.
        """
        levels = self.n_levels if levels is None else levels
        residual = z
        total = torch.zeros_like(z)
        codes = []
        loss = z.new_zeros(())
        for n in range(levels):
            r = residual
            idx = self.level_codes(r.detach(), n)
            if anchor is not None:
                idx = torch.where(anchor[:, n] >= 0, anchor[:, n], idx)
            q = self.codebooks[n][idx]  # (B, D), gradients reach this codebook
            # codebook term pulls codes to residuals; commitment term (x beta)
            # pulls residuals, hence the encoder, to their codes.
            loss = loss + F.mse_loss(q, r.detach()) + self.beta * F.mse_loss(r, q.detach())
            total = total + q.detach()
            residual = r - q
            codes.append(idx)
            if self.training:
                self.usage[n].index_add_(0, idx, torch.ones_like(idx))
        quantized = z + (total - z).detach()  # straight-through estimator
        return quantized, torch.stack(codes, 1), loss

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, n_levels) of latents ``z`` (B, D)."""
        residual = z
        codes = []
        for n in range(self.n_levels):
            idx = self.level_codes(residual, n)
            residual = residual - self.codebooks[n][idx]
            codes.append(idx)
        return torch.stack(codes, 1)

    def level_codes(self, r: torch.Tensor, level: int) -> torch.Tensor:
        """Codes (B,) that level ``level`` gives residuals ``r`` (B, D): the nearest code
        (ties: lowest index), compared after LayerNorm when ``layer_norm`` is on."""
        cb = self.codebooks[level].detach()
        if self.layer_norm:
            return nearest(self.as_compared(r), self.as_compared(cb))
        return nearest(r, cb)

    @torch.no_grad()
    def level_distances(self, r: torch.Tensor, level: int) -> torch.Tensor:
        """Squared L2 distances (B, K) from residuals ``r`` (B, D) to level ``level``'s
        K code vectors, in the space where the level chooses (both sides LayerNorm-ed
        when ``layer_norm`` is on); a row's smallest entry is the code :meth:`level_codes`
        picks (up to rounding at exact ties)."""
        cb = self.codebooks[level].detach()
        return sq_dists(self.as_compared(r), self.as_compared(cb))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the chosen code vectors, (B, L) -> (B, D): the quantized latent."""
        if codes.shape[1] > self.n_levels:
            raise ValueError(f"codes have {codes.shape[1]} levels, the quantizer {self.n_levels}")
        out = torch.zeros(codes.shape[0], self.dim, dtype=self.codebooks[0].dtype, device=codes.device)
        for n in range(codes.shape[1]):
            out = out + self.codebooks[n][codes[:, n]]
        return out

    @torch.no_grad()
    def residuals(self, z: torch.Tensor, level: int) -> torch.Tensor:
        """The residual that level ``level`` quantizes, (B, D)."""
        residual = z
        for n in range(level):
            residual = residual - self.codebooks[n][self.level_codes(residual, n)]
        return residual

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, level: int, *, iters: int = 25, generator: torch.Generator | None = None) -> None:
        """Set level ``level``'s codebook to k-means centroids of its residuals."""
        r = self.residuals(z, level)
        self.codebooks[level].data.copy_(kmeans(r, self.codebook_sizes[level], iters=iters, generator=generator))
        self.initialized[level] = True

    @torch.no_grad()
    def restart_unused(self, z: torch.Tensor, *, generator: torch.Generator | None = None, rounds: int = 3) -> list[int]:
        """Restart every code that no row of ``z`` gets from :meth:`encode` (not the
        training-time counts), so that after training every code of every level is
        some item's code. A restarted code sits on a residual, so that row takes it;
        a few rounds catch codes emptied by the move. Returns restarts per level."""
        total = [0] * self.n_levels
        for _ in range(rounds):
            codes = self.encode(z)
            self.usage.zero_()
            for n, k in enumerate(self.codebook_sizes):
                self.usage[n, :k] = torch.bincount(codes[:, n], minlength=k)
            if all(bool((self.usage[n, :k] > 0).all()) for n, k in enumerate(self.codebook_sizes)):
                break
            total = [a + b for a, b in zip(total, self.restart_dead_codes(z, generator=generator))]
        self.usage.zero_()
        return total

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor, *, generator: torch.Generator | None = None) -> list[int]:
        """Move every code unused since the last call onto a residual of ``z``.

        Dead codes are re-seeded at the residuals worst served by their current
        code (largest quantization error), which splits crowded regions
        instead of dropping codes where nothing lives. Returns the number of
        codes restarted per level and clears the usage counters.
        """
        restarted = []
        for n, k in enumerate(self.codebook_sizes):
            dead = torch.nonzero(self.usage[n, :k] == 0).flatten()
            if len(dead):
                r = self.residuals(z, n)
                cb = self.codebooks[n]
                err = (r - cb[self.level_codes(r, n)]).pow(2).sum(1)
                # Sample among the worst-served quarter so restarts do not pile up on one outlier.
                pool = torch.topk(err, min(len(r), max(len(dead), len(r) // 4))).indices
                pick = pool[torch.randperm(len(pool), generator=generator)[: len(dead)]]
                if len(pick) < len(dead):
                    pick = pick[torch.arange(len(dead)) % len(pick)]
                cb.data[dead] = r[pick]
            restarted.append(int(len(dead)))
        self.usage.zero_()
        return restarted
