"""Peer methods for benchmarks/quality.py, run on the same embeddings in the same process.

Each peer takes embeddings (N, D) float32 and a seed and returns a :class:`PeerResult`:
model codes (N, L) before any collision resolution, the seconds spent training and
assigning codes (fit + encode, nothing else), the reconstruction error
||x − x̂||² (summed over dimensions, mean over items: the definition of
``semantic_ids`` ``reconstruction_mse``) and the settings used.

- :func:`semantic_id_rqkmeans` / :func:`semantic_id_rqvae`: the ``semantic-id`` PyPI package
  (0.2.5), 3 levels x 256 codes, its documented defaults otherwise.
- :func:`vqp_rqvae`: an MLP RQ-VAE around vector-quantize-pytorch's ``ResidualVQ`` (EMA
  codebooks, k-means init, dead-code expiry), encoder/decoder sized like ours.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn


@dataclass
class PeerResult:
    codes: np.ndarray
    seconds: float
    reconstruction_mse: float | None
    settings: dict = field(default_factory=dict)


def recon_error(x: np.ndarray, x_hat: np.ndarray) -> float:
    """||x − x̂||² summed over dimensions, mean over items."""
    d = np.asarray(x_hat, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    return float((d**2).sum(1).mean())


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


@contextlib.contextmanager
def quiet():
    """Silence a library's own prints and progress bars (stdout and stderr)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


# -- semantic-id (PyPI) ---------------------------------------------------------------


def semantic_id_rqkmeans(emb: np.ndarray, seed: int = 0, levels: int = 3, k: int = 256) -> PeerResult:
    """``semantic_id.RQKMeans``: per level, scikit-learn KMeans (k-means++, n_init=10,
    max_iter=100, tol=1e-4, all package defaults) on the residuals; CPU backend."""
    from semantic_id import RQKMeans

    seed_everything(seed)
    model = RQKMeans(n_levels=levels, n_clusters=k, random_state=seed)
    start = time.perf_counter()
    model.fit(emb)
    codes = model.encode(emb)
    seconds = time.perf_counter() - start
    settings = {"n_levels": levels, "n_clusters": k, "random_state": seed, "implementation": model.implementation, "n_init": "default (10)", "max_iter": model.max_iter, "tol": model.tol}
    return PeerResult(codes.astype(np.int64), seconds, recon_error(emb, model.decode(codes)), settings)


def semantic_id_rqvae(emb: np.ndarray, seed: int = 0, levels: int = 3, k: int = 256, verbose: bool = True) -> PeerResult:
    """``semantic_id.RQVAE`` with the package defaults (e_dim 64, layers [512, 256, 128],
    ReLU, no batch norm, lr 1e-4, batch 2048, 100 epochs, beta 0.25, no k-means init,
    no Sinkhorn), 3 levels x 256 codes.

    ``verbose=True`` (output silenced) because in 0.2.5 ``fit`` with ``verbose=False``
    restores the weights after the *first* epoch: it keeps the "best collision-rate"
    state, the collision rate is only measured when verbose, and the placeholder 0.0 is
    never beaten after epoch 1. With ``verbose=True`` it keeps the epoch whose codes
    collide least on a 2,048-item monitor sample, which is what the package intends.
    """
    from semantic_id import RQVAE

    seed_everything(seed)
    model = RQVAE(in_dim=emb.shape[1], num_emb_list=[k] * levels, device="cpu", verbose=verbose)
    start = time.perf_counter()
    with quiet():
        model.fit(emb)
        codes = model.encode(emb)
    seconds = time.perf_counter() - start
    with quiet():
        x_hat = model.decode(codes.astype(np.int64))
    settings = {
        "num_emb_list": [k] * levels, "e_dim": model.e_dim, "layers": model.layers, "lr": model.lr,
        "batch_size": model.batch_size, "epochs": model.epochs, "beta": model.beta,
        "kmeans_init": model.kmeans_init, "sk_epsilons": model.sk_epsilons, "verbose": verbose,
    }
    return PeerResult(codes.astype(np.int64), seconds, recon_error(emb, x_hat), settings)


# -- vector-quantize-pytorch -----------------------------------------------------------


# the same MLP shape as our all-latent RQ-VAE (first_level = "latent", latent 6), so the
# peer differs from that row only in its quantizer and training
from semantic_ids.model.rqvae import mlp as _mlp  # noqa: E402


VQP_DEFAULTS = {
    "hidden_dims": (512, 256, 128),
    "latent_dim": 6,
    "num_quantizers": 3,
    "codebook_size": 256,
    "decay": 0.8,  # vector-quantize-pytorch's default EMA decay
    "kmeans_init": True,
    "kmeans_iters": 10,  # its default
    "threshold_ema_dead_code": 2,  # the value of its README's dead-code example
    "commitment_weight": 0.25,  # beta, as ours (TIGER)
    "epochs": 200,
    "batch_size": 1024,
    "lr": 1e-3,
}


class VQPRQVAE(nn.Module):
    """MLP encoder -> ``vector_quantize_pytorch.ResidualVQ`` -> MLP decoder.

    Codebooks are updated by EMA (the library's default), k-means initialised on the
    first batch, and codes whose EMA cluster size drops below
    ``threshold_ema_dead_code`` are replaced by batch residuals. Gradients pass the
    quantizer by the library's default estimator (the rotation trick).
    """

    def __init__(self, input_dim: int, **kw):
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        c = {**VQP_DEFAULTS, **kw}
        hidden = list(c["hidden_dims"])
        self.encoder = _mlp([input_dim, *hidden, c["latent_dim"]])
        self.decoder = _mlp([c["latent_dim"], *reversed(hidden), input_dim])
        self.rvq = ResidualVQ(
            dim=c["latent_dim"],
            num_quantizers=c["num_quantizers"],
            codebook_size=c["codebook_size"],
            decay=c["decay"],
            kmeans_init=c["kmeans_init"],
            kmeans_iters=c["kmeans_iters"],
            threshold_ema_dead_code=c["threshold_ema_dead_code"],
            commitment_weight=c["commitment_weight"],
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(x)[:, None, :]  # (B, 1, latent): ResidualVQ takes (batch, seq, dim)
        q, codes, commit = self.rvq(z)
        return self.decoder(q[:, 0]), codes[:, 0], commit.sum()


def vqp_rqvae(emb: np.ndarray, seed: int = 0, **kw) -> PeerResult:
    """Train :class:`VQPRQVAE` with Adam on ||x − x̂||² (summed over dimensions, mean over
    the batch, as ours) + the library's commitment loss summed over levels."""
    c = {**VQP_DEFAULTS, **kw}
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    n = len(x)
    start = time.perf_counter()
    model = VQPRQVAE(x.shape[1], **kw)
    opt = torch.optim.Adam(model.parameters(), lr=c["lr"])
    model.train()
    for _ in range(c["epochs"]):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, c["batch_size"]):
            xb = x[perm[s : s + c["batch_size"]]]
            x_hat, _, commit = model(xb)
            loss = (x_hat - xb).pow(2).sum(1).mean() + commit
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        outs = [model(x[s : s + 65536]) for s in range(0, n, 65536)]
    codes = torch.cat([o[1] for o in outs]).numpy().astype(np.int64)
    seconds = time.perf_counter() - start
    x_hat = torch.cat([o[0] for o in outs]).numpy()
    settings = {**c, "optimizer": "Adam", "loss": "sum-over-dims MSE + commitment", "input_centering": False, "activation": "SiLU"}
    settings["hidden_dims"] = list(settings["hidden_dims"])
    return PeerResult(codes, seconds, recon_error(emb, x_hat), settings)
