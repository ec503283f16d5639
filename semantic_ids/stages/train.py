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
from ..threads import fixed_threads
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
    with fixed_threads(torch.get_num_threads()):  # FAISS's pools too (its BLAS splits sums by thread)
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
    model = RQVAE(embeddings.shape[1], model_config, experimental)
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
    if init_from is not None and cfg.warm_epochs is not None and cfg.epochs > cfg.warm_epochs:
        cfg = dataclasses.replace(cfg, epochs=cfg.warm_epochs)  # a warm start fine-tunes (train.warm_epochs)
    torch.manual_seed(seed)
    gen = seeded_generator(seed)
    n_total = len(embeddings)
    if cfg.max_train_items is not None and n_total > cfg.max_train_items:
        sample = torch.randperm(n_total, generator=gen)[: cfg.max_train_items].sort().values.numpy()
    else:
        sample = None
    if isinstance(embeddings, np.ndarray):
        x = embeddings if sample is None else embeddings[sample]
    else:  # a dataset that reads only the sampled rows (EmbeddingShards)
        x = embeddings.take(np.arange(n_total) if sample is None else sample)
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    n, dim = x.shape
    model = RQVAE(dim, model_config, exp)
    first = None  # level-1 codes of the training items: fixed once fitted, so computed once
    if init_from is not None:
        from .warm.algorithms import warm_init

        first = warm_init(model, init_from, x)
    else:
        model.input_mean.copy_(x.mean(0))
        if model.kmeans_first:
            model.fit_first_level(x, generator=gen)
            first = model.first_codes(x)
    anchor_t = None
    if anchor is not None:
        anchor_t = torch.from_numpy(np.asarray(anchor if sample is None else anchor[sample], dtype=np.int64))
        if first is not None:  # anchored items keep their level-1 code too
            first = torch.where(anchor_t[:, 0] >= 0, anchor_t[:, 0], first)
    codebook_params = list(model.quantizer.parameters())
    other = [p for n_, p in model.named_parameters() if not n_.startswith("quantizer.")]
    opt = torch.optim.AdamW(
        [
            {"params": other, "lr": cfg.lr * lr_scale, "weight_decay": cfg.weight_decay},
            {"params": codebook_params, "lr": cfg.lr * lr_scale * cfg.codebook_lr_scale, "weight_decay": 0.0},
        ]
    )
    n_levels = model.n_levels
    fixed = model.fixed_levels  # levels not learned by gradient (the k-means first level)
    history: list[dict] = []
    eval_x = x if n <= 50_000 else x[torch.randperm(n, generator=gen)[:50_000]]
    batches_per_epoch = math.ceil(n / cfg.batch_size)
    total_epochs = cfg.epochs
    no_restart_after = total_epochs - max(1, total_epochs // 10)
    epoch_levels = [lv for lv, count in _phases(cfg.epochs, exp.progressive, n_levels, fixed) for _ in range(count)]
    ckpt = None
    if checkpoint_dir:
        # a warm start's key also covers its learning rate, initial weights and anchors
        key = fingerprint(x, model_config, dataclasses.replace(cfg, lr=cfg.lr * lr_scale), seed, init_from)
        if anchor_t is not None:
            key = fingerprint(anchor_t.to(torch.float32), model_config, cfg, seed)[:12] + key[:12]
        key = _with_experimental(key, exp)
        ckpt = Checkpoint(checkpoint_dir, key)
    start = 0
    if ckpt is not None and ckpt.exists():
        start, history = ckpt.load(model, opt, gen)
        log.info("resuming training from the checkpoint after epoch %d (%s)", start, ckpt.dir)
    with progress(total=total_epochs, initial=start, desc="train", unit="epoch", disable=not show_progress) as bar:
        for epoch in range(start, total_epochs):
            levels = epoch_levels[epoch]
            active = levels - fixed  # learned levels in use (levels == n_levels unless progressive)
            if cfg.kmeans_init and not bool(model.quantizer.initialized[:active].all()):
                model.eval()
                with torch.no_grad():
                    z = model.encode_latent(x, first)
                for lvl in range(active):
                    if not bool(model.quantizer.initialized[lvl]):
                        model.quantizer.kmeans_init(z, lvl, iters=cfg.kmeans_iters, generator=gen)
            model.train()
            perm = torch.randperm(n, generator=gen)
            sums = {"loss": 0.0, "recon": 0.0, "vq": 0.0}
            seen = [torch.zeros(k, dtype=torch.bool) for k in model.codebook_sizes[:levels]]
            for b in range(batches_per_epoch):
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                out = model(x[idx], levels, None if first is None else first[idx], None if anchor_t is None else anchor_t[idx])
                loss = out["loss"]
                if exp.uniformity_weight > 0:
                    out["unif"] = uniformity_loss(out["z"], exp.uniformity_t)
                    loss = loss + exp.uniformity_weight * out["unif"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for k in sums:
                    sums[k] += float(out[k].detach()) * len(idx)
                for lvl in range(levels):
                    seen[lvl][out["codes"][:, lvl]] = True
            usage = [int(s.sum()) for s in seen]
            record = {"epoch": epoch, "levels": levels, **{k: v / n for k, v in sums.items()}, "codes_used": usage}
            restart_now = cfg.dead_code_restart and (epoch + 1) % cfg.restart_every == 0 and epoch < no_restart_after
            last = epoch == total_epochs - 1
            record["restarted"] = [0] * levels
            if restart_now or (cfg.dead_code_restart and last):
                model.eval()
                with torch.no_grad():
                    z = model.encode_latent(x, first)
                q = model.quantizer
                got = q.restart_unused(z, generator=gen) if last else q.restart_dead_codes(z, generator=gen)
                record["restarted"] = [0] * fixed + got[: levels - fixed]
            if (epoch + 1) % max(1, cfg.restart_every) == 0 or epoch == total_epochs - 1:
                codes = encode_all(model, eval_x)[:, :levels]
                record["collision_rate"] = collision_rate(codes.numpy())
            history.append(record)
            if ckpt is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch == total_epochs - 1):
                ckpt.save(epoch + 1, model, opt, gen, history)
            bar.set_postfix(postfix_fields(record, history))
            bar.update(1)
    model.eval()
    if model.kmeans_first:
        model.fit_latent_weight(x)
    last = history[-1] if history else {}
    log.info("trained %d epochs: loss %.4f, collision rate %.4f", total_epochs, last.get("loss", float("nan")), last.get("collision_rate", float("nan")))
    return TrainResult(model=model, history=history, checkpoint=ckpt)
