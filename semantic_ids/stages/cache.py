"""On-disk embedding cache: sharded Parquet keyed by (model, sha256(text)).

Each run that computes new embeddings appends one shard, written atomically,
so an interrupted run keeps every shard it finished and a rerun embeds only
texts that no shard holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import faults
from ..export.atomic import atomic_write_bytes, atomic_write_table

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    env = os.environ.get("SEMANTIC_IDS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "semantic-ids"


def cache_root(config) -> Path:
    """The cache directory of an EmbeddingConfig: ``cache_dir``, else the default."""
    return Path(config.cache_dir) if config.cache_dir else default_cache_dir()


def checkpoint_root(config) -> Path | None:
    """Where training checkpoints go for a BuildConfig, or None when they are off
    (``train.checkpoint_every = 0`` or ``embedding.use_cache = false``)."""
    if config.train.checkpoint_every > 0 and config.embedding.use_cache:
        return cache_root(config.embedding) / "checkpoints"
    return None


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """Embeddings of one model, stored under ``root/embeddings/<model hash>/``."""

    def __init__(self, root: Path, model_key: str, shard_size: int = 100_000):
        self.model_key = model_key
        self.dir = Path(root) / "embeddings" / hashlib.sha256(model_key.encode()).hexdigest()[:16]
        self.shard_size = shard_size

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.parquet")) if self.dir.exists() else []

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Return ``{text: embedding}`` for the texts the cache holds."""
        if not texts:
            return {}
        wanted = {text_key(t): t for t in texts}
        found: dict[str, np.ndarray] = {}
        for shard in self._shards():
            try:
                table = pq.read_table(shard)
            except Exception as exc:  # noqa: BLE001 - a broken shard is skipped, not fatal
                log.warning("ignoring unreadable cache shard %s: %s", shard, exc)
                continue
            keys = table.column("key").to_pylist()
            hit = [i for i, k in enumerate(keys) if k in wanted]
            if not hit:
                continue
            col = table.column("embedding").combine_chunks()
            dim = col.type.list_size
            flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
            for i in hit:
                found[wanted[keys[i]]] = flat[i]
        return found

    def put(self, texts: list[str], embeddings: np.ndarray) -> None:
        """Append embeddings of ``texts`` as new shard(s)."""
        if not texts:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "model.json"
        if not meta.exists():
            atomic_write_bytes(meta, json.dumps({"model_key": self.model_key}).encode())
        emb = np.asarray(embeddings, dtype=np.float32)
        dim = emb.shape[1]
        for start in range(0, len(texts), self.shard_size):
            chunk = emb[start : start + self.shard_size]
            table = pa.table(
                {
                    "key": pa.array([text_key(t) for t in texts[start : start + self.shard_size]]),
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1)), dim),
                }
            )
            atomic_write_table(self.dir / f"shard-{uuid.uuid4().hex}.parquet", table)
            faults.point("cache.shard_written")
