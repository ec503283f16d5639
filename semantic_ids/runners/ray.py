"""Ray Data engine: the embed and encode stages as Ray Data jobs (``pip install semantic-ids[ray]``).

    build_streaming(export_dir, catalog=..., engine="ray", ray_options={"address": "auto"})

- embed: catalog batch indices -> ``map_batches`` over an actor pool whose
  actors each hold the sentence-transformers model and write their batch's shard;
- encode: ``read_parquet(embeddings)`` -> ``map_batches`` over actors holding
  the RQ-VAE (sent once, as safetensors bytes) -> ``write_parquet`` of codes;
  with sequences the actors also fuse each batch (the fusion sent once, ``ray.put``);
- with sequences, the co-occurrence counts are Ray Data jobs too
  (:mod:`semantic_ids.runners.ray_behaviour`);
- training (on a sample), the behaviour vectors' SVD and ridge map, and
  collision resolution run on the driver (:mod:`semantic_ids.runners.streaming`),
  over the files these jobs write. The actors call the same stage functions as
  the local engine (:func:`semantic_ids.stages.shards.embed_catalog_batch`,
  :func:`semantic_ids.stages.encode.encode_all`, :meth:`semantic_ids.model.collab.Fusion.fuse`).

Actors take a GPU each when the cluster has one (``num_gpus``); on CPU a
row's codes do not depend on its batch or worker, so the Ray path gives
exactly the codes of the local path (tested on a local Ray instance). Paths
must be readable by every worker (a shared filesystem or object store URI).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import BuildConfig
from ..errors import MissingExtraError

log = logging.getLogger(__name__)

# Reads and writes are I/O: a small CPU share, so an actor pool holding every
# CPU cannot starve them (which deadlocks the job).
IO_ARGS = {"num_cpus": 0.1}


def load_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingExtraError("engine='ray' needs Ray Data: pip install 'semantic-ids[ray]'") from None
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (e.g. ``"auto"`` or ``"ray://head:10001"``), or start a local instance."""
    ray = load_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "logging_level": logging.WARNING}
        if address is None and num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False


