"""BuildConfig: every section of a build, the rules across them, and TOML input."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .section import ConfigError, Section, _to_plain, at_least, field_types, is_machine_local
from .sections import (
    CatalogConfig,
    CollabConfig,
    CollisionConfig,
    EmbeddingConfig,
    ExperimentalConfig,
    ModelConfig,
    TrainConfig,
)


@dataclass(frozen=True)
class BuildConfig(Section):
    """Everything a build needs; its portable part (:meth:`portable_dict`) is saved
    into every artifact."""

    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    collision: CollisionConfig = field(default_factory=CollisionConfig)
    collab: CollabConfig = field(default_factory=CollabConfig)
    experimental: ExperimentalConfig = field(default_factory=ExperimentalConfig)
    seed: int = 0

    def check(self) -> None:
        """Only rules across sections (each section checked itself)."""
        self.experimental.check_model(self.model)
        at_least(self, seed=0)

    def portable_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the machine-local fields: what artifacts store."""
        return self.to_dict(portable=True)

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
            else:
                data[key] = _to_plain(value)
        return BuildConfig.from_dict(data)


def _sections() -> dict[str, type[Section]]:
    """BuildConfig's sections by name."""
    types_ = field_types(BuildConfig)
    return {name: tp for name, tp in types_.items() if isinstance(tp, type) and issubclass(tp, Section)}


def machine_local_keys() -> dict[str, tuple[str, ...]]:
    """Per section, the names of its machine-local fields (sections without any left out)."""
    out = {name: tuple(f.name for f in dataclasses.fields(cls) if is_machine_local(f)) for name, cls in _sections().items()}
    return {name: keys for name, keys in out.items() if keys}


def moved_keys() -> dict[str, dict[str, str]]:
    """Per section, the keys that moved elsewhere and their new dotted place."""
    return {name: dict(cls.moved) for name, cls in _sections().items() if cls.moved}


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a ConfigError naming it."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, from PyPI (a dependency on Python 3.10)
        import tomli as tomllib
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
