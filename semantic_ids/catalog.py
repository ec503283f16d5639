"""Catalog input: read Parquet / CSV / JSON Lines, validate ids, build item texts.

All validation happens here, before any embedding or training, so a bad
catalog fails in seconds with a message that names the rows or values at fault.
"""

from __future__ import annotations

import json
import logging
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import CatalogConfig

log = logging.getLogger(__name__)

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class CatalogError(ValueError):
    """The catalog cannot be used; the message names the file, column, rows or values."""


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


def read_table(path: str | Path, id_column: str | None = None) -> pd.DataFrame:
    """Read a Parquet, CSV or JSON Lines file into a DataFrame (format from the suffix).

    CSV has no types: the id column is read as text and becomes integers only
    when every value is a canonical integer (so ``"007"`` stays ``"007"``).
    """
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise CatalogError(f"{path}: unknown catalog format {path.suffix!r}; use one of {sorted(SUFFIXES)}")
    if not path.exists():
        raise CatalogError(f"{path}: catalog file not found")
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "csv":
            # Only empty cells are missing: "NA", "null" or "None" are real values here.
            frame = pd.read_csv(
                path, keep_default_na=False, na_values=[""], dtype={id_column: str} if id_column else None
            )
            if id_column in frame.columns:
                col = frame[id_column]
                vals = col.dropna().astype(str)
                if len(vals) == len(col) and vals.str.fullmatch(r"-?(0|[1-9][0-9]{0,17})").all():
                    frame[id_column] = vals.astype(np.int64)
                else:
                    frame[id_column] = col.astype(object).where(col.notna(), None)
            return frame
        return _read_jsonl(path)
    except CatalogError:
        raise
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear error
        raise CatalogError(f"{path}: cannot read as {kind}: {exc}") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise CatalogError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            except json.JSONDecodeError as exc:
                raise CatalogError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise CatalogError(f"{path}:{lineno}: each line should be a JSON object, got {type(row).__name__}")
            rows.append(row)
    return pd.DataFrame.from_records(rows)


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


def validate_ids(frame: pd.DataFrame, id_column: str, source: str = "catalog") -> np.ndarray:
    """Return the id column as an array, or raise naming the offending rows/values."""
    if id_column not in frame.columns:
        raise CatalogError(
            f"{source}: id column {id_column!r} not found; columns are {list(map(str, frame.columns))}"
        )
    ids = frame[id_column]
    null_rows = np.flatnonzero(ids.isna().to_numpy())
    if len(null_rows):
        raise CatalogError(
            f"{source}: {len(null_rows)} row(s) have a null {id_column!r}, e.g. 0-based rows {null_rows[:10].tolist()}"
        )
    values = ids.tolist()
    kinds = {type(v) for v in values}
    if kinds <= {int, np.int64, np.int32, np.uint64, np.uint32, np.int16, np.uint16, np.int8, np.uint8}:
        too_big = [(r, v) for r, v in enumerate(values) if not (-(2**63) <= int(v) < 2**63)]
        if too_big:
            raise CatalogError(
                f"{source}: {id_column!r} value {too_big[0][1]} (0-based row {too_big[0][0]}) does not fit in a signed 64-bit "
                "integer; store such ids as strings"
            )
        arr = np.asarray([int(v) for v in values], dtype=np.int64)
    elif kinds <= {str}:
        arr = np.asarray(values, dtype=object)
    elif kinds <= {float, np.float64}:
        bad = [(r, v) for r, v in enumerate(values) if not float(v).is_integer()]
        if bad:
            raise CatalogError(
                f"{source}: {id_column!r} has non-integer float ids, e.g. 0-based row {bad[0][0]}: {bad[0][1]!r}; "
                "use strings or integers"
            )
        arr = np.asarray(values, dtype=np.int64)
    else:
        by_kind = {}
        for row, v in enumerate(values):
            by_kind.setdefault(type(v).__name__, (row, v))
        examples = ", ".join(f"{k} (0-based row {r}: {v!r})" for k, (r, v) in by_kind.items())
        raise CatalogError(f"{source}: {id_column!r} mixes id types: {examples}; use all strings or all integers")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        dup_vals = pd.unique(ids[dup])[:10].tolist()
        rows = np.flatnonzero(dup)[:10].tolist()
        raise CatalogError(
            f"{source}: {int(ids[dup].nunique())} duplicate {id_column!r} value(s), e.g. {dup_vals} (0-based rows {rows})"
        )
    return arr


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
