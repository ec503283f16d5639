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
