"""semantic-ids: hierarchical semantic IDs for generative recommenders (TIGER).

Pipeline: catalog -> embed -> train RQ-VAE -> codes -> collisions -> export.
"""

__version__ = "0.1.0"

from .api import NotFittedError, SemanticIDs  # noqa: E402
from .catalog import Catalog, CatalogError, load_catalog  # noqa: E402
from .config import (  # noqa: E402
    BuildConfig,
    CatalogConfig,
    CollisionConfig,
    ConfigError,
    EmbeddingConfig,
    ModelConfig,
    TrainConfig,
)
from .embed import EmbeddingError, embed_texts, load_embeddings  # noqa: E402
from .export import ExportError, read_export  # noqa: E402
from .tokens import TokenError, format_sid, parse_sid  # noqa: E402

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
    "embed_texts",
    "format_sid",
    "load_catalog",
    "load_embeddings",
    "parse_sid",
    "read_export",
]
