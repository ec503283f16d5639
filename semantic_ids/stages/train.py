"""Training loop for the RQ-VAE: a plain loop (sample, loss, backward, step, log).

Seeded and deterministic on CPU: the same embeddings, config and seed give the
same weights. Shows progress (loss, per-level code usage, collision rate) and
returns the per-epoch history.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, fingerprint
from ..config import ExperimentalConfig, ModelConfig, TrainConfig
from .encode import encode_all
from .metrics import collision_rate
from ..progress import progress
from ..model.rqvae import RQVAE
from ..model.sizing import sized_model

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: RQVAE
    history: list[dict] = field(default_factory=list)
    checkpoint: Checkpoint | None = None


def seeded_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _phases(epochs: int, progressive: bool, n_levels: int, fixed: int = 0) -> list[tuple[int, int]]:
    """(active levels, epochs) per phase: all levels at once, or progressive
    (level 1, then 1..2, ..., then all levels), splitting the epochs evenly.
    The first ``fixed`` levels (the k-means first level) are always active."""
    learned = n_levels - fixed
    if not progressive or learned <= 1:
        return [(n_levels, epochs)]
    per = epochs // learned
    phases = [(fixed + lvl, per) for lvl in range(1, learned)]
    phases.append((n_levels, epochs - per * (learned - 1)))
    return phases


def residual_codebooks(x: np.ndarray, sizes, *, seed: int = 0) -> list[np.ndarray]:
    """Greedy residual k-means codebooks, one (K_l, D) float32 array per level, with
    FAISS's ResidualQuantizer (beam 1, its progressive-dimension k-means).

    Sizes must be powers of two (FAISS stores codes in bits)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    nbits = [int(np.ceil(np.log2(k))) for k in sizes]
    if any(2**b != k for b, k in zip(nbits, sizes)):
        raise ValueError(f"rq-kmeans needs power-of-two codebook sizes, got {list(sizes)}")
    vector = getattr(faiss, "UInt64Vector", None) or faiss.Uint64Vector  # renamed in newer FAISS
    bits = vector()
    for b in nbits:
        bits.push_back(b)
    rq = faiss.ResidualQuantizer(x.shape[1], bits)
    rq.max_beam_size = 1
    rq.cp.seed = seed
    rq.train(x)
    books = faiss.vector_to_array(rq.codebooks).reshape(-1, x.shape[1])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return [books[offsets[lvl] : offsets[lvl + 1]] for lvl in range(len(sizes))]


def train_rq_kmeans(
    embeddings: np.ndarray, model_config: ModelConfig, *, seed: int = 0, experimental: ExperimentalConfig | None = None
) -> TrainResult:
    """Greedy residual k-means (:func:`residual_codebooks`), codebooks copied into our
    quantizer so that encoding, export and lookups are shared with the RQ-VAE path.
    ``experimental`` is only recorded on the model (no switch applies here)."""
    books = residual_codebooks(embeddings, model_config.codebook_sizes, seed=seed)
    model = RQVAE(input_dim=embeddings.shape[1], config=model_config, experimental=experimental)
    with torch.no_grad():
        for lvl, book in enumerate(books):
            model.quantizer.codebooks[lvl].copy_(torch.from_numpy(book))
        model.quantizer.initialized.fill_(True)
    model.eval()
    return TrainResult(model=model, history=[])


