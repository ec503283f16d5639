"""Shared fixtures: small seeded synthetic catalogs and embeddings, real-data paths."""

from __future__ import annotations

import json
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
    return _tiny_config()


def _tiny_config() -> BuildConfig:
    return BuildConfig().replace(
        model={"codebook_sizes": [16, 16, 16], "latent_dim": 8, "hidden_dims": [64, 32]},
        train={"epochs": 12, "batch_size": 128, "restart_every": 4},
        embedding={"use_cache": False},
    )


# -- behaviour: items with text and user sequences ------------------------------------------
@pytest.fixture(scope="module")
def behaviour_world(tmp_path_factory):
    """400 items in text clusters, users who each keep to one of 8 behaviour groups."""
    from semantic_ids.stages.shards import write_embedding_shards

    d = tmp_path_factory.mktemp("world")
    n = 400
    rng = np.random.default_rng(0)
    text = clustered_embeddings(n, dim=32, clusters=20, noise=1.0, seed=1)
    ids = np.array([f"i{i:04d}" for i in rng.permutation(n)])
    group = rng.integers(0, 8, n)
    lines = []
    for u in range(1200):
        pool = np.flatnonzero(group == u % 8)[: -5]  # a few items of each group are cold
        lines.append({"user_id": f"u{u}", "items": ids[rng.choice(pool, rng.integers(3, 9))].tolist()})
    (d / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    write_embedding_shards(d / "emb", ids, text, rows_per_shard=150)
    return d, ids, text


@pytest.fixture(scope="module")
def seq_config(tiny_config_module):
    return tiny_config_module.replace(train={"max_train_items": 300, "epochs": 6, "checkpoint_every": 0},
                                      collab={"dim": 8, "holdout_last": 1})


@pytest.fixture(scope="module")
def tiny_config_module():
    return BuildConfig().replace(model={"codebook_sizes": [8, 8, 8], "hidden_dims": [32]},
                                 train={"batch_size": 128, "restart_every": 4}, embedding={"use_cache": False})


@pytest.fixture(scope="session")
def beauty_embedded(beauty_dir):
    """Amazon Beauty: (config, catalog, text embeddings (N, 384) of the default model), the
    text a title, brand and categories template; embedded once per session."""
    from semantic_ids.stages.catalog import load_catalog
    from semantic_ids.stages.embed import embed_texts

    cfg = BuildConfig().replace(catalog={"template": "{title}; brand: {brand}; categories: {categories}"},
                                train={"checkpoint_every": 0, "epochs": 10})
    cat = load_catalog(beauty_dir / "items.jsonl", cfg.catalog)
    return cfg, cat, embed_texts(cat.texts, cfg.embedding, show_progress=False)[0]


# -- one tiny export for the whole session ---------------------------------------------------


def make_tiny_export(path, n: int = 200) -> Path:
    """The cheapest real export: ``n`` items, 3 levels x 8 codes, clustered embeddings; ``path``."""
    from semantic_ids import SemanticIDs

    config = BuildConfig().replace(
        model={"codebook_sizes": [8, 8, 8], "latent_dim": 8, "hidden_dims": [32]},
        train={"epochs": 4, "batch_size": 128, "restart_every": 2},
        embedding={"use_cache": False},
    )
    ids = np.array([f"item-{i:04d}" for i in range(n)])
    SemanticIDs(config, show_progress=False).fit(clustered_embeddings(n, clusters=6), ids=ids).save(path)
    return Path(path)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """A session's one tiny export (200 items, 3 x 8 codes): read it, never write into it;
    :func:`copy_export` gives a test its own copy to change."""
    return make_tiny_export(tmp_path_factory.mktemp("tiny") / "export")


@pytest.fixture(scope="session")
def tiny_fitted():
    """The 400-item ``small_catalog`` fitted with ``tiny_config``, once a session (read only)."""
    n = 400
    ids = np.array([f"item-{i:04d}" for i in range(n)])
    from semantic_ids import SemanticIDs

    return SemanticIDs(_tiny_config(), show_progress=False).fit(clustered_embeddings(n), ids=ids)


def copy_export(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- a stand-in for the sentence-transformers model --------------------------------------------


class FakeEmbedder:
    """Stands in for ``embed_texts(texts, config, *, show_progress)``: records each call in
    ``calls`` as (texts, config, show_progress) and answers ``answer(texts)`` ((n, dim) float32),
    by default a unit vector seeded by each text, so a text always gets the same vector.
    ``interrupt_on=k`` raises KeyboardInterrupt on the k-th call, as a user's Ctrl-C would."""

    def __init__(self, answer=None, *, dim: int = 32, interrupt_on: int | None = None):
        self.answer, self.dim, self.interrupt_on = answer, dim, interrupt_on
        self.calls: list[tuple[list[str], object, bool]] = []

    def __call__(self, texts, config, *, show_progress: bool = True):
        texts = list(texts)
        self.calls.append((texts, config, show_progress))
        if self.interrupt_on == len(self.calls):
            raise KeyboardInterrupt
        if self.answer is not None:
            emb = np.asarray(self.answer(texts), dtype=np.float32)
        else:
            emb = np.stack([_text_vector(s, self.dim) for s in texts]) if texts else np.zeros((0, self.dim), np.float32)
        return emb, {"cached": 0, "computed": len(texts)}

    @property
    def texts(self) -> list[str]:
        return [s for call in self.calls for s in call[0]]


def _text_vector(text: str, dim: int) -> np.ndarray:
    import zlib

    v = np.random.default_rng(zlib.crc32(text.encode())).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def fake_embedder(monkeypatch):
    """``fake_embedder(answer=None, *, target=..., **kw)`` installs a :class:`FakeEmbedder` in
    place of ``target`` (default: ``semantic_ids.stages.embed.embed_texts``) and returns it."""

    def install(answer=None, *, target: str = "semantic_ids.stages.embed.embed_texts", **kw) -> FakeEmbedder:
        fake = FakeEmbedder(answer, **kw)
        monkeypatch.setattr(target, fake)
        return fake

    return install


@pytest.fixture(scope="session")
def beauty_dir() -> Path:
    if not (BEAUTY_DIR / "items.jsonl").exists():
        pytest.skip(f"Amazon Beauty not found at {BEAUTY_DIR} (it lives in ../shared, present in CI only)")
    return BEAUTY_DIR
