"""The encode stage: embeddings -> the model's codes (N, L), and how well codes reconstruct.

One implementation for every runner: the in-memory estimator, the streaming
build's shards and the Ray engine's actors all call :func:`encode_all`. Rows
are encoded in chunks (activations stay in cache), spread over a thread pool
when one is given; a row's codes do not depend on its batch, chunk or thread
(see :meth:`RQVAE.latent`), so any batching, on any worker, gives the same codes.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from .. import faults
from ..export.atomic import atomic_write_table
from ..progress import progress
from ..model.rqvae import RQVAE
from .shards import EmbeddingShards

CHUNK = 4096  # rows per encoder call


def as_tensor(embeddings: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Embeddings (N, D) as a float32 tensor, sharing memory where possible."""
    if isinstance(embeddings, torch.Tensor):
        return embeddings
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    with warnings.catch_warnings():
        # Arrow's buffers are read-only; the encoder only reads them, so no copy.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(x)


@torch.no_grad()
def encode_all(
    model: RQVAE, x: np.ndarray | torch.Tensor, batch_size: int = CHUNK, pool: ThreadPoolExecutor | None = None
) -> torch.Tensor:
    """The model's codes (N, L) int64 for embeddings (N, D): encoder + residual quantization.

    ``batch_size`` rows go through the encoder at a time; ``pool`` (see
    :func:`encode_workers`) spreads the chunks over threads.
    """
    model.eval()
    t = as_tensor(x)
    starts = range(0, len(t), batch_size)

    def run(s: int) -> torch.Tensor:
        return model.encode(t[s : s + batch_size])

    parts = list(pool.map(run, starts)) if pool is not None and len(starts) > 1 else [run(s) for s in starts]
    if not parts:
        return torch.zeros((0, model.n_levels), dtype=torch.int64)
    return torch.cat(parts)


@contextlib.contextmanager
def _single_threaded_torch():
    """torch ops run in the calling thread while the block runs (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def encode_workers(workers: int | None = None) -> Iterator[ThreadPoolExecutor | None]:
    """A thread pool for :func:`encode_all`, with torch single-threaded meanwhile.

    Each worker thread runs its chunk's ops itself: on these small matrices
    that beats torch's intra-op threading, whose wake-ups cost more than the
    work (``benchmarks/scale.py`` measures it). The thread setting is restored after.
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


def encode_shards(
    model: RQVAE,
    shards: EmbeddingShards,
    codes_dir: Path,
    *,
    batch_rows: int = 65536,
    workers: int | None = None,
    show_progress: bool = True,
    adjust: Callable[[int, torch.Tensor, np.ndarray], np.ndarray] | None = None,
) -> int:
    """Encode every row of ``shards``; write ``codes_dir/part-*.parquet`` (id + one column
    per level). ``workers`` threads share each batch (default: one per core).
    ``adjust(start, x, codes)`` may replace a batch's codes (a warm start's sticky
    codes; ``start`` is the batch's first row). Returns the rows."""
    codes_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with progress(total=len(shards), desc="encode", unit="item", disable=not show_progress) as bar, encode_workers(workers) as pool:
        for batch in shards.iter_batches(batch_rows):
            codes = encode_all(model, batch.embeddings, pool=pool).numpy()
            if adjust is not None:
                codes = adjust(batch.start, as_tensor(batch.embeddings), codes)
            atomic_write_table(codes_dir / f"part-{batch.start:012d}.parquet", codes_table(batch.ids, codes, shards.id_column))
            faults.point("stream.codes_written")
            n += len(codes)
            bar.update(len(codes))
    return n


@torch.no_grad()
def reconstruction_mse(model: RQVAE, x: np.ndarray | torch.Tensor, codes: np.ndarray | None = None, batch: int = 65536) -> float:
    """Mean over items of ||x − decode(codes)||² (``codes``: the model's own when None)."""
    t = as_tensor(x)
    total = 0.0
    for s in range(0, len(t), batch):
        c = encode_all(model, t[s : s + batch]) if codes is None else torch.from_numpy(np.asarray(codes[s : s + batch]))
        total += float((model.decode_codes(c) - t[s : s + batch]).pow(2).sum(1).sum())
    return total / max(len(t), 1)
