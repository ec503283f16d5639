"""The RQ-VAE: MLP encoder -> residual quantizer -> MLP decoder (TIGER, section 3.1).

With ``first_level = "bisecting"`` (the default) or ``"progressive"`` level 1
is not learned in the latent: it is the nearest of K k-means centroids of the
embeddings themselves (bisecting, or FAISS's progressive-dimension schedule),
and the encoder -> residual quantizer -> decoder learns the remaining levels
from what that centroid leaves (the residual, scaled to unit RMS norm). ``first_level = "latent"`` is TIGER's original: every level
quantizes the encoder's latent.

A checkpoint is the state dict plus ``ModelConfig``, the input dimension and the
``ExperimentalConfig`` switches, so ``RQVAE(input_dim=..., config=..., experimental=...)``
followed by ``load_state_dict`` rebuilds it exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ExperimentalConfig, ModelConfig
from .kmeans import bisecting_kmeans, nearest, progressive_kmeans
from .quantize import ResidualQuantizer

PAD_ROWS = 64


TINY = 1e-20


def _flush_tiny(r: torch.Tensor) -> torch.Tensor:
    """Zero entries below 1e-20 in magnitude. Sentence embeddings hold a few values
    near 1e-38, and a residual from a centroid that averages them can land there
    too; multiplied by the first layer's weights they become subnormal floats,
    which x86 CPUs process many times slower (benchmarks/README.md records the
    one-off timing on Amazon Beauty). Such values are 1e-12 of
    anything else in a residual or centred embedding, so no code changes."""
    return r.masked_fill(r.abs() < TINY, 0.0)


class RQVAEOutput(NamedTuple):
    """What :meth:`RQVAE.forward` returns for a batch of B items."""

    loss: torch.Tensor  # () recon + vq: what training minimises
    recon: torch.Tensor  # () reconstruction term
    vq: torch.Tensor  # () codebook + commitment terms
    codes: torch.Tensor  # (B, levels) int64, the active levels' codes
    z: torch.Tensor  # (B, latent_dim) the encoder's latents


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """Encoder, residual quantizer and decoder.

    Parameters
    ----------
    input_dim : embedding dimension (384 for MiniLM).
    config : ModelConfig
    experimental : ExperimentalConfig, optional
        The experiment switches the model is built and trained with (all off when
        omitted); ``layer_norm_residuals`` and ``normalize_latent`` act here, and
        the whole section is kept as ``self.experimental`` for the export.
    """

    def __init__(self, *, input_dim: int, config: ModelConfig, experimental: ExperimentalConfig | None = None):
        super().__init__()
        experimental = experimental or ExperimentalConfig()
        experimental.check_model(config)
        self.input_dim = input_dim
        self.config = config
        self.experimental = experimental
        hidden = list(config.hidden_dims)
        if config.method == "rq-kmeans":
            # Residual k-means on the embeddings themselves: no encoder or decoder.
            latent = input_dim
            self.encoder = nn.Identity()
            self.decoder = nn.Identity()
        else:
            latent = config.latent_dim
            self.encoder = mlp([input_dim, *hidden, latent])
            self.decoder = mlp([latent, *reversed(hidden), input_dim])
        self.latent_dim = latent
        sizes = tuple(config.codebook_sizes)
        # Level 1 from k-means on the embeddings, the rest from the RQ-VAE on the residual.
        self.kmeans_first = config.method == "rqvae" and config.first_level != "latent"
        self.fixed_levels = 1 if self.kmeans_first else 0
        self.quantizer = ResidualQuantizer(
            dim=latent,
            codebook_sizes=sizes[self.fixed_levels :],
            beta=config.beta,
            layer_norm=experimental.layer_norm_residuals,
        )
        # Mean of the training embeddings; centring makes small differences
        # between items count in the encoder (all MiniLM vectors share a large
        # common component).
        self.register_buffer("input_mean", torch.zeros(input_dim))
        if self.kmeans_first:
            self.register_buffer("first_codebook", torch.zeros(sizes[0], input_dim))
            # RMS norm of the training residuals (the encoder sees residual / scale) and
            # the weight of the latent block in code vectors (see code_books).
            self.register_buffer("residual_scale", torch.ones(()))
            self.register_buffer("latent_weight", torch.ones(()))

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Codes per level, all levels (the k-means first level included)."""
        return tuple(self.config.codebook_sizes)

    @property
    def n_levels(self) -> int:
        return len(self.config.codebook_sizes)

    @torch.no_grad()
    def fit_first_level(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> None:
        """Set the level-1 centroids (bisecting or progressive-dimension k-means of ``x``)
        and the residual scale."""
        fit = bisecting_kmeans if self.config.first_level == "bisecting" else progressive_kmeans
        self.first_codebook.copy_(fit(x, self.codebook_sizes[0], generator=generator))
        r = x - self.first_codebook[self.first_codes(x)]
        self.residual_scale.copy_(r.pow(2).sum(1).mean().sqrt().clamp_min(1e-12))

    @torch.no_grad()
    def fit_latent_weight(self, x: torch.Tensor) -> None:
        """Weight of the latent block in code vectors: residual RMS / latent RMS, so a
        latent distance counts about as much as the residual distance it stands for."""
        z = self.encode_latent(x)
        self.latent_weight.copy_(self.residual_scale / z.pow(2).sum(1).mean().sqrt().clamp_min(1e-12))

    def first_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Level-1 codes (B,) of embeddings under the k-means first level."""
        return nearest(x.detach(), self.first_codebook)

    @torch.no_grad()
    def latent(self, x: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """Inference latents (B, latent_dim), independent of how rows are batched;
        ``first``: (B,) level-1 codes to take the residuals from (the k-means first
        level; the nearest centroids when not given).

        CPU matrix kernels take different paths for very small batches (a
        single row often goes through a matrix-vector kernel), which changes
        the last bits and could flip a near-tie between two codes. Padding
        every call to a multiple of ``PAD_ROWS`` rows keeps one kernel path,
        so an item gets the same codes alone, in a batch, before or after a
        save/load (tested).
        """
        xp, n = self.pad_rows(x)
        if first is None:
            return self.encode_latent(xp)[:n]
        return self.encode_latent(xp, torch.cat([first, first.new_zeros(len(xp) - n)]))[:n]

    def encode_latent(self, x: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """(B, input_dim) -> (B, latent_dim): what the residual quantizer quantizes.
        With the k-means first level, the encoder sees the item's residual to its
        level-1 centroid (``first``: those codes, computed when not given)."""
        return self._encode(self.encoder_input(x, first))

    def encoder_input(self, x: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """What the encoder sees: the scaled residual (x − c_1)/s with the k-means
        first level, else the (centred) embedding."""
        if self.kmeans_first:
            if first is None:
                first = self.first_codes(x)
            return _flush_tiny((x - self.first_codebook[first]) / self.residual_scale)
        if self.config.center_input and self.config.method != "rq-kmeans":
            return _flush_tiny(x - self.input_mean)
        return x

    def _encode(self, h: torch.Tensor) -> torch.Tensor:
        z = self.encoder(h)
        if self.experimental.normalize_latent:
            z = F.layer_norm(z, (z.shape[-1],))
        return z

    def forward(
        self, x: torch.Tensor, levels: int | None = None, first: torch.Tensor | None = None, anchor: torch.Tensor | None = None
    ) -> RQVAEOutput:
        """Loss terms and codes for a batch ``x`` (B, input_dim); ``levels``: how many
        of the model's levels are active (all by default); ``first``: the batch's
        level-1 codes when the caller has them (they do not change during training);
        ``anchor``: (B, n_levels) codes the learned levels use instead of the
        nearest where >= 0 (see :meth:`ResidualQuantizer.forward`).

        loss = ||x − x̂||² (summed over dims, mean over the batch)
               + Σ_n ||sg[r_{n−1}] − q_n||² + β Σ_n ||r_{n−1} − sg[q_n]||².
        With the k-means first level, x̂ = c_1 + s·dec(q) and the first term is
        taken on the scaled residual, ||(x − c_1)/s − dec(q)||².
        """
        levels = self.n_levels if levels is None else levels
        if self.kmeans_first:
            if first is None:
                first = self.first_codes(x)
            target = self.encoder_input(x, first)  # the scaled residual, also the reconstruction target
            z = self._encode(target)
            q, codes, vq_loss = self.quantizer(z, levels - 1, None if anchor is None else anchor[:, 1:])
            codes = torch.cat([first[:, None], codes], 1)
        else:
            z = self.encode_latent(x)
            q, codes, vq_loss = self.quantizer(z, levels, anchor)
            target = x
        recon = F.mse_loss(self.decoder(q), target, reduction="none").sum(1).mean()
        return RQVAEOutput(loss=recon + vq_loss, recon=recon, vq=vq_loss, codes=codes, z=z)

    def pad_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(``x`` with zero rows appended up to a multiple of ``PAD_ROWS``, its original
        row count): one matrix-kernel path for every batch size (see :meth:`latent`)."""
        n = len(x)
        pad = (-n) % PAD_ROWS
        if pad:
            x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
        return x, n

    def _codes_and_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes, latents, padded x) of ``x`` padded to a multiple of ``PAD_ROWS`` rows."""
        xp, _ = self.pad_rows(x)
        first = self.first_codes(xp) if self.kmeans_first else None
        z = self.encode_latent(xp, first)
        codes = self.quantizer.encode(z)
        if first is not None:
            codes = torch.cat([first[:, None], codes], 1)
        return codes, z, xp

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (B, n_levels) for embeddings (B, input_dim), independent of batching."""
        return self._codes_and_latent(x)[0][: len(x)]

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructed embeddings (B, input_dim) from codes (B, n_levels)."""
        if self.kmeans_first:
            base = self.first_codebook[codes[:, 0]]
            return base + self.residual_scale * self.decoder(self.quantizer.decode(codes[:, 1:]))
        return self.decoder(self.quantizer.decode(codes))

    # -- code space: what nearest-code lookups compare ---------------------------------
    def code_books(self) -> list[torch.Tensor]:
        """Per level, a (K_l, D_c) matrix whose rows, summed over a tuple's codes, give
        the tuple's code vector (a prefix: the sum over its levels).

        TIGER's model: the codebooks themselves (D_c = latent dim). With the k-means
        first level, D_c = input_dim + latent_dim: level 1 fills the first block
        with its centroid, the other levels the second block with w·(code vector),
        w = ``latent_weight``; so a query embedding's distance to a tuple is
        ||x − c_1||² + w²||z − Σ_n e_n||², centroid distance plus residual detail.
        Within the query's own level-1 group that is a distance between residuals;
        across groups the latent part compares residuals taken from different
        centroids, so there it is a proxy (the centroid term dominates).
        """
        books = [cb.detach() for cb in self.quantizer.codebooks]
        if not self.kmeans_first:
            return books
        d_in, d_lat = self.input_dim, self.latent_dim
        first = torch.cat([self.first_codebook, self.first_codebook.new_zeros(len(self.first_codebook), d_lat)], 1)
        return [first] + [torch.cat([cb.new_zeros(len(cb), d_in), self.latent_weight * cb], 1) for cb in books]

    @property
    def code_split(self) -> int | None:
        """Where :meth:`code_books`' level-1 block ends (the input dimension) with the
        k-means first level; None when code space is the latent alone."""
        return self.input_dim if self.kmeans_first else None

    @torch.no_grad()
    def encode_query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, input_dim) -> (codes (B, n_levels), their vectors in code
        space (see :meth:`code_books`)), from one pass of the encoder."""
        codes, z, xp = self._codes_and_latent(x)
        n = len(x)
        if self.kmeans_first:
            return codes[:n], torch.cat([xp, self.latent_weight * z], 1)[:n]
        return codes[:n], z[:n]
