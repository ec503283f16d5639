"""The streaming build: catalogs larger than memory, in bounded memory.

Every stage reads and writes sharded Parquet (or Arrow IPC) in a work directory:

    embed    catalog batches -> work/embeddings/<fingerprint>/part-NNNNN.parquet
             (resumable: a finished shard is kept and skipped on a rerun)
    train    the RQ-VAE on a seeded sample (``train.max_train_items``); only the
             sampled rows are read from the shards
    assign   encoder + residual quantization over every shard in large batches
             -> work/run-*/codes/part-*.parquet
    resolve  codes -> partitions by level-1 code (Arrow IPC files on disk);
             each partition sorted by (codes, item id) -> the counter level
    export   semantic_ids.parquet written partition by partition (one row
             group each), inside the staged export directory

Peak memory is one batch of embeddings, the largest partition, and 8 bytes per
item (a hash of its id, to catch ids repeated across batches), whatever the
text or the catalog's size. The IDs are exactly those of the in-memory build
(:class:`~semantic_ids.api.SemanticIDs`) on the same embeddings, config and
seed (tested); only the export's row order differs: rows come sorted by
semantic ID instead of in catalog order.

``engine="ray"`` runs the embed and assign stages as Ray Data jobs
(:mod:`semantic_ids.distributed`); training and resolution stay on the driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import torch

from . import __version__
from . import faults
from .atomic import atomic_write_table
from .cache import cache_root, checkpoint_root
from .catalog import CatalogError, catalog_batch, catalog_rows, parquet_text_spec
from .config import BuildConfig, _to_plain
from .embed import embed_texts, model_key
from .collisions import number_groups
from .export import export_info, ids_table, write_export
from .outdir import check_out_dir
from .sizing import sized_config
from .keys import radix_strides
from .metrics import perplexity_of_counts
from .progress import progress
from .resources import StageTimer
from .rqvae import RQVAE
from .shards import EmbeddingShards, embeddings_table, shard_files
from .train import train_rqvae

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
RECON_SAMPLE = 50_000


# -- assign -------------------------------------------------------------------------
ASSIGN_CHUNK = 4096


@contextlib.contextmanager
def _single_threaded_torch():
    """torch ops run in the calling thread while the block runs (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def assign_codes(model: RQVAE, embeddings: np.ndarray, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """Model codes (B, L) int32 for embeddings (B, D): encoder + residual quantization.

    The batch is cut into chunks of 4096 rows (activations stay in cache),
    spread over ``pool``'s threads when one is given. A row's codes do not
    depend on its batch, chunk or thread (see :meth:`RQVAE.latent`), so any
    batching, on any worker or Ray actor, gives the same codes.
    """
    model.eval()
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    with warnings.catch_warnings():
        # Arrow's buffers are read-only; the encoder only reads them, so no copy.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(x)
    starts = range(0, len(t), ASSIGN_CHUNK)

    def run(s: int) -> torch.Tensor:
        return model.encode(t[s : s + ASSIGN_CHUNK])

    parts = list(pool.map(run, starts)) if pool is not None and len(starts) > 1 else [run(s) for s in starts]
    if not parts:
        return np.zeros((0, model.n_levels), dtype=np.int32)
    return torch.cat(parts).numpy().astype(np.int32)


@contextlib.contextmanager
def assign_workers(workers: int | None = None) -> Iterator[ThreadPoolExecutor | None]:
    """A thread pool for :func:`assign_codes`, with torch single-threaded meanwhile.

    Each worker thread runs its chunk's ops itself: on these small matrices
    that beats torch's intra-op threading, whose wake-ups cost more than the
    work (measured in benchmarks/scale.py). The thread setting is restored after.
    """
    workers = max(1, workers or os.cpu_count() or 1)
    with _single_threaded_torch():
        if workers == 1:
            yield None
        else:
            with ThreadPoolExecutor(workers) as pool:
                yield pool


def codes_table(ids: pa.Array, codes: np.ndarray, id_column: str) -> pa.Table:
    """(ids, codes (B, L)) -> a table with the id and one int32 column per level."""
    cols: dict[str, Any] = {id_column: ids}
    for i in range(codes.shape[1]):
        cols[f"level_{i}"] = pa.array(np.ascontiguousarray(codes[:, i], dtype=np.int32))
    return pa.table(cols)


def assign_shards(
    model: RQVAE,
    shards: EmbeddingShards,
    codes_dir: Path,
    *,
    batch_rows: int = 65536,
    workers: int | None = None,
    show_progress: bool = True,
) -> int:
    """Assign codes to every row of ``shards``; write ``codes_dir/part-*.parquet``.
    ``workers`` threads share each batch (default: one per core). Returns the number of rows."""
    codes_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with progress(total=len(shards), desc="assign", unit="item", disable=not show_progress) as bar, assign_workers(workers) as pool:
        for batch in shards.iter_batches(batch_rows):
            codes = assign_codes(model, batch.embeddings, pool)
            atomic_write_table(codes_dir / f"part-{batch.start:012d}.parquet", codes_table(batch.ids, codes, shards.id_column))
            faults.point("stream.codes_written")
            n += len(codes)
            bar.update(len(codes))
    return n


# -- resolve ------------------------------------------------------------------------
@dataclass
class ResolveStats:
    """What the resolution pass saw: usage, collisions, group sizes."""

    n_items: int
    usage: list[np.ndarray]  # per level, (K_l,) item counts per code
    distinct_by_depth: list[int]  # distinct prefixes of depth 1..L
    largest_group: int
    n_collided_items: int
    group_sizes: dict[int, int]  # group size -> number of groups

    def code_stats(self, codebook_sizes: tuple[int, ...]) -> dict[str, Any]:
        """The same dict as :func:`semantic_ids.metrics.code_stats` gives in memory."""
        n = max(self.n_items, 1)
        return {
            "n_items": self.n_items,
            "codes_used": [int((u > 0).sum()) for u in self.usage],
            "codebook_sizes": [int(k) for k in codebook_sizes],
            "perplexity": [perplexity_of_counts(u) for u in self.usage],
            "collision_rate": 1.0 - self.distinct_by_depth[-1] / n,
            "n_collided_items": self.n_collided_items,
            "largest_group": self.largest_group,
            "collision_rate_by_depth": [1.0 - d / n for d in self.distinct_by_depth],
        }


def iter_code_batches(codes_dir: Path, id_column: str, n_levels: int, batch_rows: int) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """(ids, codes (B, L) int64) batches of a codes dataset (ours or a Ray job's)."""
    cols = [id_column, *(f"level_{i}" for i in range(n_levels))]
    for f in shard_files(codes_dir):
        for rb in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=cols):
            codes = np.column_stack([rb.column(c).to_numpy(zero_copy_only=False) for c in cols[1:]]).astype(np.int64)
            yield rb.column(id_column), codes


def _id_hashes(ids: pa.Array) -> np.ndarray:
    return pd.util.hash_array(ids.to_numpy(zero_copy_only=False), categorize=False)


def _check_unique_ids(codes_dir: Path, id_column: str, n_levels: int, hashes: np.ndarray, batch_rows: int) -> None:
    """Raise CatalogError naming repeated ids; ``hashes`` are every id's 64-bit hash."""
    order = np.sort(hashes)
    dup_hashes = np.unique(order[1:][order[1:] == order[:-1]])
    if not len(dup_hashes):
        return
    # Hash equality is only a candidate: count the actual ids among the candidates.
    seen: dict[Any, int] = {}
    for ids, _ in iter_code_batches(codes_dir, id_column, n_levels, batch_rows):
        hit = np.isin(_id_hashes(ids), dup_hashes)
        for v in ids.filter(pa.array(hit)).to_pylist():
            seen[v] = seen.get(v, 0) + 1
    dups = [v for v, c in seen.items() if c > 1]
    if dups:
        raise CatalogError(f"catalog: {len(dups)} duplicate {id_column!r} value(s), e.g. {sorted(dups, key=str)[:10]}")


def resolve_to_parquet(
    codes_dir: Path,
    out_file: Path,
    *,
    codebook_sizes: tuple[int, ...],
    id_column: str,
    metadata: dict[str, Any],
    partitions: int = 64,
    batch_rows: int = 262144,
    show_progress: bool = True,
) -> ResolveStats:
    """Counter-level resolution of a codes dataset, on disk; writes ``semantic_ids.parquet``.

    Pass 1 streams the codes into ``partitions`` Arrow IPC files by level-1
    code (contiguous ranges, so partition order is code order), counting code
    usage and hashing every id. Pass 2 sorts each partition by (codes, id) and
    numbers the items sharing all codes in ascending id order, exactly as
    :func:`semantic_ids.collisions.resolve_counter` does in memory. The output
    rows come sorted by semantic ID.
    """
    sizes = tuple(int(k) for k in codebook_sizes)
    L = len(sizes)
    if float(np.prod([float(k) for k in sizes])) >= 2.0**63:
        raise ValueError(f"codebook sizes {list(sizes)}: their product must fit in 63 bits for the streaming build")
    strides = radix_strides(sizes)
    n_parts = max(1, min(int(partitions), sizes[0]))
    part_dir = out_file.parent / f".{out_file.name}.partitions-{uuid.uuid4().hex[:8]}"
    part_dir.mkdir(parents=True)
    usage = [np.zeros(k, dtype=np.int64) for k in sizes]
    hashes: list[np.ndarray] = []
    writers: dict[int, ipc.RecordBatchFileWriter] = {}
    n = 0
    try:
        for ids, codes in iter_code_batches(codes_dir, id_column, L, batch_rows):
            for lvl, k in enumerate(sizes):
                bad = (codes[:, lvl] < 0) | (codes[:, lvl] >= k)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise ValueError(f"{codes_dir}: item {ids[i].as_py()!r} has level-{lvl} code {codes[i, lvl]}, codebook size {k}")
                usage[lvl] += np.bincount(codes[:, lvl], minlength=k)
            hashes.append(_id_hashes(ids))
            key = codes @ strides  # (B,) int64, numeric order = code order
            part = codes[:, 0] * n_parts // sizes[0]
            table = pa.table({id_column: ids, "key": pa.array(key)})
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(n_parts + 1))
            for p in np.flatnonzero(np.diff(bounds)):
                piece = table.take(pa.array(order[bounds[p] : bounds[p + 1]]))
                if p not in writers:
                    writers[p] = ipc.new_file(str(part_dir / f"part-{p:05d}.arrow"), piece.schema)
                writers[p].write_table(piece)
            n += len(codes)
        for w in writers.values():
            w.close()
        writers.clear()
        if n == 0:
            raise CatalogError(f"{codes_dir}: no items to resolve")
        _check_unique_ids(codes_dir, id_column, L, np.concatenate(hashes), batch_rows)
        del hashes

        distinct = [0] * L
        largest, collided = 0, 0
        group_sizes: dict[int, int] = {}
        writer: pq.ParquetWriter | None = None
        tmp = out_file.with_name(f".{out_file.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with progress(total=n, desc="resolve", unit="item", disable=not show_progress) as bar:
                for p in range(n_parts):
                    f = part_dir / f"part-{p:05d}.arrow"
                    if not f.exists():
                        continue
                    with pa.memory_map(str(f)) as src:
                        table = ipc.open_file(src).read_all()
                    table = table.take(pc.sort_indices(table, sort_keys=[("key", "ascending"), (id_column, "ascending")]))
                    f.unlink()
                    keys = table.column("key").to_numpy()
                    m = len(keys)
                    for d in range(L):
                        pre = keys // strides[d]
                        distinct[d] += int(1 + np.count_nonzero(pre[1:] != pre[:-1]))
                    new_group = np.ones(m, dtype=bool)
                    new_group[1:] = keys[1:] != keys[:-1]
                    counter, gs = number_groups(new_group)
                    largest = max(largest, int(gs.max()))
                    collided += int(gs[gs > 1].sum())
                    for s, c in zip(*np.unique(gs, return_counts=True)):
                        group_sizes[int(s)] = group_sizes.get(int(s), 0) + int(c)
                    codes = (keys[:, None] // strides[None, :]) % np.asarray(sizes)[None, :]
                    ids_np = table.column(id_column).to_numpy(zero_copy_only=False)
                    piece = ids_table(ids_np, np.column_stack([codes, counter]), id_column, metadata)
                    if writer is None:
                        writer = pq.ParquetWriter(str(tmp), piece.schema)
                    writer.write_table(piece)
                    faults.point("stream.resolve_partition_written")
                    bar.update(m)
            assert writer is not None
            writer.close()
            writer = None
            tmp.replace(out_file)
        finally:
            if writer is not None:
                writer.close()
            tmp.unlink(missing_ok=True)
    finally:
        for w in writers.values():
            w.close()
        shutil.rmtree(part_dir, ignore_errors=True)
    return ResolveStats(
        n_items=n,
        usage=usage,
        distinct_by_depth=distinct,
        largest_group=largest,
        n_collided_items=collided,
        group_sizes=dict(sorted(group_sizes.items())),
    )


# -- embed --------------------------------------------------------------------------
def embeddings_fingerprint(catalog: Path, config: BuildConfig, batch_rows: int) -> str:
    """What a catalog's embedding shards depend on: the file, the text config, the model."""
    st = catalog.stat()
    blob = json.dumps(
        [str(catalog.resolve()), st.st_size, st.st_mtime_ns, _to_plain(config.catalog), model_key(config.embedding), batch_rows],
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


# -- the build ----------------------------------------------------------------------
@dataclass(frozen=True)
class StreamResult:
    out: Path
    metrics: dict[str, Any]


def build_streaming(
    out: str | Path,
    *,
    catalog: str | Path | None = None,
    embeddings: str | Path | None = None,
    config: BuildConfig | None = None,
    work_dir: str | Path | None = None,
    batch_rows: int = 65536,
    partitions: int = 64,
    engine: str = "local",
    ray_options: dict[str, Any] | None = None,
    workers: int | None = None,
    show_progress: bool = True,
) -> StreamResult:
    """Build semantic IDs for a catalog of any size; write the export to ``out``.

    Parameters
    ----------
    out : export directory (replaced atomically; a failed run leaves the old one).
    catalog : a Parquet catalog, read in batches (unless ``embeddings`` is given).
    embeddings : a sharded embeddings dataset (a ``.parquet`` file or a directory
        of them, with the id column and an ``embedding`` list column); skips embedding.
    config : BuildConfig; ``train.max_train_items`` is the training sample size.
    work_dir : where shards and partitions go (default: the cache dir's
        ``stream/``); embedding shards stay there so a rerun resumes.
    batch_rows : rows per batch for embedding and assignment.
    partitions : on-disk partitions for collision resolution.
    engine : ``"local"`` or ``"ray"`` (embed and assign as Ray Data jobs).
    ray_options : passed to :mod:`semantic_ids.distributed` (``address``,
        ``concurrency``, ``num_gpus``, ``batch_size``).
    workers : threads for local assignment (default: one per core).
    """
    cfg = config or BuildConfig()
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}; use one of {ENGINES}")
    if cfg.collision.strategy != "counter":
        raise ValueError(
            f"collision.strategy={cfg.collision.strategy!r} is not available in the streaming build (counter only); "
            "use the in-memory build for 'balanced'"
        )
    if catalog is None and embeddings is None:
        raise ValueError("build_streaming needs a catalog or an embeddings dataset")
    out = check_out_dir(out, inputs=[catalog, embeddings, work_dir])  # before any heavy work
    ray_options = dict(ray_options or {})
    work = Path(work_dir) if work_dir is not None else cache_root(cfg.embedding) / "stream"
    run_dir = work / f"run-{uuid.uuid4().hex[:8]}"
    timer = StageTimer()
    wall = time.perf_counter()
    id_column = cfg.catalog.id_column
    embed_stats: dict[str, Any] = {"source": "given"}
    text_columns: list[str] | None = None
    try:
        if embeddings is None:
            catalog = Path(catalog)
            text_columns = list(parquet_text_spec(catalog, cfg.catalog)[0])  # recorded for assign
            emb_dir = work / "embeddings" / embeddings_fingerprint(catalog, cfg, batch_rows)
            with timer.stage("embed"):
                if engine == "ray":
                    from .distributed import ray_embed_catalog

                    embed_stats = {"source": cfg.embedding.model, **ray_embed_catalog(catalog, cfg, emb_dir, batch_rows=batch_rows, **ray_options)}
                else:
                    embed_stats = {"source": cfg.embedding.model, **embed_catalog(catalog, cfg, emb_dir, batch_rows=batch_rows, show_progress=show_progress)}
            embeddings = emb_dir
        shards = EmbeddingShards(embeddings, id_column)
        if len(shards) == 0:
            raise CatalogError(f"{embeddings}: no items")
        cfg = sized_config(cfg, len(shards))  # unset codebook sizes follow the catalog size
        ckpt_root = checkpoint_root(cfg)
        with timer.stage("train"):
            result = train_rqvae(shards, cfg.model, cfg.train, seed=cfg.seed, show_progress=show_progress, checkpoint_dir=ckpt_root)
        model = result.model
        codes_dir = run_dir / "codes"
        with timer.stage("assign"):
            if engine == "ray":
                from .distributed import ray_assign

                ray_assign(model, embeddings, codes_dir, id_column=id_column, **ray_options)
            else:
                assign_shards(model, shards, codes_dir, batch_rows=batch_rows, workers=workers, show_progress=show_progress)
        ids_file = run_dir / "semantic_ids.parquet"

        with timer.stage("resolve"):
            stats = resolve_to_parquet(
                codes_dir,
                ids_file,
                codebook_sizes=model.codebook_sizes,
                id_column=id_column,
                metadata=export_info(cfg, model, len(shards), model.n_levels + 1),
                partitions=partitions,
                show_progress=show_progress,
            )
        if stats.n_items != len(shards):
            raise RuntimeError(f"assigned {stats.n_items} items of {len(shards)}; the codes dataset is incomplete")
        with timer.stage("recon"):
            recon, n_recon = _sample_recon(model, shards, cfg.seed)
        code = stats.code_stats(model.codebook_sizes)
        metrics: dict[str, Any] = {
            "library_version": __version__,
            "build": {"mode": "streaming", "engine": engine, "batch_rows": batch_rows, "partitions": partitions, "workers": workers or os.cpu_count()},
            "n_items": stats.n_items,
            **({"text_columns": text_columns} if text_columns is not None else {}),
            "embedding": {**embed_stats, "dim": model.input_dim},
            "reconstruction_mse": recon,
            "reconstruction_sample": n_recon,
            **code,
            "collision_rate_before_resolution": code["collision_rate"],
            "unique_after_resolution": True,  # by construction: (codes, counter) differ within every group
            "collision_level_size": stats.largest_group,
            "collision_group_sizes": {str(k): v for k, v in stats.group_sizes.items()},
            "training": {"epochs": len(result.history), "train_items": min(len(shards), cfg.train.max_train_items or len(shards)), "history": result.history},
        }
        start = time.perf_counter()

        def final_metrics() -> dict[str, Any]:
            stages = {**timer.stages, "export": {"seconds": round(time.perf_counter() - start, 3)}}
            return {**metrics, "stages": stages, "total_seconds": round(time.perf_counter() - wall, 3)}

        with timer.stage("export"):
            path = write_export(
                out,
                config=cfg,
                model=model,
                metrics=final_metrics,
                write_ids=lambda p, _info: shutil.move(str(ids_file), p),
                n_items=stats.n_items,
            )
        metrics["stages"] = timer.stages
        metrics["total_seconds"] = round(time.perf_counter() - wall, 3)
        if result.checkpoint is not None:
            result.checkpoint.remove()
        log.info("streaming build: %d items, collision rate %.4f, %.1f s", stats.n_items, code["collision_rate"], metrics["total_seconds"])
        return StreamResult(out=path, metrics=metrics)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _sample_recon(model: RQVAE, shards: EmbeddingShards, seed: int) -> tuple[float, int]:
    """Mean squared reconstruction error over a seeded sample of up to RECON_SAMPLE items."""
    n = len(shards)
    rng = np.random.default_rng(seed)
    rows = np.arange(n) if n <= RECON_SAMPLE else np.sort(rng.choice(n, RECON_SAMPLE, replace=False))
    x = torch.from_numpy(shards.take(rows))
    with torch.no_grad():
        xh = model.decode_codes(model.encode(x))
        return float((xh - x).pow(2).sum(1).mean()), int(len(rows))
