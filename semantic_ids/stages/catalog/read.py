"""Catalog files: read Parquet / CSV / JSON Lines into a DataFrame and validate item ids.

All validation happens before any embedding or training, so a bad catalog
fails in seconds with a message that names the file, rows or values at fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import CatalogError

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


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
