"""Shared fixtures: small seeded synthetic catalogs and embeddings, real-data paths."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the command line does (semantic_ids/cli/main.py)
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from semantic_ids.config import BuildConfig

ROOT = Path(__file__).resolve().parents[1]
BEAUTY_DIR = ROOT.parent / "shared" / "data" / "amazon_beauty"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def clustered_embeddings(n: int, dim: int = 32, clusters: int = 20, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """Unit-norm vectors around ``clusters`` random centres, (n, dim) float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, n)
    x = centres[labels] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def small_embeddings() -> np.ndarray:
    return clustered_embeddings(400)


@pytest.fixture
def small_catalog() -> pd.DataFrame:
    n = 400
    return pd.DataFrame(
        {
            "item_id": [f"item-{i:04d}" for i in range(n)],
            "title": [f"product {i}" for i in range(n)],
            "brand": [None if i % 7 == 0 else f"brand {i % 13}" for i in range(n)],
            "categories": [["Beauty", f"cat {i % 5}"] for i in range(n)],
            "price": [float(i % 30) for i in range(n)],
        }
    )


@pytest.fixture
def tiny_config() -> BuildConfig:
    """A fast config: 3 levels x 16 codes, small MLP, few epochs."""
    return BuildConfig().replace(
        model={"codebook_sizes": [16, 16, 16], "latent_dim": 8, "hidden_dims": [64, 32]},
        train={"epochs": 12, "batch_size": 128, "restart_every": 4},
        embedding={"use_cache": False},
    )


@pytest.fixture(scope="session")
def beauty_dir() -> Path:
    if not (BEAUTY_DIR / "items.jsonl").exists():
        pytest.skip(f"Amazon Beauty not found at {BEAUTY_DIR} (it lives in ../shared, present in CI only)")
    return BEAUTY_DIR
