"""The one entry point of a build: ``build(export_dir, catalog=...)``; the CLI and ``pipelines/build.py`` call it.

A build runs the stages read -> embed -> train -> encode -> resolve -> export
(-> metrics). Two runners share the stage functions:

- in memory (default): the catalog is read and embedded here, then the
  estimator (:class:`~semantic_ids.runners.estimator.SemanticIDs`) trains,
  encodes and resolves, and saves the export;
- streaming (``streaming=True``, or ``engine="ray"``): every stage works on
  sharded Parquet in bounded memory (:mod:`semantic_ids.runners.streaming`), with
  the embed and encode stages optionally run as Ray Data jobs
  (:mod:`semantic_ids.runners.ray`).

Both return a :class:`BuildResult`. Every input is checked once, by
:func:`check_build`, before any heavy work: the combination of options, the
export directory (only an earlier export or an empty directory is replaced),
then a previous export's checksums, then the catalog and sequences.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..stages.catalog import Catalog
from ..config import BuildConfig
from ..export.outdir import check_out_dir
from ..errors import ConfigError, SequenceError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BuildResult:
    """What a build (in memory or streaming) returns: where the export went, its metrics
    (``metrics.json``), and for an in-memory build the fitted
    :class:`~semantic_ids.runners.estimator.SemanticIDs` (else None)."""

    export_dir: Path
    metrics: dict[str, Any]
    estimator: Any = None


def build(
    export_dir: str | Path,
    *,
    catalog: str | Path | pd.DataFrame | Catalog | Callable[[], Any] | None = None,
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
    """Build the semantic IDs of a catalog and write the export directory ``export_dir``.

    Parameters
    ----------
    export_dir : export directory: new, empty, or an earlier export (replaced
        atomically; a failed run leaves the old one).
    catalog : a catalog file (.parquet, .csv, .jsonl; Parquet only when
        streaming), a DataFrame or a :class:`~semantic_ids.stages.catalog.Catalog`;
        or a function returning one, called once every option is checked
        (``pipelines/build.py`` fetches a built-in catalog only for a build that will run).
    embeddings : precomputed embeddings: in memory a file (.parquet keyed by
        id, .npy in catalog order, .npz with ids) or an array in catalog order;
        streaming a Parquet file or directory of shards (then no catalog is needed).
    sequences : JSON Lines of user sequences to fuse behaviour in (in memory, or
        streaming with either engine).
    previous : an earlier export to warm-start from (not with ``engine="ray"``);
        ``export_dir`` may be the same directory.
    config : BuildConfig (default: the defaults).
    streaming, engine, work_dir, batch_rows, partitions, ray_options, workers :
        the streaming runner's options (see :func:`semantic_ids.runners.streaming.build_streaming`).
    show_progress : show progress bars.
    also_reads : other files the caller read for this build (a config file):
        ``export_dir`` must not replace them either.
    """
    cfg = config or BuildConfig()
    streaming = streaming or engine == "ray"
    out = check_build(export_dir, cfg, catalog=catalog, embeddings=embeddings, sequences=sequences, previous=previous,
                      streaming=streaming, engine=engine, work_dir=work_dir, also_reads=also_reads)
    if previous is not None:  # read and checked once, before the catalog: a bad one fails before any work
        from ..stages.warm.start import WarmStart

        previous = WarmStart(previous)
        previous.config(cfg)
    if callable(catalog):
        catalog = catalog()
    if streaming:
        from .streaming import run_streaming

        return run_streaming(
            out, catalog=None if embeddings is not None else catalog, embeddings=embeddings, config=cfg, work_dir=work_dir,
            batch_rows=batch_rows, partitions=partitions, engine=engine, ray_options=ray_options, workers=workers,
            previous=previous, show_progress=show_progress, sequences=sequences,
        )
    return _build_in_memory(out, catalog, embeddings, sequences, previous, cfg, show_progress)


def check_build(
    export_dir: str | Path,
    config: BuildConfig,
    *,
    catalog: Any = None,
    embeddings: Any = None,
    sequences: Any = None,
    previous: Any = None,
    streaming: bool = False,
    engine: str = "local",
    work_dir: str | Path | None = None,
    also_reads: tuple[str | Path, ...] = (),
) -> Path:
    """Check a build's options and its export directory, once, before any work; return
    the export directory made absolute (see :func:`~semantic_ids.export.outdir.check_out_dir`).

    Raises OutputPathError for an export directory that may not be replaced (or that
    holds an input), and ConfigError naming the options that cannot go together.
    """
    in_place = previous is not None and Path(previous).resolve() == Path(export_dir).resolve()
    named = [c for c in (catalog, embeddings) if isinstance(c, (str, Path))]
    out = check_out_dir(export_dir, inputs=[*named, work_dir, sequences, None if in_place else previous, *also_reads])
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}; use one of {ENGINES}")
    streaming = streaming or engine == "ray"
    if engine == "ray" and previous is not None:
        raise ConfigError("a previous export (--previous) works with the local engine only, not --engine ray")
    if sequences is not None and not Path(sequences).is_file():
        raise SequenceError(f"sequences file {str(sequences)!r} does not exist")
    if streaming and config.collision.strategy != "counter":
        raise ConfigError(
            f"collision.strategy={config.collision.strategy!r} is not available in the streaming build (counter only); "
            "use the in-memory build for 'balanced'"
        )
    if streaming and catalog is None and embeddings is None:
        raise ConfigError("a streaming build needs a catalog (--catalog, Parquet) or an embeddings dataset (--embeddings: a Parquet file or directory of shards)")
    if not streaming and catalog is None:
        raise ConfigError("an in-memory build needs a catalog (--catalog; only --streaming builds start from embeddings alone)")
    return out


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
    return BuildResult(export_dir=path, metrics=sid.metrics_, estimator=sid)
