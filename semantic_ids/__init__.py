"""semantic-ids: hierarchical semantic IDs for generative recommenders (TIGER).

Pipeline: catalog -> embed -> train RQ-VAE -> codes -> collisions -> export.
"""

from .threads import passive_torch_import
from .version import __version__

# torch's OpenMP waits passively when this package loads it first, as on the
# command line; os.environ is left as it was (semantic_ids.threads)
passive_torch_import()

# Names resolve on first use (PEP 562) so that ``import semantic_ids`` and the
# command line's start-up load neither torch nor sentence-transformers; every
# name below imports exactly as before, e.g. ``from semantic_ids import SemanticIDs``.
_LAZY = {
    "SemanticIDsError": "errors",
    "build": "runners.build",
    "BuildResult": "runners.build",
    "build_streaming": "runners.streaming",
    "assign_new_items": "runners.assign",
    "churn": "quality.churn",
    "ChurnReport": "quality.churn",
    "SemanticIDLookup": "lookup",
    "read_sequences": "stages.sequences",
    "SequenceError": "errors",
    "CollabConfig": "config",
    "ExperimentalConfig": "config",
    "NotFittedError": "errors",
    "SemanticIDs": "runners.estimator",
    "Catalog": "stages.catalog",
    "CatalogError": "errors",
    "load_catalog": "stages.catalog",
    "BuildConfig": "config",
    "CatalogConfig": "config",
    "CollisionConfig": "config",
    "ConfigError": "errors",
    "EmbeddingConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "EmbeddingError": "errors",
    "embed_texts": "stages.embed",
    "load_embeddings": "stages.embed",
    "ExportError": "errors",
    "read_export": "export.io",
    "TokenError": "errors",
    "format_sid": "export.tokens",
    "parse_sid": "export.tokens",
    "UnknownIDError": "errors",
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
    "SemanticIDsError",
    "build",
    "BuildResult",
    "build_streaming",
    "assign_new_items",
    "churn",
    "ChurnReport",
    "SemanticIDLookup",
    "read_sequences",
    "SequenceError",
    "CollabConfig",
    "ExperimentalConfig",
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
