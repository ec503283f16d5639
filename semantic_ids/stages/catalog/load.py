"""A whole catalog in memory: read, validate ids, build every item's text."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import CatalogConfig
from .read import CatalogError, read_table, validate_ids
from .texts import render_texts, text_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    """A validated catalog.

    Attributes
    ----------
    ids : np.ndarray, shape (N,)
        Item ids as in the file (int64 or object of str), unique, no nulls.
    texts : list[str], length N
        The text embedded for each item ("" where every field is missing).
    frame : pd.DataFrame
        The catalog's rows, in file order.
    text_columns : tuple[str, ...]
        Columns that make the text.
    """

    ids: np.ndarray
    texts: list[str]
    frame: pd.DataFrame
    text_columns: tuple[str, ...]
    id_column: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_empty_text(self) -> int:
        return sum(1 for t in self.texts if not t)


def load_catalog(
    source: str | Path | pd.DataFrame, config: CatalogConfig | None = None, *, require_text: bool = True
) -> Catalog:
    """Read and validate a catalog and build each item's text.

    Parameters
    ----------
    source : path or DataFrame
        A ``.parquet``, ``.csv`` or ``.jsonl`` file, or a DataFrame.
    config : CatalogConfig
        Id column, text columns and template.
    require_text : bool
        False when embeddings are given: a catalog of ids alone is then
        accepted (its texts are empty and unused).

    Row numbers in error messages are 0-based positions among the data rows
    (for JSON Lines, errors in the file itself name the line).
    """
    config = config or CatalogConfig()
    name = str(source) if not isinstance(source, pd.DataFrame) else "catalog"
    frame = source.reset_index(drop=True) if isinstance(source, pd.DataFrame) else read_table(source, config.id_column)
    if len(frame) == 0:
        raise CatalogError(f"{name}: the catalog is empty (no rows)")
    ids = validate_ids(frame, config.id_column, name)

    text_columns, template = text_spec(list(frame.columns), config, name, lambda: frame, require_text=require_text)
    texts = render_texts(frame, template, config.list_separator) if text_columns else [""] * len(frame)
    catalog = Catalog(ids=ids, texts=texts, frame=frame, text_columns=text_columns, id_column=config.id_column)
    if catalog.n_empty_text and text_columns:
        log.warning("%d item(s) have empty text; they are embedded as empty strings", catalog.n_empty_text)
    log.info("catalog %s: %d items, text from %s", name, len(catalog), list(text_columns))
    return catalog
