"""Codebook sizes from the catalog size, and a warning when IDs would mean little.

With ``model.codebook_sizes`` unset (``None``, the default), a build chooses
the sizes when it knows the number of items N:

- level 1: the largest power of two <= N / 20 (at least 2, at most 256), so a
  level-1 code holds about 20-40 items on average. A prefix that holds one item
  says nothing about its neighbours, and a depth-1 purity measured over
  near-singleton prefixes is high for a trivial reason
  (``benchmarks/codebook_sizes.py`` measures it).
- deeper levels: the same size, raised (powers of two, at most 256) until the
  product of all levels is at least N, so a small catalog still gets mostly
  distinct tuples before the collision level.
- three levels, as in TIGER (Rajput et al. 2023).

From N = 5,120 (= 20 x 256) on, the rule gives TIGER's 3 x 256, the default
before this rule existed, so larger catalogs get exactly the codes they got
before. ``docs/codebook_sizes.md`` has the measurements behind the rule
(``benchmarks/codebook_sizes.py``).

Sizes the user sets are kept; :func:`warn_if_sparse` then logs a warning when
there are fewer than 20 items per level-1 code.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from ..config import BuildConfig, ModelConfig

log = logging.getLogger(__name__)

ITEMS_PER_CODE = 20  # target (and warning threshold) for items per level-1 code
MAX_CODEBOOK = 256  # TIGER's codebook size; what catalogs of >= 5,120 items get
LEVELS = 3


def _pow2_floor(x: float) -> int:
    return 1 << max(int(math.floor(math.log2(x))), 0) if x >= 1 else 1


def auto_codebook_sizes(n_items: int, *, levels: int = LEVELS, max_size: int = MAX_CODEBOOK) -> tuple[int, ...]:
    """Codebook sizes for a catalog of ``n_items`` (the rule in the module docstring).

    Examples
    --------
    >>> auto_codebook_sizes(400), auto_codebook_sizes(1682), auto_codebook_sizes(12101)
    ((16, 16, 16), (64, 64, 64), (256, 256, 256))
    """
    if n_items < 1:
        raise ValueError(f"n_items={n_items} should be >= 1")
    k1 = min(max(_pow2_floor(n_items / ITEMS_PER_CODE), 2), max_size)
    deep = k1
    while levels > 1 and k1 * deep ** (levels - 1) < n_items and deep < max_size:
        deep *= 2
    return (k1,) + (deep,) * (levels - 1)


def choose_codebook_sizes(model: ModelConfig, n_items: int | None = None, *,
                          previous: ModelConfig | None = None) -> tuple[int, ...] | None:
    """The one rule that decides a build's codebook sizes, in order:

    1. the sizes the user set (``model.codebook_sizes``);
    2. else the previous export's (``previous``: a warm start keeps its codes' meaning);
    3. else :func:`auto_codebook_sizes` of ``n_items``;

    None while none of them decides (no sizes set, no previous export, the item
    count not known yet).
    """
    if model.codebook_sizes is not None:
        return tuple(int(k) for k in model.codebook_sizes)
    if previous is not None:
        return tuple(int(k) for k in previous.codebook_sizes)
    if n_items is None:
        return None
    sizes = auto_codebook_sizes(n_items)
    log.info("codebook sizes %s chosen for %d items (set model.codebook_sizes to override)", list(sizes), n_items)
    return sizes


def sized_model(model: ModelConfig, n_items: int | None = None, *, previous: ModelConfig | None = None) -> ModelConfig:
    """``model`` with the sizes :func:`choose_codebook_sizes` decides if unset; else unchanged."""
    if model.codebook_sizes is not None:
        return model
    sizes = choose_codebook_sizes(model, n_items, previous=previous)
    return model if sizes is None else dataclasses.replace(model, codebook_sizes=sizes)


def codebook_sizes_of(info: dict) -> tuple[int, ...]:
    """The model levels' codebook sizes an export records (``config.json`` or the
    Parquet metadata): its config's ``model.codebook_sizes``, the one copy an export
    stores; older exports also stored a top-level ``codebook_sizes`` (the same values),
    read when the config lacks them. KeyError when neither is there."""
    sizes = ((info.get("config") or {}).get("model") or {}).get("codebook_sizes")
    if sizes is None:
        sizes = info["codebook_sizes"]
    return tuple(int(k) for k in sizes)


def sized_config(config: BuildConfig, n_items: int) -> BuildConfig:
    """``config`` with explicit codebook sizes for ``n_items``, and a warning if they are sparse.

    Every build calls this once it knows the catalog size; the export stores
    the sizes used, so a reload never depends on this rule.
    """
    model = sized_model(config.model, n_items)
    warn_if_sparse(n_items, model.codebook_sizes)
    return config if model is config.model else config.replace(model={"codebook_sizes": list(model.codebook_sizes)})


def warn_if_sparse(n_items: int, codebook_sizes: tuple[int, ...]) -> bool:
    """Log a warning (and return True) when level 1 has fewer than 20 items per code."""
    k1 = int(codebook_sizes[0])
    per_code = n_items / k1
    if per_code >= ITEMS_PER_CODE:
        return False
    log.warning(
        "%d items for %d level-1 codes is %.1f items per code (fewer than %d): short prefixes will hold "
        "few items, and purity at depth 1 says little (compare it with the chance level `evaluate` reports). "
        "Leave model.codebook_sizes unset to size them from the catalog (%s for %d items), or set smaller sizes.",
        n_items, k1, per_code, ITEMS_PER_CODE, list(auto_codebook_sizes(max(n_items, 1))), n_items,
    )
    return True
