"""Item texts: render catalog rows into the text that is embedded, with templates.

A template is a ``str.format`` string over column names (``"Title: {title}; Brand: {brand}"``)
or a list of (literal, column, spec) pieces. A field whose value is missing is
dropped with its label; lists of strings are joined.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...config import CatalogConfig
from .read import CatalogError


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return False


def _is_text_list(value: object) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) and all(
        isinstance(v, str) or _is_missing(v) for v in value
    )


def text_like_columns(frame: pd.DataFrame, exclude: str) -> tuple[str, ...]:
    """Columns whose non-null values are all strings or lists of strings."""
    cols = []
    for col in frame.columns:
        if col == exclude:
            continue
        values = [v for v in frame[col].tolist() if not _is_missing(v)]
        if values and all(isinstance(v, str) or _is_text_list(v) for v in values):
            cols.append(col)
    return tuple(cols)


def _format_value(value: object, spec: str, list_sep: str) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [str(v).strip() for v in value if not _is_missing(v) and str(v).strip()]
        return list_sep.join(parts)
    if isinstance(value, (float, np.floating)) and not spec and float(value).is_integer():
        return str(int(value))
    return format(value, spec).strip() if spec else str(value).strip()


def parse_template(template: str) -> list[tuple[str, str | None, str]]:
    """Split a ``str.format`` template into (literal, field, spec) pieces.

    Raises CatalogError on positional or malformed fields.
    """
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise CatalogError(f"template {template!r} is malformed: {exc}") from None
    out = []
    for literal, fname, spec, _conv in pieces:
        if fname is not None and (fname == "" or fname.isdigit()):
            raise CatalogError(f"template {template!r}: fields must name columns, e.g. {{title}}")
        out.append((literal, fname, spec or ""))
    return out


def render_texts(frame: pd.DataFrame, template: str | list, list_sep: str = ", ") -> list[str]:
    """Fill ``template`` for every row; a field whose value is missing is dropped
    together with the literal text just before it (its label), so
    ``"Title: {title}; Brand: {brand}"`` with no brand gives ``"Title: X"``.
    A row whose fields are all missing gives ``""``.

    ``template`` may also be a list of (literal, column, spec) pieces.
    """
    pieces = parse_template(template) if isinstance(template, str) else template
    columns = {f: frame[f].tolist() for _, f, _ in pieces if f is not None}
    texts = []
    strip_chars = " \t\n;,|"
    for i in range(len(frame)):
        buf = []
        any_value = False
        for literal, fname, spec in pieces:
            if fname is None:
                buf.append(literal)
                continue
            try:
                value = _format_value(columns[fname][i], spec, list_sep)
            except (ValueError, TypeError) as exc:
                raise CatalogError(
                    f"0-based row {i}, column {fname!r}: cannot format {columns[fname][i]!r} with {{{fname}:{spec}}}: {exc}"
                ) from None
            if value:
                buf.append(literal + value)
                any_value = True
        texts.append("".join(buf).strip(strip_chars) if any_value else "")
    return texts


def default_template(columns: Sequence[str]) -> list[tuple[str, str, str]]:
    """Pieces of ``"title: {title}; brand: {brand}; ..."`` over the text columns
    (as pieces, so column names need no escaping)."""
    return [(("; " if i else "") + f"{c}: ", c, "") for i, c in enumerate(columns)]


def text_spec(
    names: list, config: CatalogConfig, source: str, sample, *, require_text: bool = True
) -> tuple[tuple[str, ...], str | list]:
    """The columns that make the item text and the template to render them.

    From ``config.template``, else ``config.text_columns``, else every text or
    list-of-text column of ``sample()`` (a DataFrame of the catalog's rows, only
    read when needed). Raises CatalogError naming missing columns; with
    ``require_text=False`` (embeddings are given) a catalog of ids alone gives
    no columns and an empty template.
    """
    if config.template is not None:
        fields = tuple(dict.fromkeys(f for _, f, _ in parse_template(config.template) if f is not None))
        missing = [f for f in fields if f not in names]
        if missing:
            raise CatalogError(f"{source}: template uses column(s) {missing} that the catalog lacks; columns are {list(names)}")
        return fields, config.template
    if config.text_columns is not None:
        missing = [c for c in config.text_columns if c not in names]
        if missing:
            raise CatalogError(f"{source}: text column(s) {missing} not found; columns are {list(names)}")
        if not config.text_columns:
            raise CatalogError(f"{source}: text_columns is empty; name at least one column or leave it unset")
        return tuple(config.text_columns), default_template(config.text_columns)
    columns = text_like_columns(sample(), config.id_column)
    if not columns and not require_text:
        return (), []
    if not columns:
        raise CatalogError(
            f"{source}: no text columns found besides {config.id_column!r}; "
            f"name them with text_columns or a template (columns: {list(names)})"
        )
    return columns, default_template(columns)
