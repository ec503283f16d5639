"""Frozen dataclass configs: the single source of truth for a build.

Each section is a frozen dataclass that checks its own fields when it is built
(types, then ranges) and round-trips through a plain dict: ``to_dict`` gives
JSON/TOML-ready values, ``from_dict`` rejects unknown keys and coerces as TOML
needs (lists become tuples, integers are accepted for floats). Every error is a
:class:`ConfigError` naming the field as ``section.field`` and the value.
:class:`BuildConfig` holds the sections and checks only rules across them.

Machine-local fields (where embeddings run and are cached, how often training
saves a checkpoint) change no result: artifacts store
:meth:`BuildConfig.portable_dict`, which leaves them out, and config equality
ignores them. Experiment switches live in their own section,
:class:`ExperimentalConfig` (TOML ``[experimental]``); a config that still sets
one in its old place is refused with a message saying where it moved.
"""

from .build import BuildConfig, load_toml, machine_local_keys, moved_keys
from .section import ConfigError, Section, is_machine_local, machine_local
from .sections import (
    DEFAULT_MODEL,
    CatalogConfig,
    CollabConfig,
    CollisionConfig,
    EmbeddingConfig,
    ExperimentalConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = [
    "DEFAULT_MODEL",
    "BuildConfig",
    "CatalogConfig",
    "CollabConfig",
    "CollisionConfig",
    "ConfigError",
    "EmbeddingConfig",
    "ExperimentalConfig",
    "ModelConfig",
    "Section",
    "TrainConfig",
    "is_machine_local",
    "load_toml",
    "machine_local",
    "machine_local_keys",
    "moved_keys",
]
