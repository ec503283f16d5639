"""A Parquet catalog in batches, for the streaming and distributed builds.

Only the id and text columns of the row groups that hold a batch are read, so
memory holds one batch whatever the catalog's size. Each batch is validated
like :func:`~semantic_ids.catalog.load_catalog` validates a whole catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import CatalogConfig
from .read import SUFFIXES, CatalogError, validate_ids
from .texts import render_texts, text_spec


@dataclass(frozen=True)
class CatalogBatch:
    """Rows ``start .. start + len(ids)`` of a catalog read in batches."""

    ids: np.ndarray
    texts: list[str]
    start: int


def catalog_rows(path: str | Path) -> int:
    """Row count of a Parquet catalog, from its footer."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def parquet_text_spec(path: str | Path, config: CatalogConfig | None = None, sample_rows: int = 65536):
    """Check a Parquet catalog's footer against ``config`` and choose how texts are made.

    Returns ``(columns, template)``: the columns to read besides the id, and
    the template (a string or pieces) for :func:`render_texts`. Without a
    template or ``text_columns``, the text columns are chosen from the first
    ``sample_rows`` rows.
    """
    import pyarrow.parquet as pq

    config = config or CatalogConfig()
    path = Path(path)
    if SUFFIXES.get(path.suffix.lower()) != "parquet":
        raise CatalogError(
            f"{path}: the streaming build reads Parquet catalogs in batches; convert this "
            f"{path.suffix or 'file'} to Parquet (e.g. pandas.read_csv(...).to_parquet(...)), or use the in-memory build"
        )
    if not path.exists():
        raise CatalogError(f"{path}: catalog file not found")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear error
        raise CatalogError(f"{path}: cannot read as parquet: {exc}") from None
    names = pf.schema_arrow.names
    if pf.metadata.num_rows == 0:
        raise CatalogError(f"{path}: the catalog is empty (no rows)")
    if config.id_column not in names:
        raise CatalogError(f"{path}: id column {config.id_column!r} not found; columns are {names}")
    columns, template = text_spec(names, config, str(path), lambda: next(pf.iter_batches(batch_size=sample_rows)).to_pandas())
    return list(columns), template


def batch_texts(frame: pd.DataFrame, config: CatalogConfig, template, source: str) -> tuple[np.ndarray, list[str]]:
    """Validated ids and rendered texts of one batch of catalog rows."""
    ids = validate_ids(frame, config.id_column, source)
    try:
        texts = render_texts(frame, template, config.list_separator)
    except CatalogError as exc:
        raise CatalogError(f"{source}: {exc}") from None
    return ids, texts


def read_catalog_rows(path: str | Path, start: int, stop: int, columns: list[str]) -> pd.DataFrame:
    """Rows ``start .. stop - 1`` of a Parquet catalog (only the row groups that hold them are read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    pieces, offset = [], 0
    for g in range(pf.metadata.num_row_groups):
        size = pf.metadata.row_group(g).num_rows
        lo, hi = max(start, offset), min(stop, offset + size)
        if lo < hi:
            pieces.append(pf.read_row_group(g, columns=columns).slice(lo - offset, hi - lo))
        offset += size
        if offset >= stop:
            break
    table = pa.concat_tables(pieces) if pieces else pf.schema_arrow.empty_table().select(columns)
    return table.to_pandas()


def catalog_batch(path: str | Path, config: CatalogConfig, spec, index: int, batch_rows: int) -> CatalogBatch:
    """Batch ``index`` (rows ``index * batch_rows ..``) of a Parquet catalog, validated, with texts.

    ``spec`` is :func:`parquet_text_spec`'s result. Local and Ray builds both
    cut the catalog this way, so each embeds exactly the same batches.
    """
    columns, template = spec
    start = index * batch_rows
    frame = read_catalog_rows(path, start, start + batch_rows, [config.id_column, *columns])
    ids, texts = batch_texts(frame, config, template, f"{path} (rows {start}..{start + len(frame) - 1})")
    return CatalogBatch(ids=ids, texts=texts, start=start)


def iter_catalog_batches(path: str | Path, config: CatalogConfig | None = None, batch_rows: int = 65536):
    """Read a Parquet catalog in batches of ``batch_rows`` rows: ids and texts.

    Only the id and text columns of the row groups holding a batch are read,
    so memory holds a batch (and a row group) whatever the catalog's size.
    Each batch is validated like :func:`load_catalog` validates a whole
    catalog; ids repeated across batches are caught by the streaming build
    once every id has been seen.
    """
    config = config or CatalogConfig()
    spec = parquet_text_spec(path, config)
    n = catalog_rows(path)
    for i in range(-(-n // batch_rows)):
        yield catalog_batch(path, config, spec, i, batch_rows)
