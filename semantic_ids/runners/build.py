"""The one entry point of a build: ``build(out, catalog=...)``; the CLI and ``pipelines/build.py`` call it.

A build runs the stages read -> embed -> train -> encode -> resolve -> export
(-> metrics). Two runners share the stage functions:

- in memory (default): the catalog is read and embedded here, then the
  estimator (:class:`~semantic_ids.api.SemanticIDs`) trains, encodes and
  resolves, and saves the export;
- streaming (``streaming=True``, or ``engine="ray"``): every stage works on
  sharded Parquet in bounded memory (:mod:`semantic_ids.stream`), with the
  embed and encode stages optionally run as Ray Data jobs
  (:mod:`semantic_ids.distributed`).

Every input is checked before any heavy work: the output directory (only an
earlier export or an empty directory is replaced), a previous export's
checksums, the combination of options, then the catalog and sequences.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..stages.catalog import Catalog
from ..config import BuildConfig
from ..export.outdir import check_out_dir
from ..errors import ConfigError


@dataclass(frozen=True)
class BuildResult:
    """Where the export went and its metrics (``metrics.json``); ``estimator`` is the
    fitted :class:`~semantic_ids.api.SemanticIDs` of an in-memory build, else None."""

    out: Path
    metrics: dict[str, Any]
    estimator: Any = None


def build(
    out: str | Path,
    *,
    catalog: str | Path | pd.DataFrame | Catalog | None = None,
    embeddings: Any = None,
    sequences: str | Path | None = None,
    previous: str | Path | None = None,
    config: BuildConfig | None = None,
    streaming: bool = False,
    engine: str = "local",
    work_dir: str | Path | None = None,
    batch_rows: int = 65536,
    partitions: int = 64,
    ray_options: dict[str, Any] | None = None,
    workers: int | None = None,
    show_progress: bool = True,
    also_reads: tuple[str | Path, ...] = (),
) -> BuildResult:
    """Build the semantic IDs of a catalog and write the export directory ``out``.

    Parameters
    ----------
    out : export directory: new, empty, or an earlier export (replaced
        atomically; a failed run leaves the old one).
    catalog : a catalog file (.parquet, .csv, .jsonl; Parquet only when
        streaming), a DataFrame or a :class:`~semantic_ids.catalog.Catalog`.
    embeddings : precomputed embeddings: in memory a file (.parquet keyed by
        id, .npy in catalog order, .npz with ids) or an array in catalog order;
        streaming a Parquet file or directory of shards (then no catalog is needed).
    sequences : JSON Lines of user sequences to fuse behaviour in (in memory only).
    previous : an earlier export to warm-start from (not with ``engine="ray"``);
        ``out`` may be the same directory.
    config : BuildConfig (default: the defaults).
    streaming, engine, work_dir, batch_rows, partitions, ray_options, workers :
        the streaming runner's options (see :func:`semantic_ids.stream.build_streaming`).
    also_reads : other files the caller read for this build (a config file): ``out``
        must not replace them either.
    """
    cfg = config or BuildConfig()
    streaming = streaming or engine == "ray"
    in_place = previous is not None and Path(previous).resolve() == Path(out).resolve()
    named = [c for c in (catalog, embeddings) if isinstance(c, (str, Path))]
    out = check_out_dir(out, inputs=[*named, work_dir, sequences, None if in_place else previous, *also_reads])
    check_options(streaming=streaming, engine=engine, sequences=sequences, previous=previous)
    if previous is not None:  # read and checked once, before the catalog: a bad one fails before any work
        from ..stages.warm.start import WarmStart

        previous = WarmStart(previous)
        previous.config(cfg)
    if streaming:
        from .streaming import build_streaming

        if catalog is None and embeddings is None:
            raise ConfigError("a streaming build needs a catalog (--catalog, Parquet) or an embeddings dataset (--embeddings: a Parquet file or directory of shards)")
        res = build_streaming(
            out, catalog=None if embeddings is not None else catalog, embeddings=embeddings, config=cfg, work_dir=work_dir,
            batch_rows=batch_rows, partitions=partitions, engine=engine, ray_options=ray_options, workers=workers,
            previous=previous, show_progress=show_progress,
        )
        return BuildResult(out=res.out, metrics=res.metrics)
    if catalog is None:
        raise ConfigError("an in-memory build needs a catalog (--catalog; only --streaming builds start from embeddings alone)")
    return _build_in_memory(out, catalog, embeddings, sequences, previous, cfg, show_progress)


def check_options(*, streaming: bool, engine: str, sequences: Any, previous: Any) -> None:
    """Refuse option combinations the runners do not support (ValueError naming the options)."""
    if (streaming or engine == "ray") and sequences is not None:
        raise ConfigError("sequences (--sequences) work with the in-memory build only; the streaming build does not fuse behaviour yet")
    if engine == "ray" and previous is not None:
        raise ConfigError("a previous export (--previous) works with the local engine only, not --engine ray")


def read_and_embed(
    catalog: str | Path | pd.DataFrame | Catalog,
    config: BuildConfig,
    embeddings: Any = None,
    *,
    show_progress: bool = True,
    timer=None,
) -> tuple[Catalog, Any, dict[str, Any]]:
    """The read and embed stages in memory: (catalog, text embeddings (N, D) in
    catalog order, facts about the embedding for ``metrics.json``).

    ``embeddings`` (a file or an array in catalog order) skips embedding; the
    catalog may then hold ids alone. ``timer`` (a
    :class:`~semantic_ids.resources.StageTimer`) times the two stages.
    """
    import contextlib

    from ..stages.catalog import load_catalog
    from ..stages.embed import item_embeddings

    def stage(name):
        return timer.stage(name) if timer is not None else contextlib.nullcontext()

    cat = catalog
    if not isinstance(cat, Catalog):
        with stage("catalog"):  # read and check the catalog before torch and sentence-transformers load
            cat = load_catalog(catalog, config.catalog, require_text=embeddings is None)
    with stage("embed"):
        emb, facts = item_embeddings(cat.ids, cat.texts, config.embedding, given=embeddings,
                                     id_column=config.catalog.id_column, show_progress=show_progress)
    return cat, emb, facts


def _build_in_memory(out: Path, catalog, embeddings, sequences, previous, cfg: BuildConfig, show_progress: bool) -> BuildResult:
    """The in-memory runner: read and embed here, then the estimator trains, encodes, resolves and saves."""
    from ..stages.catalog import load_catalog
    from ..resources import StageTimer
    from ..stages.sequences import read_sequences

    timer = StageTimer()
    wall = time.perf_counter()
    cat = catalog
    if not isinstance(cat, Catalog):
        with timer.stage("catalog"):  # read and check the catalog before torch and sentence-transformers load
            cat = load_catalog(catalog, cfg.catalog, require_text=embeddings is None)
    if sequences is not None:
        with timer.stage("sequences"):  # bad sequences fail before embedding or training
            sequences = read_sequences(sequences, cat.ids, min_length=1)
    cat, emb, facts = read_and_embed(cat, cfg, embeddings, show_progress=show_progress, timer=timer)
    from .estimator import SemanticIDs

    sid = SemanticIDs(cfg, show_progress=show_progress).fit(emb, ids=cat.ids, sequences=sequences, previous=previous)
    m = sid.metrics_
    m["n_empty_text"] = int(cat.n_empty_text) if embeddings is None else None  # given embeddings: no text was embedded
    m["text_columns"] = list(cat.text_columns)
    m["embedding"] = {**facts, "dim": m["embedding"]["dim"]}
    m["stages"] = {**timer.stages, **m["stages"]}
    m["total_seconds"] = round(time.perf_counter() - wall, 3)
    path = sid.save(out)
    return BuildResult(out=path, metrics=sid.metrics_, estimator=sid)
