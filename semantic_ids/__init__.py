"""semantic-ids: hierarchical semantic IDs for generative recommenders (TIGER).

Pipeline: catalog -> embed -> train RQ-VAE -> codes -> collisions -> export.
"""

import os as _os

# OpenMP's default spin-waiting slows torch's many small ops (a small MLP, batch
# 1024) when another process shares the cores: 1.6-1.7x beside one busy process
# on 2 vCPUs, while idle it costs 10-30% (benchmarks/omp_wait.py). Passive waiting
# changes no result (bitwise-identical weights, tested). It must be set before
# torch loads its OpenMP runtime, so it only takes effect when semantic_ids is
# imported first; a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# Names resolve on first use (PEP 562) so that ``import semantic_ids`` and the
# command line's start-up load neither torch nor sentence-transformers; every
# name below imports exactly as before, e.g. ``from semantic_ids import SemanticIDs``.
_LAZY = {
    "NotFittedError": "api",
    "SemanticIDs": "api",
    "Catalog": "catalog",
    "CatalogError": "catalog",
    "load_catalog": "catalog",
    "BuildConfig": "config",
    "CatalogConfig": "config",
    "CollisionConfig": "config",
    "ConfigError": "config",
    "EmbeddingConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "EmbeddingError": "embed",
    "embed_texts": "embed",
    "load_embeddings": "embed",
    "ExportError": "manifest",
    "read_export": "export",
    "TokenError": "tokens",
    "format_sid": "tokens",
    "parse_sid": "tokens",
    "UnknownIDError": "lookup",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'semantic_ids' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "__version__",
    "BuildConfig",
    "Catalog",
    "CatalogConfig",
    "CatalogError",
    "CollisionConfig",
    "ConfigError",
    "EmbeddingConfig",
    "EmbeddingError",
    "ExportError",
    "ModelConfig",
    "NotFittedError",
    "SemanticIDs",
    "TokenError",
    "TrainConfig",
    "UnknownIDError",
    "embed_texts",
    "format_sid",
    "load_catalog",
    "load_embeddings",
    "parse_sid",
    "read_export",
]
