"""The streaming build: catalogs larger than memory, in bounded memory.

Every stage reads and writes sharded Parquet (or Arrow IPC) in a work directory:

    embed    catalog batches -> work/embeddings/<fingerprint>/part-NNNNN.parquet
             (resumable: a finished shard is kept and skipped on a rerun)
    train    the RQ-VAE on a seeded sample (``train.max_train_items``); only the
             sampled rows are read from the shards
    encode   encoder + residual quantization over every shard in large batches
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

``engine="ray"`` runs the embed and encode stages, and with sequences the
co-occurrence counts, as Ray Data jobs (:mod:`semantic_ids.runners.ray`,
:mod:`semantic_ids.runners.ray_behaviour`); training, the behaviour vectors' SVD
and ridge map, and resolution stay on the driver.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..stages.cache import cache_root, checkpoint_root
from ..stages.catalog import CatalogError, parquet_text_spec
from ..config import BuildConfig
from ..stages.encode import as_tensor, encode_shards, reconstruction_mse
from ..export.io import export_info, write_export
from ..stages.resolve_disk import resolve_to_parquet
from ..stages.metrics import build_metrics
from ..resources import StageTimer, rss_bytes
from ..model.rqvae import RQVAE
from ..stages.shards import EmbeddingShards, embed_catalog, embeddings_fingerprint
from ..model.sizing import sized_config
from ..stages.train import train_rqvae
from .build import BuildResult
from ..threads import fixed_threads

log = logging.getLogger(__name__)

RECON_SAMPLE = 50_000
OWNER_FILE = "owner.json"  # in each run directory: the build's pid and host


# -- the build ----------------------------------------------------------------------
def build_streaming(
    export_dir: str | Path,
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
    previous: str | Path | None = None,
    show_progress: bool = True,
    sequences: str | Path | None = None,
) -> BuildResult:
    """Build semantic IDs for a catalog of any size; write the export to ``export_dir``.

    The same as ``build(export_dir, streaming=True, ...)``
    (:func:`semantic_ids.runners.build.build`), which checks every option first.

    Parameters
    ----------
    export_dir : export directory (replaced atomically; a failed run leaves the old one).
    catalog : a Parquet catalog, read in batches (unless ``embeddings`` is given).
    embeddings : a sharded embeddings dataset (a ``.parquet`` file or a directory
        of them, with the id column and an ``embedding`` list column); skips embedding.
    config : BuildConfig; ``train.max_train_items`` is the training sample size.
    work_dir : where shards and partitions go (default: the cache dir's
        ``stream/``); embedding shards stay there so a rerun resumes.
    batch_rows : rows per batch for embedding and encoding.
    partitions : on-disk partitions for collision resolution.
    engine : ``"local"`` or ``"ray"`` (embed, co-occurrence counts and encode as Ray Data jobs).
    ray_options : passed to :mod:`semantic_ids.runners.ray` (``address``,
        ``concurrency``, ``num_gpus``, ``batch_size``).
    workers : threads for local encoding (default: one per core).
    previous : an earlier export to warm-start from:
        training starts from its model, codes are renumbered to its codes, and old
        items keep their IDs where the new model agrees. Memory is then no longer
        bounded by the batch: the previous export's ids and codes, every item's id
        and previous codes, and at the end the new ids and codes (for the
        ``warm_start`` metrics) are held in memory. The IDs are those of the
        in-memory warm start on the same embeddings while the items both builds
        hold fit in ``train.max_train_items`` (the codes are aligned on a sample
        of that size beyond it).
    show_progress : show progress bars.
    sequences : JSON Lines of user sequences to fuse behaviour in, in bounded memory
        (:mod:`semantic_ids.stages.behaviour`; with ``engine="ray"`` the counting runs as
        Ray Data jobs, :mod:`semantic_ids.runners.ray_behaviour`, and the encode job fuses).
    """
    from .build import build

    return build(export_dir, streaming=True, catalog=catalog, embeddings=embeddings, config=config, work_dir=work_dir,
                 batch_rows=batch_rows, partitions=partitions, engine=engine, ray_options=ray_options, workers=workers,
                 previous=previous, show_progress=show_progress, sequences=sequences)


def run_streaming(
    out: Path,
    *,
    catalog: str | Path | None,
    embeddings: str | Path | None,
    config: BuildConfig,
    work_dir: str | Path | None,
    batch_rows: int,
    partitions: int,
    engine: str,
    ray_options: dict[str, Any] | None,
    workers: int | None,
    previous: Any,
    show_progress: bool,
    sequences: str | Path | None = None,
) -> BuildResult:
    """The streaming runner, for :func:`semantic_ids.runners.build.build` once it has
    checked every option and the export directory ``out``; ``previous`` is a
    :class:`~semantic_ids.stages.warm.start.WarmStart` or None."""
    cfg = config
    warm = None
    if previous is not None:
        warm = previous  # read fully: the export may replace it
        cfg = warm.config(cfg)
    ray_options = dict(ray_options or {})
    work = Path(work_dir) if work_dir is not None else cache_root(cfg.embedding) / "stream"
    remove_dead_runs(work)
    run_dir = work / f"run-{uuid.uuid4().hex[:8]}"
    timer = StageTimer()
    wall = time.perf_counter()
    id_column = cfg.catalog.id_column
    embed_stats: dict[str, Any] = {"source": "given"}
    text_columns: list[str] | None = None
    owner = None
    try:
        run_dir.mkdir(parents=True)
        owner = _claim(run_dir)  # released when this process ends, however it ends
        if embeddings is None:
            catalog = Path(catalog)
            text_columns = list(parquet_text_spec(catalog, cfg.catalog)[0])  # recorded for later `assign` runs
            emb_dir = work / "embeddings" / embeddings_fingerprint(catalog, cfg, batch_rows)
            with timer.stage("embed"):
                if engine == "ray":
                    from .ray import ray_embed_catalog

                    embed_stats = {"source": cfg.embedding.model, **ray_embed_catalog(catalog, cfg, emb_dir, batch_rows=batch_rows, **ray_options)}
                else:
                    embed_stats = {"source": cfg.embedding.model, **embed_catalog(catalog, cfg, emb_dir, batch_rows=batch_rows, show_progress=show_progress)}
            embeddings = emb_dir
        shards = EmbeddingShards(embeddings, id_column)
        if len(shards) == 0:
            raise CatalogError(f"{embeddings}: no items")
        cfg = sized_config(cfg, len(shards))  # unset codebook sizes follow the catalog size
        ckpt_root = checkpoint_root(cfg)
        fusion, collab_stats = None, None
        if sequences is not None:
            from ..stages.behaviour import FusedShards, fit_streaming_fusion

            with timer.stage("collab"):
                if engine == "ray":  # counting as Ray Data jobs; the SVD and the ridge map here
                    from .ray_behaviour import ray_fit_fusion

                    fusion, collab_stats = ray_fit_fusion(sequences, shards, cfg.collab, seed=cfg.seed, work_dir=run_dir,
                                                          **ray_options)
                else:
                    fusion, collab_stats = fit_streaming_fusion(sequences, shards, cfg.collab, seed=cfg.seed, work_dir=run_dir)
                if warm is not None:  # the new behaviour space in the previous one's coordinates
                    fusion = warm.align_fusion(fusion)
            shards = FusedShards(shards, fusion)  # train, encode and recon read fused batches
        if warm is not None:
            warm.prepare(shards.ids(), shards.dim)
        with timer.stage("train"), fixed_threads(cfg.train.threads):  # IDs independent of the core count
            result = train_rqvae(shards, cfg.model, cfg.train, seed=cfg.seed, show_progress=show_progress, checkpoint_dir=ckpt_root,
                                 experimental=cfg.experimental,
                                 **({} if warm is None else warm.train_kwargs()))
        model = result.model
        if warm is not None:
            with timer.stage("align"):
                warm.align(model, lambda rows: as_tensor(shards.take(rows)), cfg.train.max_train_items, cfg.seed)
        codes_dir = run_dir / "codes"
        with timer.stage("encode"):
            if engine == "ray":
                from .ray import ray_encode

                ray_encode(model, embeddings, codes_dir, id_column=id_column, fusion=fusion, **ray_options)
            else:
                encode_shards(model, shards, codes_dir, batch_rows=batch_rows, workers=workers, show_progress=show_progress,
                              adjust=None if warm is None else (lambda start, x, codes: warm.sticky(model, x, codes, start)))
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
                number=None if warm is None else warm.number,
            )
        if stats.n_items != len(shards):
            raise RuntimeError(f"encoded {stats.n_items} items of {len(shards)}; the codes dataset is incomplete")
        with timer.stage("recon"):
            recon, n_recon = _sample_recon(model, shards, cfg.seed)
        code = stats.code_stats(model.codebook_sizes)
        metrics = build_metrics(
            mode="streaming",
            build={"engine": engine, "batch_rows": batch_rows, "partitions": partitions, "workers": workers or os.cpu_count()},
            codebook_sizes=model.codebook_sizes,
            code_stats_before=code,
            collision_level_size=stats.collision_level_size,
            embedding={**embed_stats, "dim": model.input_dim},
            reconstruction=(recon, n_recon),
            training={"epochs": len(result.history), "train_items": min(len(shards), cfg.train.max_train_items or len(shards)),
                      "history": result.history},
            stages=timer.stages,
            total_seconds=round(time.perf_counter() - wall, 3),
            collab=collab_stats,
        )
        metrics["text_columns"] = text_columns
        if warm is not None:
            metrics["warm_start"] = warm.metrics(*_ids_and_codes(ids_file, id_column))
        start = time.perf_counter()

        def final_metrics() -> dict[str, Any]:
            stages = {**timer.stages, "export": {"seconds": round(time.perf_counter() - start, 3), "peak_rss_mb": round(rss_bytes() / 2**20, 1)}}
            return {**metrics, "stages": stages, "total_seconds": round(time.perf_counter() - wall, 3)}

        with timer.stage("export"):
            path = write_export(
                out,
                config=cfg,
                model=model,
                metrics=final_metrics,
                write_ids=lambda p, _info: shutil.move(str(ids_file), p),
                n_items=stats.n_items,
                fusion=None if fusion is None else _in_export_order(fusion, ids_file, id_column),
            )
        metrics["stages"] = timer.stages
        metrics["total_seconds"] = round(time.perf_counter() - wall, 3)
        if result.checkpoint is not None:
            result.checkpoint.remove()
        log.info("streaming build: %d items, collision rate %.4f, %.1f s", stats.n_items, code["collision_rate"], metrics["total_seconds"])
        return BuildResult(export_dir=path, metrics=metrics)
    finally:
        if owner is not None:
            owner.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def _in_export_order(fusion, ids_file: Path, id_column: str):
    """The fusion with its items in ``semantic_ids.parquet``'s row order (sorted by semantic ID)."""
    import pyarrow.parquet as pq

    from ..stages.behaviour import in_export_order

    return in_export_order(fusion, pq.read_table(ids_file, columns=[id_column]).column(id_column).to_numpy())


