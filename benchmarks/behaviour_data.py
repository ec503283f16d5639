"""A synthetic catalog with behaviour, written in bounded memory (the behaviour arm of scale.py).

    python benchmarks/behaviour_data.py OUT --items 1000000 --users 600000      # about 10M events

Writes into OUT:

- ``ids.parquet``: the catalog, one ``item_id`` column (``item-00000000``...);
- ``emb.parquet``: ``item_id`` and a 384-d float32 ``embedding``, in catalog order, one row
  group per ``--chunk`` items (the in-memory build reads it keyed by id, the streaming build
  as its embeddings dataset);
- ``sequences.jsonl``: one user per line, ``{"user_id": "u...", "items": [...]}`` in time order;
- ``DONE``: the parameters and counts (a rerun with the same parameters returns at once).

The model of the world:

- **Items** belong to one of ``--clusters`` clusters (sizes vary, a Dirichlet draw); a
  cluster's embeddings scatter around its centre, and centres group around 100 themes, so
  text alone already finds some structure.
- **Users** pair two clusters (their tastes); each event comes from the first with
  probability ``mix`` (uniform in [0.3, 0.7] per user), else the second. Sequence lengths are
  geometric with mean ``events / users`` (at least 3).
- **Popularity skew**: clusters are picked with Zipf-like weights (``1 / rank``), and within
  a cluster the item at popularity rank ``r`` (a seeded permutation) is drawn as
  ``floor(size * u**3)``: a few items take most events, as in real catalogs.

Memory stays bounded: items are written ``--chunk`` at a time, users ``--chunk`` at a time,
holding only the cluster of every item (4 bytes each) and one chunk. Seeded: the same
arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DIM = 384
THEMES = 100


def generate(out: str | Path, *, items: int, users: int, events: int | None = None, clusters: int = 2000,
             seed: int = 0, chunk: int = 65536) -> dict:
    """Write ids.parquet, emb.parquet and sequences.jsonl into ``out``; returns the DONE facts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    events = events or 17 * users
    params = {"items": items, "users": users, "events": events, "clusters": clusters, "seed": seed, "dim": DIM}
    done = out / "DONE"
    if done.exists() and {k: v for k, v in json.loads(done.read_text()).items() if k in params} == params:
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    # clusters: sizes, centres grouped around themes
    sizes = np.maximum(1, np.floor(rng.dirichlet(np.full(clusters, 2.0)) * items)).astype(np.int64)
    sizes[np.argmax(sizes)] += items - sizes.sum()  # sizes sum to items (the largest absorbs the rounding)
    themes = rng.normal(size=(THEMES, DIM)).astype(np.float32)
    centres = (themes[rng.integers(0, THEMES, clusters)] + 0.6 * rng.normal(size=(clusters, DIM))).astype(np.float32)
    cluster = rng.permutation(np.repeat(np.arange(clusters, dtype=np.int32), sizes))  # (items,) each item's cluster
    # items of each cluster in popularity order: members[offset[c] : offset[c] + sizes[c]]
    members = np.argsort(cluster, kind="stable").astype(np.int32)
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for c in range(clusters):  # a seeded popularity order within each cluster
        seg = members[offset[c]: offset[c] + sizes[c]]
        seg[:] = seg[rng.permutation(len(seg))]
    item_ids = lambda rows: np.char.add("item-", np.char.zfill(rows.astype(str), 8))  # noqa: E731
    # 1. catalog and embeddings, a chunk of items at a time
    schema = pa.schema([("item_id", pa.string()), ("embedding", pa.list_(pa.float32(), DIM))])
    with pq.ParquetWriter(out / "emb.parquet", schema) as emb_w, pq.ParquetWriter(out / "ids.parquet", pa.schema([("item_id", pa.string())])) as ids_w:
        for lo in range(0, items, chunk):
            rows = np.arange(lo, min(items, lo + chunk))
            x = centres[cluster[rows]] + 0.5 * rng.normal(size=(len(rows), DIM)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            ids = pa.array(item_ids(rows).tolist(), pa.string())
            emb_w.write_table(pa.table({"item_id": ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM)}, schema=schema))
            ids_w.write_table(pa.table({"item_id": ids}))
    # 2. users, a chunk at a time
    cluster_p = 1.0 / np.arange(1, clusters + 1)
    cluster_p = (cluster_p / cluster_p.sum())[rng.permutation(clusters)]  # Zipf over clusters, in a seeded order
    mean_len = events / users
    n_events = 0
    with (out / "sequences.jsonl").open("w") as f:
        for lo in range(0, users, chunk):
            n = min(users, lo + chunk) - lo
            taste = rng.choice(clusters, size=(n, 2), p=cluster_p)
            mix = rng.uniform(0.3, 0.7, n)
            length = np.maximum(3, rng.geometric(1.0 / mean_len, n))
            user = np.repeat(np.arange(n), length)
            which = (rng.random(len(user)) >= mix[user]).astype(np.int64)
            c = taste[user, which]
            rank = np.floor(sizes[c] * rng.random(len(user)) ** 3).astype(np.int64)
            picked = members[offset[c] + rank]
            names = item_ids(picked)
            bounds = np.cumsum(length)[:-1]
            lines = [json.dumps({"user_id": f"u{lo + u:08d}", "items": s.tolist()}) for u, s in enumerate(np.split(names, bounds))]
            f.write("\n".join(lines) + "\n")
            n_events += len(user)
    info = {**params, "events_written": int(n_events), "seconds": round(time.perf_counter() - start, 1)}
    done.write_text(json.dumps(info))
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=600_000)
    p.add_argument("--events", type=int, default=None, help="target events (default: 17 per user)")
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(json.dumps(generate(args.out, items=args.items, users=args.users, events=args.events, clusters=args.clusters, seed=args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
