"""Catalog input: files -> validated item ids -> the text of every item.

- :mod:`.read`: read Parquet / CSV / JSON Lines, validate ids (:class:`CatalogError`);
- :mod:`.texts`: templates that turn rows into item texts;
- :mod:`.load`: a whole catalog in memory (:func:`load_catalog`);
- :mod:`.batches`: a Parquet catalog in batches, for the streaming and distributed builds.
"""

from .batches import CatalogBatch, batch_texts, catalog_batch, catalog_rows, iter_catalog_batches, parquet_text_spec, read_catalog_rows
from .load import Catalog, load_catalog
from .read import SUFFIXES, CatalogError, read_table, validate_ids
from .texts import default_template, parse_template, render_texts, text_like_columns, text_spec

__all__ = [
    "SUFFIXES",
    "Catalog",
    "CatalogBatch",
    "CatalogError",
    "batch_texts",
    "catalog_batch",
    "catalog_rows",
    "default_template",
    "iter_catalog_batches",
    "load_catalog",
    "parquet_text_spec",
    "parse_template",
    "read_catalog_rows",
    "read_table",
    "render_texts",
    "text_like_columns",
    "text_spec",
    "validate_ids",
]