def _sample_recon(model: RQVAE, shards: EmbeddingShards, seed: int) -> tuple[float, int]:
    """Reconstruction error over a seeded sample of up to RECON_SAMPLE items."""
    n = len(shards)
    rng = np.random.default_rng(seed)
    rows = np.arange(n) if n <= RECON_SAMPLE else np.sort(rng.choice(n, RECON_SAMPLE, replace=False))
    return reconstruction_mse(model, shards.take(rows)), int(len(rows))


def _ids_and_codes(ids_file: Path, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """The ids and resolved codes (N, L + 1) of a written ``semantic_ids.parquet``."""
    import pyarrow.parquet as pq

    table = pq.read_table(ids_file, columns=[id_column, "codes"])
    codes = table.column("codes").combine_chunks()
    width = len(codes[0]) if len(codes) else 0
    return table.column(id_column).to_numpy(), codes.flatten().to_numpy().reshape(-1, width).astype(np.int64)


def _claim(run_dir: Path):
    """Write the run's owner file (pid, host) and hold an exclusive lock on it for the
    life of the open file, which the OS drops when the process dies, even by SIGKILL."""
    fh = open(run_dir / OWNER_FILE, "w")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    fh.flush()
    return fh


def remove_dead_runs(work: Path) -> list[Path]:
    """Remove the run directories (``work/run-*``) of streaming builds that were killed:
    a ``finally`` cannot run after SIGKILL. A directory goes only when all three say its
    build is gone: its owner file names this host, that process no longer runs, and
    nobody holds the owner file's lock (the lock also covers a build in another PID
    namespace that shares this host name). A live build's directory, another host's,
    and any directory without an owner file are left alone. Returns those removed."""
    removed = []
    host = socket.gethostname()
    for d in sorted(work.glob("run-*")) if work.is_dir() else []:
        try:
            owner = json.loads((d / OWNER_FILE).read_text())
            pid, same_host = int(owner["pid"]), owner["host"] == host
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not same_host or _alive(pid) or _locked(d / OWNER_FILE):
            continue
        shutil.rmtree(d, ignore_errors=True)
        log.info("removed %s, left by a streaming build that was killed (pid %d)", d, pid)
        removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _locked(path: Path) -> bool:
    """Whether another open file holds ``path``'s lock (a running build)."""
    try:
        with open(path) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True  # cannot tell: keep it
    return False