def actor_pool(concurrency: int | None, num_gpus: float | None) -> tuple[int, float, float, int]:
    """(actors, cpus reserved per actor, gpus per actor, torch threads per actor).

    On CPU, actors reserve all but one of the cluster's CPUs: Ray Data's file
    listing task needs a whole CPU, and a pool holding every CPU would starve
    it (the job hangs). Each actor still runs as many torch threads as its
    fair share of cores.
    """
    ray = load_ray()
    res = ray.cluster_resources()
    cpus = max(1, int(res.get("CPU", 1)))
    gpus = float(res.get("GPU", 0)) if num_gpus is None else float(num_gpus)
    if gpus > 0:
        actors = int(concurrency or (gpus if num_gpus is None else 1))
        per_gpu = 1.0 if num_gpus is None else float(num_gpus)
        return actors, min(1.0, max(0.1, (cpus - 1) / actors)), per_gpu, max(1, cpus // actors)
    actors = int(concurrency or cpus)
    return actors, max(0.1, (cpus - 1) / actors), 0.0, max(1, cpus // actors)


def _finish(tmp: Path, out_dir: Path) -> None:
    """Swap a finished job's output in place (a crash leaves no half-written dataset)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


class _Embedder:
    """Ray actor: one sentence-transformers model; embeds catalog batches by index
    and writes each one's shard, exactly as the local engine does."""

    def __init__(self, catalog: str, config: dict, spec, batch_rows: int, n_rows: int, out_dir: str, device: str, threads: int):
        import dataclasses

        import torch

        from ..stages.embed import load_model

        torch.set_num_threads(threads)
        self.catalog = Path(catalog)
        self.config = BuildConfig.from_dict(config)
        self.spec = spec
        self.batch_rows = batch_rows
        self.n_rows = n_rows
        self.out_dir = Path(out_dir)
        self.device = device
        load_model(dataclasses.replace(self.config.embedding, device=device))  # once per actor

    def __call__(self, batch: dict) -> dict:
        from ..stages.shards import embed_catalog_batch

        rows = [
            embed_catalog_batch(self.catalog, self.config, self.spec, int(i), self.batch_rows, self.out_dir, n_rows=self.n_rows, device=self.device)
            for i in batch["index"]
        ]
        return {"index": batch["index"], "rows": np.asarray(rows, dtype=np.int64)}


def ray_embed_catalog(
    catalog: str | Path,
    config: BuildConfig,
    out_dir: Path,
    *,
    batch_rows: int = 65536,
    address: str | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    batch_size: int | None = None,
) -> dict[str, int]:
    """Embed a Parquet catalog with a Ray Data job into ``out_dir/part-NNNNN.parquet``.

    The job maps catalog batch indices over an actor pool; each actor reads
    its batch's rows from the catalog, embeds them and writes the shard, so
    the shards are those of the local engine and a rerun skips finished ones.
    """
    from ..stages.catalog import catalog_rows, parquet_text_spec

    del batch_size  # embedding batches are catalog batches of batch_rows rows
    catalog = Path(catalog).resolve()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = parquet_text_spec(catalog, config.catalog)
    n_rows = catalog_rows(catalog)
    n_batches = -(-n_rows // batch_rows)
    init_ray(address)
    ray = load_ray()
    actors, cpus, gpus, threads = actor_pool(concurrency, num_gpus)
    ds = ray.data.from_items([{"index": i} for i in range(n_batches)], override_num_blocks=max(1, n_batches))
    ds = ds.map_batches(
        _Embedder,
        fn_constructor_kwargs={
            "catalog": str(catalog),
            "config": config.to_dict(),
            "spec": spec,
            "batch_rows": batch_rows,
            "n_rows": n_rows,
            "out_dir": str(out_dir.resolve()),
            "device": "cuda" if gpus > 0 else config.embedding.device,
            "threads": threads,
        },
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(actors, max(1, n_batches))),
        num_cpus=cpus,
        num_gpus=gpus,
    )
    rows = np.concatenate([b["rows"] for b in ds.iter_batches(batch_format="numpy")]) if n_batches else np.zeros(0)
    return {"computed": int(rows[rows > 0].sum()), "resumed": int(-rows[rows < 0].sum())}


class _Encoder:
    """Ray actor: one RQ-VAE (rebuilt from safetensors bytes), many batches; with a
    fusion (sent once through the object store), each batch is fused first, as the local
    engine's :class:`~semantic_ids.stages.behaviour.FusedShards` does."""

    def __init__(self, model_bytes: bytes, model_config: dict, experimental: dict, input_dim: int, id_column: str, device: str,
                 threads: int, fusion=None):
        from concurrent.futures import ThreadPoolExecutor

        import torch
        from safetensors.torch import load

        from ..model.keys import IdRows
        from ..model.rqvae import RQVAE

        ray = load_ray()
        self.fusion = ray.get(fusion) if isinstance(fusion, ray.ObjectRef) else fusion
        self.rows = None if self.fusion is None else IdRows(self.fusion.ids)  # id -> row of the fusion's vectors

        # one torch thread per worker thread (see encode.encode_workers)
        torch.set_num_threads(1)
        self.pool = ThreadPoolExecutor(threads) if threads > 1 and device == "cpu" else None
        cfg = BuildConfig.from_dict({"model": model_config, "experimental": experimental})
        self.model = RQVAE(input_dim=input_dim, config=cfg.model, experimental=cfg.experimental)
        self.model.load_state_dict(load(model_bytes))
        self.model.eval().to(device)
        self.device = device
        self.id_column = id_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ..stages.encode import as_tensor, codes_table, encode_all
        from ..stages.shards import EMBEDDING_COLUMN, embedding_matrix

        ids = batch.column(self.id_column).combine_chunks()
        emb = embedding_matrix(batch.column(EMBEDDING_COLUMN), "embeddings batch", ids)
        if self.fusion is not None:  # text + behaviour: the input the model was trained on
            emb = self.fusion.fuse(emb, rows=self.rows.rows(ids.to_numpy(zero_copy_only=False)))
        codes = encode_all(self.model, as_tensor(emb).to(self.device), pool=self.pool)
        return codes_table(ids, codes.cpu().numpy(), self.id_column)


def ray_encode(
    model,
    embeddings: str | Path,
    codes_dir: Path,
    *,
    id_column: str = "item_id",
    address: str | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    batch_size: int = 65536,
    fusion=None,
) -> None:
    """Encode a sharded embeddings dataset with a Ray Data job; write
    ``codes_dir`` (Parquet: the id and ``level_0``.. columns).

    ``fusion``: a :class:`~semantic_ids.model.collab.Fusion` of the dataset's items (a build
    with sequences); it goes to the object store once (``ray.put``), and every actor fuses
    its batches' text embeddings with their items' behaviour vectors before encoding.
    """
    from safetensors.torch import save

    init_ray(address)
    ray = load_ray()
    actors, cpus, gpus, threads = actor_pool(concurrency, num_gpus)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    model_bytes = save(state)
    codes_dir = Path(codes_dir)
    tmp = codes_dir.with_name(f".{codes_dir.name}.ray-{uuid.uuid4().hex[:8]}")
    try:
        ds = ray.data.read_parquet(str(Path(embeddings).resolve()), columns=[id_column, "embedding"], num_cpus=IO_ARGS["num_cpus"])
        ds = ds.map_batches(
            _Encoder,
            fn_constructor_kwargs={
                "model_bytes": model_bytes,
                "model_config": model.config.to_dict(),
                "experimental": model.experimental.to_dict(),
                "input_dim": int(model.input_dim),
                "id_column": id_column,
                "device": "cuda" if gpus > 0 else "cpu",
                "threads": threads,
                "fusion": None if fusion is None else ray.put(fusion),
            },
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus,
        )
        ds.write_parquet(str(tmp.resolve()), ray_remote_args=IO_ARGS)
        _finish(tmp, codes_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