def uniformity_loss(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log E_{i<j} exp(-t ||ẑ_i − ẑ_j||²) over unit-normalised latents (Wang & Isola 2020):
    lowest when latents spread evenly, which keeps near-duplicate items apart."""
    zn = torch.nn.functional.normalize(z, dim=1)
    return torch.pdist(zn).pow(2).mul(-t).exp().mean().log()


def _with_experimental(key: str, experimental: ExperimentalConfig) -> str:
    """A checkpoint key that also covers the experiment switches (they change the weights)."""
    payload = json.dumps([key, experimental.to_dict()], sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:24]


@torch.no_grad()
def postfix_fields(record: dict, history: list[dict]) -> dict[str, str]:
    """The progress bar's fields: the collision rate is measured every few epochs,
    so show the last measured value (and its epoch), never ``nan``."""
    fields = {"loss": f"{record['loss']:.4f}", "used": "/".join(map(str, record["codes_used"]))}
    measured = [r for r in history if "collision_rate" in r]
    if measured:
        col = measured[-1]
        age = "" if col is record else f" (ep {col['epoch'] + 1})"
        fields["col"] = f"{col['collision_rate']:.4f}{age}"
    return fields


def train_rqvae(
    embeddings: np.ndarray,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    seed: int = 0,
    show_progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    init_from: RQVAE | None = None,
    lr_scale: float = 1.0,
    anchor: np.ndarray | None = None,
    experimental: ExperimentalConfig | None = None,
) -> TrainResult:
    """Train an RQ-VAE on ``embeddings`` (N, D) float32, or on a sample of them.

    ``embeddings`` may also be a dataset with ``len`` and ``take(rows)`` (an
    :class:`~semantic_ids.shards.EmbeddingShards`): then only the sampled rows
    are read, and the model is the one the same rows in memory would give.

    Steps: seed; centre inputs; with the k-means first level, fit its
    centroids (bisecting or progressive-dimension k-means) and the residual scale;
    k-means-initialise each learned level's codebook on that level's residuals
    under the untrained encoder (TIGER); AdamW on the RQ-VAE loss; every
    ``restart_every`` epochs move codes that no item used onto badly served
    residuals (dead-code restart), except in the last tenth of training so the
    final codebooks settle; after the last epoch, restart any code that the
    trained model gives to no training item, so every code is used.

    With ``checkpoint_dir``, the full training state (weights, optimizer,
    random generator, history) is saved every ``checkpoint_every`` epochs
    under a fingerprint of the data, config and seed; a rerun of the same
    training resumes from the last checkpoint and ends with exactly the
    weights an uninterrupted run gives.

    With ``init_from`` (a trained model of the same architecture), training
    starts from its weights, buffers and codebooks instead of k-means: a
    warm-started rebuild (:func:`semantic_ids.warmstart.warm_init`);
    ``lr_scale`` multiplies both learning rates (a warm start fine-tunes gently);
    ``anchor`` (N, L) int64, rows of ``embeddings``: codes that training uses
    instead of the nearest where >= 0 (the old items' old codes in a warm start).

    ``experimental`` (off when omitted): the model switches go to the RQ-VAE,
    ``progressive`` and the uniformity loss act here.
    """
    exp = experimental or ExperimentalConfig()
    model_config = sized_model(model_config, len(embeddings))  # unset sizes: from the item count
    if model_config.method == "rq-kmeans":
        exp.check_model(model_config)
        return train_rq_kmeans(embeddings, model_config, seed=seed, experimental=exp)
    cfg = train_config
    # The random calls come in one fixed order (the global seed for the layers' initial
    # weights, then ``gen``: sample, first level, evaluation sample, every epoch), so a
    # run, a resumed run and a rerun give the same weights.
    torch.manual_seed(seed)
    gen = seeded_generator(seed)
    x, sample = _training_rows(embeddings, cfg.max_train_items, gen)
    model = RQVAE(input_dim=x.shape[1], config=model_config, experimental=exp)
    first = _start_model(model, x, init_from, gen)
    anchor_t = None
    if anchor is not None:
        anchor_t = torch.from_numpy(np.asarray(anchor if sample is None else anchor[sample], dtype=np.int64))
        if first is not None:  # anchored items keep their level-1 code too
            first = torch.where(anchor_t[:, 0] >= 0, anchor_t[:, 0], first)
    opt = _optimizer(model, cfg, lr_scale)
    eval_x = x if len(x) <= 50_000 else x[torch.randperm(len(x), generator=gen)[:50_000]]
    ckpt = None
    if checkpoint_dir:
        ckpt = Checkpoint(checkpoint_dir, _checkpoint_key(x, model_config, cfg, seed, exp, lr_scale, init_from, anchor_t))
    start, history = 0, []
    if ckpt is not None and ckpt.exists():
        start, history = ckpt.load(model, opt, gen)
        log.info("resuming training from the checkpoint after epoch %d (%s)", start, ckpt.dir)
    loop = _Loop(model, opt, x, first, anchor_t, cfg, exp, gen, eval_x)
    with progress(total=cfg.epochs, initial=start, desc="train", unit="epoch", disable=not show_progress) as bar:
        for epoch in range(start, cfg.epochs):
            history.append(loop.epoch(epoch))
            if ckpt is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch == cfg.epochs - 1):
                ckpt.save(epoch + 1, model, opt, gen, history)
            bar.set_postfix(postfix_fields(history[-1], history))
            bar.update(1)
    model.eval()
    if model.kmeans_first:
        model.fit_latent_weight(x)
    last = history[-1] if history else {}
    log.info("trained %d epochs: loss %.4f, collision rate %.4f", cfg.epochs, last.get("loss", float("nan")), last.get("collision_rate", float("nan")))
    return TrainResult(model=model, history=history, checkpoint=ckpt)


def _training_rows(embeddings, max_items: int | None, gen: torch.Generator) -> tuple[torch.Tensor, np.ndarray | None]:
    """The training rows (n, D) float32 and the sorted sample of rows they are (None: all).

    A dataset (``len`` and ``take(rows)``) is read for the sampled rows only."""
    n_total = len(embeddings)
    sample = None
    if max_items is not None and n_total > max_items:
        sample = torch.randperm(n_total, generator=gen)[:max_items].sort().values.numpy()
    if isinstance(embeddings, np.ndarray):
        x = embeddings if sample is None else embeddings[sample]
    else:  # a dataset that reads only the sampled rows (EmbeddingShards)
        x = embeddings.take(np.arange(n_total) if sample is None else sample)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), sample


def _start_model(model: RQVAE, x: torch.Tensor, init_from: RQVAE | None, gen: torch.Generator) -> torch.Tensor | None:
    """Initialise ``model`` before the first epoch: from a previous model (a warm start)
    or from the data (input mean, the k-means first level). Returns the training items'
    level-1 codes (B,) under the k-means first level, else None; they stay fixed."""
    if init_from is not None:
        from .warm.algorithms import warm_init

        return warm_init(model, init_from, x)
    model.input_mean.copy_(x.mean(0))
    if not model.kmeans_first:
        return None
    model.fit_first_level(x, generator=gen)
    return model.first_codes(x)


def _optimizer(model: RQVAE, cfg: TrainConfig, lr_scale: float) -> torch.optim.AdamW:
    """AdamW with its own learning rate for the codebooks and no weight decay on them."""
    codebook_params = list(model.quantizer.parameters())
    other = [p for n_, p in model.named_parameters() if not n_.startswith("quantizer.")]
    return torch.optim.AdamW(
        [
            {"params": other, "lr": cfg.lr * lr_scale, "weight_decay": cfg.weight_decay},
            {"params": codebook_params, "lr": cfg.lr * lr_scale * cfg.codebook_lr_scale, "weight_decay": 0.0},
        ]
    )


def _checkpoint_key(x: torch.Tensor, model_config: ModelConfig, cfg: TrainConfig, seed: int, exp: ExperimentalConfig,
                    lr_scale: float, init_from: RQVAE | None, anchor: torch.Tensor | None) -> str:
    """The checkpoint's key: everything that determines the weights. A warm start's key
    also covers its learning rate, initial weights and anchors."""
    key = fingerprint(x, model_config, dataclasses.replace(cfg, lr=cfg.lr * lr_scale), seed, init_from)
    if anchor is not None:
        key = fingerprint(anchor.to(torch.float32), model_config, cfg, seed)[:12] + key[:12]
    return _with_experimental(key, exp)


class _Loop:
    """One epoch at a time of the plain loop: (k-means init), batches, dead-code restarts,
    the collision rate every ``restart_every`` epochs; returns the epoch's history record."""

    def __init__(self, model: RQVAE, opt, x: torch.Tensor, first, anchor, cfg: TrainConfig, exp: ExperimentalConfig,
                 gen: torch.Generator, eval_x: torch.Tensor):
        self.model, self.opt, self.x, self.first, self.anchor = model, opt, x, first, anchor
        self.cfg, self.exp, self.gen, self.eval_x = cfg, exp, gen, eval_x
        self.fixed = model.fixed_levels  # levels not learned by gradient (the k-means first level)
        phases = _phases(cfg.epochs, exp.progressive, model.n_levels, self.fixed)
        self.epoch_levels = [lv for lv, count in phases for _ in range(count)]
        self.no_restart_after = cfg.epochs - max(1, cfg.epochs // 10)

    def epoch(self, epoch: int) -> dict:
        model, cfg, gen, x, fixed = self.model, self.cfg, self.gen, self.x, self.fixed
        n = len(x)
        levels = self.epoch_levels[epoch]
        active = levels - fixed  # learned levels in use (levels == n_levels unless progressive)
        if cfg.kmeans_init and not bool(model.quantizer.initialized[:active].all()):
            model.eval()
            with torch.no_grad():
                z = model.encode_latent(x, self.first)
            for lvl in range(active):
                if not bool(model.quantizer.initialized[lvl]):
                    model.quantizer.kmeans_init(z, lvl, iters=cfg.kmeans_iters, generator=gen)
        model.train()
        perm = torch.randperm(n, generator=gen)
        sums = {"loss": 0.0, "recon": 0.0, "vq": 0.0}
        seen = [torch.zeros(k, dtype=torch.bool) for k in model.codebook_sizes[:levels]]
        for b in range(math.ceil(n / cfg.batch_size)):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            out = model(x[idx], levels, None if self.first is None else self.first[idx],
                        None if self.anchor is None else self.anchor[idx])
            loss = out.loss
            if self.exp.uniformity_weight > 0:
                loss = loss + self.exp.uniformity_weight * uniformity_loss(out.z, self.exp.uniformity_t)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            for k in sums:
                sums[k] += float(getattr(out, k).detach()) * len(idx)
            for lvl in range(levels):
                seen[lvl][out.codes[:, lvl]] = True
        record = {"epoch": epoch, "levels": levels, **{k: v / n for k, v in sums.items()}, "codes_used": [int(s.sum()) for s in seen]}
        restart_now = cfg.dead_code_restart and (epoch + 1) % cfg.restart_every == 0 and epoch < self.no_restart_after
        last = epoch == cfg.epochs - 1
        record["restarted"] = [0] * levels
        if restart_now or (cfg.dead_code_restart and last):
            model.eval()
            with torch.no_grad():
                z = model.encode_latent(x, self.first)
            q = model.quantizer
            got = q.restart_unused(z, generator=gen) if last else q.restart_dead_codes(z, generator=gen)
            record["restarted"] = [0] * fixed + got[: levels - fixed]
        if (epoch + 1) % max(1, cfg.restart_every) == 0 or last:
            codes = encode_all(model, self.eval_x)[:, :levels]
            record["collision_rate"] = collision_rate(codes.numpy())
        return record
