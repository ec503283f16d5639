"""Sharded Parquet datasets of embeddings, read in bounded-memory batches.

A dataset is one ``.parquet`` file or a directory of them (read in sorted
name order, the order of the rows). Each file has the id column and an
``embedding`` column: a fixed-size list of float32 (written by this library,
read without copying) or a plain list of floats (from other tools).

Written by :func:`embed_catalog` (catalog batch i -> ``part-i.parquet``; a rerun
skips finished shards, so an interrupted run resumes). Read by the streaming build (:mod:`semantic_ids.stream`) and the Ray path
(:mod:`semantic_ids.distributed`): neither ever holds all embeddings in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import faults
from ..export.atomic import atomic_write_table
from .catalog import catalog_batch, catalog_rows, parquet_text_spec
from ..config import BuildConfig
from .embed import EmbeddingError, check_embeddings, embed_texts, model_key
from ..progress import progress

log = logging.getLogger(__name__)

EMBEDDING_COLUMN = "embedding"


def shard_files(path: str | Path) -> list[Path]:
    """The Parquet files of a dataset: ``path`` itself, or ``path/*.parquet`` sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise EmbeddingError(f"{path}: embeddings dataset not found (a .parquet file or a directory of them)")
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise EmbeddingError(f"{path}: no .parquet files in the embeddings directory")
    return files


def embedding_matrix(column: pa.ChunkedArray | pa.Array, source: str, ids: pa.Array | None = None) -> np.ndarray:
    """An Arrow list column of vectors -> (N, D) float32, validated."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        dim = column.type.list_size
        if column.null_count:
            bad = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
            raise EmbeddingError(f"{source}: null embedding for item(s) {_name_rows(ids, bad)}")
        values = column.flatten()
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = pc.fill_null(column.value_lengths(), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        dim = int(lengths.max()) if len(lengths) else 0
        bad = np.flatnonzero(lengths != dim)
        if len(bad):
            raise EmbeddingError(
                f"{source}: every embedding should have {dim} values; item(s) {_name_rows(ids, bad)} "
                f"have {[int(lengths[i]) if lengths[i] >= 0 else None for i in bad[:5]]}"
            )
        values = column.flatten()
    else:
        raise EmbeddingError(f"{source}: column {EMBEDDING_COLUMN!r} should be a list of floats, is {column.type}")
    emb = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    return check_embeddings(emb, _Named(ids), source)


class _Named:
    """Item ids by row for error messages (the row number when there are no ids)."""

    def __init__(self, ids: pa.Array | None):
        self.ids = ids

    def __getitem__(self, row: int):
        return row if self.ids is None else self.ids[int(row)].as_py()


def _name_rows(ids: pa.Array | None, rows: np.ndarray) -> list:
    rows = rows[:5]
    return ids.take(pa.array(rows)).to_pylist() if ids is not None else [f"row {int(r)}" for r in rows]


@dataclass(frozen=True)
class EmbeddingBatch:
    ids: pa.Array  # (B,) item ids, Arrow (strings stay compact, not Python objects)
    embeddings: np.ndarray  # (B, D) float32
    start: int  # global row index of the first row


class EmbeddingShards:
    """A sharded embeddings dataset; knows its size and dim from the footers alone.

    Parameters
    ----------
    path : a ``.parquet`` file or a directory of them.
    id_column : the item id column.
    """

    def __init__(self, path: str | Path, id_column: str = "item_id"):
        self.path = Path(path)
        self.id_column = id_column
        self.files = shard_files(path)
        self.rows_per_file: list[int] = []
        dims = set()
        for f in self.files:
            try:
                meta = pq.ParquetFile(f)
            except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear error
                raise EmbeddingError(f"{f}: cannot read as Parquet: {exc}") from None
            names = meta.schema_arrow.names
            if id_column not in names or EMBEDDING_COLUMN not in names:
                raise EmbeddingError(f"{f}: should have columns {id_column!r} and {EMBEDDING_COLUMN!r}, has {names}")
            etype = meta.schema_arrow.field(EMBEDDING_COLUMN).type
            if pa.types.is_fixed_size_list(etype):
                dims.add(etype.list_size)
            self.rows_per_file.append(meta.metadata.num_rows)
        if len(dims) > 1:
            raise EmbeddingError(f"{self.path}: shards disagree on the embedding dim: {sorted(dims)}")
        self.offsets = np.concatenate([[0], np.cumsum(self.rows_per_file)]).astype(np.int64)
        self._dim = dims.pop() if dims else None  # known from the schema for fixed-size lists

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def dim(self) -> int:
        if self._dim is not None:
            return int(self._dim)
        for batch in self.iter_batches(1):
            return int(batch.embeddings.shape[1])
        raise EmbeddingError(f"{self.path}: the embeddings dataset is empty")

    def iter_batches(self, batch_rows: int = 65536) -> Iterator[EmbeddingBatch]:
        """Batches of up to ``batch_rows`` rows, in dataset order, one shard at a time."""
        for f, start in zip(self.files, self.offsets[:-1]):
            pf = pq.ParquetFile(f, pre_buffer=False)  # pre_buffer reads every row group ahead: the whole shard in memory
            pos = int(start)
            for rb in pf.iter_batches(batch_size=batch_rows, columns=[self.id_column, EMBEDDING_COLUMN]):
                ids = rb.column(self.id_column)
                if ids.null_count:
                    bad = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[:5]
                    raise EmbeddingError(f"{f}: null {self.id_column!r} at row(s) {(bad + pos).tolist()}")
                emb = embedding_matrix(rb.column(EMBEDDING_COLUMN), str(f), ids)
                yield EmbeddingBatch(ids=ids, embeddings=emb, start=pos)
                pos += len(ids)

    def ids(self) -> np.ndarray:
        """Every item id, in dataset order (the id column alone is read)."""
        parts = [pq.read_table(f, columns=[self.id_column]).column(self.id_column).to_numpy() for f in self.files]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def take(self, rows: np.ndarray, batch_rows: int = 65536) -> np.ndarray:
        """Embeddings (len(rows), D) of the given global rows (sorted ascending),
        read batch by batch so memory holds one batch plus the result."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= len(self)):
            raise ValueError("rows must be sorted, unique and within the dataset")
        out: np.ndarray | None = None
        for batch in self.iter_batches(batch_rows):
            lo = np.searchsorted(rows, batch.start)
            hi = np.searchsorted(rows, batch.start + len(batch.ids))
            if out is None:
                out = np.empty((len(rows), batch.embeddings.shape[1]), dtype=np.float32)
            if hi > lo:
                out[lo:hi] = batch.embeddings[rows[lo:hi] - batch.start]
            if hi == len(rows):
                break  # nothing further is wanted: stop reading
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def embeddings_table(ids, embeddings: np.ndarray, id_column: str = "item_id") -> pa.Table:
    """(ids, (N, D) float32) -> an Arrow table with a fixed-size-list ``embedding`` column."""
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    id_array = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(ids).tolist() if np.asarray(ids).dtype == object else np.asarray(ids))
    return pa.table({id_column: id_array, EMBEDDING_COLUMN: pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])})


def write_embedding_shards(
    out: str | Path, ids, embeddings: np.ndarray, *, id_column: str = "item_id", rows_per_shard: int = 262144
) -> Path:
    """Write ids and embeddings (in memory) as a sharded dataset ``out/part-NNNNN.parquet``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(ids)
    for i, s in enumerate(range(0, max(len(ids), 1), rows_per_shard)):
        atomic_write_table(out / f"part-{i:05d}.parquet", embeddings_table(ids[s : s + rows_per_shard], embeddings[s : s + rows_per_shard], id_column))
    return out


# -- writing: a Parquet catalog embedded batch by batch ------------------------------
def embeddings_fingerprint(catalog: Path, config: BuildConfig, batch_rows: int) -> str:
    """What a catalog's embedding shards depend on: the file, the text config, the model."""
    st = catalog.stat()
    blob = json.dumps(
        [str(catalog.resolve()), st.st_size, st.st_mtime_ns, dataclasses.asdict(config.catalog), model_key(config.embedding), batch_rows],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def embed_catalog(
    catalog: str | Path,
    config: BuildConfig,
    out_dir: Path,
    *,
    batch_rows: int = 65536,
    show_progress: bool = True,
) -> dict[str, int]:
    """Embed a Parquet catalog batch by batch into ``out_dir/part-NNNNN.parquet``.

    Shard i holds catalog batch i; shards already there are skipped, so an
    interrupted run resumes where it stopped. Returns ``{"computed": rows,
    "resumed": rows}``.
    """
    catalog = Path(catalog)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = parquet_text_spec(catalog, config.catalog)
    n = catalog_rows(catalog)
    counts = {"computed": 0, "resumed": 0}
    with progress(total=n, desc="embed", unit="item", disable=not show_progress) as bar:
        for i in range(-(-n // batch_rows)):
            rows = embed_catalog_batch(catalog, config, spec, i, batch_rows, out_dir, n_rows=n)
            counts["computed" if rows > 0 else "resumed"] += abs(rows)
            bar.update(abs(rows))
    return counts


def embed_catalog_batch(
    catalog: Path, config: BuildConfig, spec, index: int, batch_rows: int, out_dir: Path, *, n_rows: int, device: str | None = None
) -> int:
    """Embed catalog batch ``index`` into ``out_dir/part-{index:05d}.parquet``.

    Returns the rows embedded, or minus the rows of a shard already there
    (resumed). The Ray engine's actors call this too, so both engines write
    the same shards.
    """
    shard = out_dir / f"part-{index:05d}.parquet"
    start = index * batch_rows
    expected = max(0, min(batch_rows, n_rows - start))
    if shard.exists() and pq.ParquetFile(shard).metadata.num_rows == expected:
        return -expected
    batch = catalog_batch(catalog, config.catalog, spec, index, batch_rows)
    # the embedding cache the in-memory build uses (when embedding.use_cache): texts either build
    # embedded are not embedded again; the shards then let an interrupted run resume
    emb_cfg = dataclasses.replace(config.embedding, device=device or config.embedding.device)
    emb, _ = embed_texts(batch.texts, emb_cfg, show_progress=False)
    atomic_write_table(shard, embeddings_table(batch.ids, emb, config.catalog.id_column))
    faults.point("stream.embed_shard_written")
    return len(batch.ids)
