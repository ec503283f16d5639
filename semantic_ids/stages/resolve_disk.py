"""The resolve stage on disk: counter-level collision resolution of a codes dataset
larger than memory, written straight to ``semantic_ids.parquet``.

The numbering is :func:`semantic_ids.stages.resolve.number_collisions` itself (items
sharing every code numbered in ascending id order), called per partition; only the
order of work differs:
codes are partitioned by level-1 code into Arrow IPC files, and each partition
is sorted and numbered in turn, so memory holds one partition at a time.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .. import faults
from .catalog import CatalogError
from .resolve import number_collisions
from ..export.io import ids_table
from ..model.keys import radix_strides
from .metrics import code_stats_of_counts
from ..progress import progress
from .shards import shard_files
from ..errors import ConfigError


@dataclass
class ResolveStats:
    """What the resolution pass saw: usage, collisions, group sizes."""

    n_items: int
    usage: list[np.ndarray]  # per level, (K_l,) item counts per code
    distinct_by_depth: list[int]  # distinct prefixes of depth 1..L
    largest_group: int
    n_collided_items: int
    group_sizes: dict[int, int]  # group size -> number of groups
    collision_level_size: int = 0  # the largest collision number + 1 (the largest group's size unless numbers were carried over)

    def code_stats(self, codebook_sizes: tuple[int, ...]) -> dict[str, Any]:
        """The dict :func:`semantic_ids.metrics.code_stats` gives for the same codes in memory."""
        return code_stats_of_counts(n_items=self.n_items, usage=self.usage, distinct_by_depth=self.distinct_by_depth,
                                    group_size_counts=self.group_sizes, codebook_sizes=codebook_sizes)


def iter_code_batches(codes_dir: Path, id_column: str, n_levels: int, batch_rows: int) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """(ids, codes (B, L) int64) batches of a codes dataset (ours or a Ray job's)."""
    cols = [id_column, *(f"level_{i}" for i in range(n_levels))]
    for f in shard_files(codes_dir):
        for rb in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=batch_rows, columns=cols):  # one batch, not the shard
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
    number: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> ResolveStats:
    """Counter-level resolution of a codes dataset, on disk; writes ``semantic_ids.parquet``.

    Pass 1 streams the codes into ``partitions`` Arrow IPC files by level-1
    code (contiguous ranges, so partition order is code order), counting code
    usage and hashing every id. Pass 2 sorts each partition by (codes, id) and
    numbers the items sharing all codes in ascending id order with
    :func:`semantic_ids.stages.resolve.number_collisions`, as the in-memory build
    does. The output rows come sorted by semantic ID. ``number(codes (m, L), ids (m,))``,
    when given, numbers one partition's items instead (a warm start carries old
    items' numbers over: :func:`semantic_ids.stages.warm.algorithms.carry_over_counter`).
    """
    sizes = tuple(int(k) for k in codebook_sizes)
    L = len(sizes)
    if float(np.prod([float(k) for k in sizes])) >= 2.0**63:
        raise ConfigError(f"codebook sizes {list(sizes)}: their product must fit in 63 bits for the streaming build")
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
        largest, collided, level_size = 0, 0, 0
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
                    starts = np.flatnonzero(np.append(True, keys[1:] != keys[:-1]))
                    gs = np.diff(np.append(starts, m))  # group sizes
                    codes = (keys[:, None] // strides[None, :]) % np.asarray(sizes)[None, :]
                    ids_np = table.column(id_column).to_numpy(zero_copy_only=False)
                    # groups never span partitions (partitions split level 1)
                    counter = number(codes, ids_np) if number is not None else number_collisions(codes, ids_np).codes[:, -1]
                    level_size = max(level_size, int(counter.max()) + 1)
                    largest = max(largest, int(gs.max()))
                    collided += int(gs[gs > 1].sum())
                    for s, c in zip(*np.unique(gs, return_counts=True)):
                        group_sizes[int(s)] = group_sizes.get(int(s), 0) + int(c)
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
        collision_level_size=level_size,
    )
