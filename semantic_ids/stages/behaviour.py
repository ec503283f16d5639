"""The collab stage of the streaming build: behaviour from a sequences file, in bounded memory.

``build --streaming --sequences S`` fuses behaviour as the in-memory build does
(:mod:`semantic_ids.model.collab`), with every large piece on disk or in batches:

    count    the sequences file is read ``chunk_users`` users at a time and checked
             as :func:`~semantic_ids.stages.sequences.read_sequences` checks it; each
             chunk's co-occurring pairs go to on-disk key files, one per block of
             item rows, then each block becomes its CSR counts (``counts-NNNNN.npz``)
             (:class:`~semantic_ids.model.cooccur.CountBlocks`)
    svd      PPMI and the randomized SVD read the counts block by block
             (:mod:`semantic_ids.model.svd`)
    ridge    the text -> behaviour map is fitted on a seeded sample of the items with
             interactions (``collab.RIDGE_SAMPLE``), read from the embedding shards
    fuse     :class:`FusedShards` fuses each batch of embeddings as the train, encode and
             reconstruction stages read it

The counts, the SVD and the ridge map are those of the in-memory build, bit for
bit (the same functions over the same blocks), so on the same embeddings, in the
same order, the streaming build gives the in-memory build's IDs (tested).

Memory: one chunk of users, one block of counts, the id -> row map (about 100
bytes per item), then at most three dense (N, dim + 10) float64 factors of the SVD
(1.8 GB at 1M items; :func:`~semantic_ids.model.svd.randomized_svd`). At 1M items x
10.3M events the stage peaked at 2,434 MiB (4,143 MiB before the SVD worked in place
and the shards were read without pre-buffering; ``benchmarks/collab_memory.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import CollabConfig
from ..model.collab import Fusion, fit_from_counts, used_interactions
from ..model.cooccur import CountBlocks
from ..model.keys import IdRows
from .sequences import iter_sequences
from .shards import EmbeddingBatch, EmbeddingShards

log = logging.getLogger(__name__)

CHUNK_USERS = 100_000  # users read (and counted) at a time


def fit_streaming_fusion(sequences: str | Path, shards: EmbeddingShards, config: CollabConfig, *, seed: int,
                         work_dir: str | Path, chunk_users: int = CHUNK_USERS) -> tuple[Fusion, dict]:
    """The fusion of ``shards``' items (in dataset order) with the behaviour in ``sequences``;
    returns it and the ``collab`` entry of ``metrics.json``. Counts go to ``work_dir/cooc``."""
    ids = shards.ids()
    index = IdRows(ids)
    counts = CountBlocks(len(ids), config.window, directory=Path(work_dir) / "cooc")
    cut = config.holdout_last
    used = {"users": 0, "interactions": 0, "interactions_held_out": 0}
    for chunk in iter_sequences(sequences, index, min_length=1, chunk_users=chunk_users):
        for k, v in used_interactions(chunk.items, cut).items():
            used[k] += v
        counts.add([s[:-cut] if cut else s for s in chunk.items])
    del index
    counts.finish()
    fusion = fit_from_counts(counts, shards, ids, config, seed=seed)
    stats = {**used, "items_with_interactions": int((fusion.counts > 0).sum())}
    return fusion, stats


class FusedShards:
    """An :class:`~semantic_ids.stages.shards.EmbeddingShards` whose batches are the RQ-VAE's
    fused input (text and behaviour), for every stage that reads the shards.

    ``fusion.ids`` must be the shards' ids in dataset order (as
    :func:`fit_streaming_fusion` makes it): row ``i`` of the shards uses ``fusion.vectors[i]``.
    """

    def __init__(self, shards: EmbeddingShards, fusion: Fusion):
        if len(fusion.ids) != len(shards):
            raise ValueError(f"the fusion holds {len(fusion.ids)} items, the shards {len(shards)}")
        self.text = shards
        self.fusion = fusion
        self.path = shards.path
        self.id_column = shards.id_column

    def __len__(self) -> int:
        return len(self.text)

    @property
    def dim(self) -> int:
        return self.fusion.dim

    def ids(self) -> np.ndarray:
        return self.text.ids()

    def iter_batches(self, batch_rows: int = 65536) -> Iterator[EmbeddingBatch]:
        for b in self.text.iter_batches(batch_rows):
            rows = np.arange(b.start, b.start + len(b.embeddings))
            yield EmbeddingBatch(ids=b.ids, embeddings=self.fusion.fuse(b.embeddings, rows=rows), start=b.start)

    def take(self, rows: np.ndarray, batch_rows: int = 65536) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        return self.fusion.fuse(self.text.take(rows, batch_rows), rows=rows)


def in_export_order(fusion: Fusion, ids: np.ndarray) -> Fusion:
    """``fusion`` with its items in the order of ``ids`` (the export's rows: the streaming
    export comes sorted by semantic ID, and an export's collab vectors follow its rows)."""
    from ..model.keys import rows_of

    perm = rows_of(ids, fusion.ids)
    return Fusion(fusion.config, np.asarray(ids), fusion.vectors[perm], fusion.counts[perm], fusion.ridge)
