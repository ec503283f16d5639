"""The RQ-VAE: MLP encoder -> residual quantizer -> MLP decoder (TIGER, section 3.1).

A checkpoint is the state dict plus ``ModelConfig`` and the input dimension, so
``RQVAE(input_dim, config)`` followed by ``load_state_dict`` rebuilds it exactly.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .quantize import ResidualQuantizer

PAD_ROWS = 64


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
    """

    def __init__(self, input_dim: int, config: ModelConfig):
        super().__init__()
        self.input_dim = input_dim
        self.config = config
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
        self.quantizer = ResidualQuantizer(
            dim=latent,
            codebook_sizes=config.codebook_sizes,
            beta=config.beta,
            layer_norm=config.layer_norm_residuals,
        )
        # Mean of the training embeddings; centring makes small differences
        # between items count in the encoder (all MiniLM vectors share a large
        # common component).
        self.register_buffer("input_mean", torch.zeros(input_dim))

    @torch.no_grad()
    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """Inference latents (B, latent_dim), independent of how rows are batched.

        CPU matrix kernels take different paths for very small batches (a
        single row often goes through a matrix-vector kernel), which changes
        the last bits and could flip a near-tie between two codes. Padding
        every call to a multiple of ``PAD_ROWS`` rows keeps one kernel path,
        so an item gets the same codes alone, in a batch, before or after a
        save/load (tested).
        """
        n = len(x)
        pad = (-n) % PAD_ROWS
        if pad:
            x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
        return self.encode_latent(x)[:n]

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """(B, input_dim) -> (B, latent_dim)."""
        if self.config.center_input and self.config.method != "rq-kmeans":
            x = x - self.input_mean
        z = self.encoder(x)
        if self.config.normalize_latent:
            z = F.layer_norm(z, (z.shape[-1],))
        return z

    def forward(self, x: torch.Tensor, levels: int | None = None) -> dict[str, torch.Tensor]:
        """Loss terms and codes for a batch ``x`` (B, input_dim).

        loss = ||x − x̂||² (summed over dims, mean over the batch)
               + Σ_n ||sg[r_{n−1}] − q_n||² + β Σ_n ||r_{n−1} − sg[q_n]||².
        """
        z = self.encode_latent(x)  # (B, latent)
        q, codes, vq_loss = self.quantizer(z, levels)
        x_hat = self.decoder(q)  # (B, input_dim)
        recon = F.mse_loss(x_hat, x, reduction="none").sum(1).mean()
        return {"loss": recon + vq_loss, "recon": recon, "vq": vq_loss, "codes": codes, "z": z}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (B, n_levels) for embeddings (B, input_dim)."""
        return self.quantizer.encode(self.latent(x))

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructed embeddings (B, input_dim) from codes (B, L)."""
        return self.decoder(self.quantizer.decode(codes))
