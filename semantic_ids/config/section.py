"""The machinery every config section shares: coercion, checks, the dict round trip.

A section is a frozen dataclass deriving :class:`Section`. Built directly or
from a dict, it normalises its fields (lists become tuples, integers floats
where a float is declared), rejects wrong types, then runs its own
:meth:`Section.check` for ranges; every error is a :class:`ConfigError` naming
the field as ``section.field`` and the value.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="Section")  # typing.Self is Python 3.11+

from ..errors import ConfigError


def machine_local(default: Any) -> Any:
    """A field that depends on the machine, not the result: kept out of artifacts
    and of equality, so two configs that differ only there describe the same build."""
    return field(default=default, compare=False, metadata={"machine_local": True})


def is_machine_local(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("machine_local"))


@dataclass(frozen=True)
class Section:
    """Base of every config section: type coercion and checks on construction,
    and the dict round trip. ``section`` is the name in :class:`BuildConfig` and
    in TOML (``[section]``); ``moved`` maps keys that used to live here to where
    they are now, for a clear error when a config still sets them here."""

    section: ClassVar[str] = ""
    moved: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        hints = field_types(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            coerced = _coerce(hints[f.name], value, self._dotted(f.name))
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)  # frozen: the normalised value (tuple, float)
        self.check()

    def check(self) -> None:
        """Value ranges; raise :class:`ConfigError` naming the field. Overridden per section."""

    @classmethod
    def _dotted(cls, name: str) -> str:
        return f"{cls.section}.{name}" if cls.section else name

    def to_dict(self, *, portable: bool = False) -> dict[str, Any]:
        """Plain values (lists for tuples, dicts for sections); ``portable=True`` leaves
        out machine-local fields."""
        return {
            f.name: _plain(getattr(self, f.name), portable)
            for f in dataclasses.fields(self)
            if not (portable and is_machine_local(f))
        }

    @classmethod
    def from_dict(cls: type[S], data: Any) -> S:
        """Build from a dict such as :meth:`to_dict` or a TOML table gives; missing keys
        take their defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.section or 'config'} should be a table/dict, got {type(data).__name__}")
        moved = sorted(k for k in data if k in cls.moved)
        if moved:
            raise ConfigError(
                "; ".join(f"{cls._dotted(k)} moved to {cls.moved[k]}" for k in moved)
                + f" (TOML: [{cls.moved[moved[0]].split('.')[0]}]); set {'them' if len(moved) > 1 else 'it'} there"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            where = f" in [{cls.section}]" if cls.section else ""
            raise ConfigError(f"unknown config key(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's resolved field types (annotations are strings here), once per class."""
    return typing.get_type_hints(cls)


def _plain(value: Any, portable: bool) -> Any:
    if isinstance(value, Section):
        return value.to_dict(portable=portable)
    if isinstance(value, tuple):
        return [_plain(v, portable) for v in value]
    return value


def _to_plain(obj: Any) -> Any:
    """Plain values of a section (or of any value), machine-local fields included."""
    return _plain(obj, False)


def _coerce(tp: Any, value: Any, name: str) -> Any:
    """``value`` as type ``tp`` (the same object when it already is), or a
    ConfigError naming the field ``name``."""
    if isinstance(tp, type) and issubclass(tp, Section):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return tp.from_dict(value)
        raise ConfigError(f"{name} should be a table/dict, got {type(value).__name__}")
    origin = typing.get_origin(tp)
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
        items = tuple(_coerce(item_tp, v, f"{name}[{i}]") for i, v in enumerate(value))
        return value if isinstance(value, tuple) and all(a is b for a, b in zip(items, value)) else items
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
        return value if isinstance(value, float) else float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} should be a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported type {tp}")  # pragma: no cover


def at_least(section: Section, **lows: int) -> None:
    """Each named integer field ``>= low``."""
    for name, low in lows.items():
        value = getattr(section, name)
        if value < low:
            raise ConfigError(f"{section._dotted(name)}={value} should be >= {low}")


def finite(section: Section, name: str, *, positive: bool = False) -> None:
    """The named float field finite and ``>= 0`` (``> 0`` when ``positive``)."""
    value = getattr(section, name)
    if not ((0 < value if positive else 0 <= value) and value < math.inf):
        raise ConfigError(f"{section._dotted(name)}={value} should be a finite number {'>' if positive else '>='} 0")


def one_of(section: Section, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(section, name)
    if value not in allowed:
        raise ConfigError(f"{section._dotted(name)}={value!r} should be one of {allowed}")
