"""The collab stage on the Ray engine: co-occurrence counts as Ray Data jobs.

    build_streaming(export_dir, embeddings=..., sequences="s.jsonl", engine="ray")

The local engine's collab stage (:mod:`semantic_ids.stages.behaviour`) with its
reading and counting spread over the cluster:

    count    the sequences file is cut into byte spans at line starts; a Ray Data job
             maps the spans over an actor pool (each actor holds the item id -> row map,
             sent once with ``ray.put``); an actor reads and checks its span
             (:func:`~semantic_ids.stages.sequences.iter_sequences`) and counts it
             (:meth:`~semantic_ids.model.cooccur.CountBlocks.add`) into key files of its
             own, one per block of item rows: ``cooc/part-SSSSS/keys-BBBBB.bin``
    sum      a second job, one task per block: the block's keys from every span, then
             :meth:`~semantic_ids.model.cooccur.CountBlocks.finish_block` writes
             ``cooc/counts-BBBBB.npz``, the local engine's file
    driver   PPMI, the randomized SVD and the ridge map
             (:func:`~semantic_ids.model.collab.fit_from_counts`) over those files

Fusion happens in the encode job (:func:`semantic_ids.runners.ray.ray_encode`).
A block's counts sort its keys before summing them, so neither the spans nor the
order their keys arrive in change a bit: the counts, hence the IDs, are the local
engine's (tested).

Bad sequences: each span is checked as the local engine checks the file; users
repeated across spans are found from one 64-bit hash per user. On any problem the
driver reads the whole file with the local engine's checks, so the error is the
local engine's, word for word, and comes before the sum, the SVD and training.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from ..config import CollabConfig
from ..errors import SequenceError
from ..model.collab import Fusion, fit_from_counts, used_interactions
from ..model.cooccur import BLOCK_ROWS, CountBlocks
from ..model.keys import IdRows
from ..stages.behaviour import CHUNK_USERS
from ..stages.sequences import iter_sequences
from ..stages.shards import EmbeddingShards
from .ray import actor_pool, init_ray, load_ray

log = logging.getLogger(__name__)

SPAN_BYTES = 64 << 20  # at most about this much of the sequences file per span
SPANS_PER_ACTOR = 4  # at least this many spans per actor (a slow span holds up less)
USED = ("users", "interactions", "interactions_held_out")


def ray_fit_fusion(sequences: str | Path, shards: EmbeddingShards, config: CollabConfig, *, seed: int, work_dir: str | Path,
                   address: str | None = None, concurrency: int | None = None, num_gpus: float | None = None,
                   batch_size: int | None = None) -> tuple[Fusion, dict]:
    """:func:`~semantic_ids.stages.behaviour.fit_streaming_fusion` with the counting as Ray Data
    jobs; the same fusion, bit for bit, and the same ``collab`` entry of ``metrics.json``.
    Counts go to ``work_dir/cooc`` (every worker must reach it). ``num_gpus`` and
    ``batch_size`` (other jobs' options) are not used: counting runs on CPUs."""
    del num_gpus, batch_size
    ids = shards.ids()
    counts, used = ray_count(sequences, ids, config.window, Path(work_dir) / "cooc", holdout_last=config.holdout_last,
                             address=address, concurrency=concurrency)
    fusion = fit_from_counts(counts, shards, ids, config, seed=seed)
    return fusion, {**used, "items_with_interactions": int((fusion.counts > 0).sum())}


def ray_count(sequences: str | Path, ids: np.ndarray, window: int, directory: str | Path, *, holdout_last: int = 0,
              block_rows: int = BLOCK_ROWS, address: str | None = None, concurrency: int | None = None,
              span_bytes: int = SPAN_BYTES) -> tuple[CountBlocks, dict[str, int]]:
    """The co-occurrence counts of ``sequences`` (a JSON Lines file) over the items ``ids`` (N,),
    each sequence's last ``holdout_last`` items left out, counted by Ray Data jobs into
    ``directory``; returns the :class:`~semantic_ids.model.cooccur.CountBlocks` (on disk,
    read block by block) and the users and interactions counted (``used_interactions``).

    Raises the local engine's SequenceError for a bad file, after the count job and
    before the sum.
    """
    sequences, directory = Path(sequences).resolve(), Path(directory).resolve()
    index = IdRows(ids)  # repeated ids fail here, as in the local engine
    counts = CountBlocks(len(ids), window, block_rows, directory)  # too many items for the keys fails here
    init_ray(address)
    ray = load_ray()
    actors, cpus, _, _ = actor_pool(concurrency, 0)  # counting is CPU work
    spans = line_spans(sequences, max(actors * SPANS_PER_ACTOR, -(-sequences.stat().st_size // span_bytes)))
    parts: list[dict] = []
    if spans:
        ds = ray.data.from_items([{"part": i, "start": a, "end": b} for i, (a, b) in enumerate(spans)], override_num_blocks=len(spans))
        ds = ds.map_batches(
            _SpanCounter,
            fn_constructor_kwargs={"sequences": str(sequences), "index": ray.put(index), "n_items": len(ids), "window": window,
                                   "holdout_last": holdout_last, "block_rows": block_rows, "directory": str(directory)},
            batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=min(actors, len(spans))), num_cpus=cpus,
        )
        parts = ds.take_all()
    hashes = np.concatenate([np.frombuffer(p["hashes"], dtype=np.uint64) for p in parts]) if parts else np.zeros(0, np.uint64)
    hashes.sort()
    if any(p["failed"] for p in parts) or (hashes[1:] == hashes[:-1]).any():
        _check_whole_file(sequences, index)  # raises the local engine's SequenceError
        if any(p["failed"] for p in parts):
            raise RuntimeError(f"a span of {sequences} failed the sequence checks that the whole file passes")
        log.info("%s: users with equal hashes are different ids", sequences)
    del index, hashes
    counts.longest = max([0, *(int(p["longest"]) for p in parts)])
    used = {k: int(sum(int(p[k]) for p in parts)) for k in USED}

    ds = ray.data.from_items([{"block": b} for b in range(len(counts.bounds))], override_num_blocks=max(1, len(counts.bounds)))
    ds = ds.map_batches(_sum_blocks, fn_kwargs={"n_items": len(ids), "window": window, "block_rows": block_rows,
                                                "directory": str(directory), "parts": len(spans)},
                        batch_size=1, batch_format="numpy", num_cpus=cpus)
    counts.row_sums = np.zeros(len(ids), dtype=np.float64)
    for r in ds.take_all():
        lo, hi = counts.bounds[int(r["block"])]
        counts.row_sums[lo:hi] = np.frombuffer(r["sums"], dtype=np.float64)
        counts.nnz += int(r["nnz"])
    for i in range(len(spans)):
        shutil.rmtree(_part_dir(directory, i), ignore_errors=True)
    log.info("counted %d users over %d spans into %d blocks (%d co-occurrences)", used["users"], len(spans), len(counts.bounds), counts.nnz)
    return counts, used


def line_spans(path: str | Path, n: int) -> list[tuple[int, int]]:
    """At most ``n`` byte spans ``(start, end)`` of about equal size that cover the file
    ``path``, each starting at a line start (no file-wide scan: one seek per cut)."""
    size = Path(path).stat().st_size
    if size == 0:
        return []
    cuts = {0, size}
    with open(path, "rb") as f:
        for i in range(1, n):
            f.seek(size * i // n - 1)
            f.readline()  # to the end of the line holding the byte before the cut
            cuts.add(min(f.tell(), size))
    cuts = sorted(cuts)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if a < b]


def count_span(sequences: Path, index: IdRows, span: tuple[int, int], counts: CountBlocks, holdout_last: int = 0,
               chunk_users: int = CHUNK_USERS) -> dict:
    """Read, check and count one span of the sequences file, as
    :func:`~semantic_ids.stages.behaviour.fit_streaming_fusion` does the whole file, into
    ``counts`` (not finished); returns ``failed`` (the span breaks a check: the caller
    reads the whole file for the error), what :func:`used_interactions` counted, the longest
    sequence and the bytes of every user id's 64-bit hash."""
    import pandas as pd

    cut = holdout_last
    used = dict.fromkeys(USED, 0)
    hashes = []
    try:
        for chunk in iter_sequences(sequences, index, min_length=1, chunk_users=chunk_users, span=span):
            for k, v in used_interactions(chunk.items, cut).items():
                used[k] += v
            counts.add([s[:-cut] if cut else s for s in chunk.items])
            # str: a hash for ids of any kind (3 and "3" then share one: the driver's check tells them apart)
            hashes.append(pd.util.hash_array(np.array([str(u) for u in chunk.users], dtype=object), categorize=False))
    except SequenceError:
        return {"failed": True, **dict.fromkeys(USED, 0), "longest": 0, "hashes": b""}
    h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    return {"failed": False, **used, "longest": counts.longest, "hashes": h.astype(np.uint64).tobytes()}


def _check_whole_file(sequences: Path, index: IdRows) -> None:
    for _ in iter_sequences(sequences, index, min_length=1, chunk_users=CHUNK_USERS):
        pass


def _part_dir(directory: Path, part: int) -> Path:
    return Path(directory) / f"part-{part:05d}"


class _SpanCounter:
    """Ray actor: the id -> row map (from the object store, once); counts spans by index."""

    def __init__(self, sequences: str, index, n_items: int, window: int, holdout_last: int, block_rows: int, directory: str):
        ray = load_ray()
        self.index = ray.get(index) if isinstance(index, ray.ObjectRef) else index
        self.sequences = Path(sequences)
        self.shape = (n_items, window, block_rows)
        self.holdout_last = holdout_last
        self.directory = Path(directory)

    def __call__(self, batch: dict) -> dict:
        rows = []
        for part, start, end in zip(batch["part"], batch["start"], batch["end"]):
            counts = CountBlocks(*self.shape, directory=_part_dir(self.directory, int(part)))
            rows.append(count_span(self.sequences, self.index, (int(start), int(end)), counts, self.holdout_last))
        return _columns(rows)


def _sum_blocks(batch: dict, *, n_items: int, window: int, block_rows: int, directory: str, parts: int) -> dict:
    """Ray task: each block's keys from every span's files -> its counts file; the block's
    row sums (bytes) and stored pairs."""
    counts = CountBlocks(n_items, window, block_rows, Path(directory))
    rows = []
    for b in batch["block"]:
        files = [f for i in range(parts) if (f := _part_dir(Path(directory), i) / f"keys-{int(b):05d}.bin").exists()]
        keys = np.empty(sum(f.stat().st_size for f in files) // 8, dtype=np.int64)
        at = 0
        for f in files:  # into one array: the block's keys and one span's share in memory
            part = np.fromfile(f, dtype=np.int64)
            keys[at: at + len(part)] = part
            at += len(part)
        sums, nnz = counts.finish_block(int(b), keys)
        del keys
        for f in files:
            f.unlink()
        rows.append({"block": int(b), "nnz": nnz, "sums": sums.tobytes()})
    return _columns(rows)


def _columns(rows: list[dict]) -> dict:
    """Rows of scalars and bytes -> a Ray Data batch of columns (bytes as an object column)."""
    return {k: np.array([r[k] for r in rows], dtype=object if isinstance(rows[0][k], bytes) else None) for k in rows[0]}
