"""Lookup speed and memory: Amazon Beauty's export and a synthetic 1,000,000-item catalog,
beside a plain pandas / dict baseline in the same run.

    python benchmarks/lookup.py                       # synthetic 1M (+ Beauty if an export is given)
    python benchmarks/lookup.py --beauty-export out/bench/beauty-seed0 --n 1000000

Writes benchmarks/results/lookup.json and lookup.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semantic_ids.lookup.ann import CodeIndex  # noqa: E402
from semantic_ids.stages.resolve import resolve_counter  # noqa: E402
from semantic_ids.lookup import SemanticIDLookup  # noqa: E402
from semantic_ids.resources import rss_bytes  # noqa: E402
from semantic_ids.export.tokens import format_sids  # noqa: E402


def synthetic(n: int, dim: int = 6, seed: int = 0, int_ids: bool = False):
    """Clustered latents, codebooks from FAISS's greedy RQ (3 x 256), resolved codes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    z = centres[rng.integers(0, 2000, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    rq = faiss.ResidualQuantizer(dim, 3, 8)
    rq.max_beam_size = 1
    rq.train(z[:200_000])
    raw = rq.compute_codes(z).astype(np.int64)
    books = faiss.vector_to_array(rq.codebooks).reshape(3, 256, dim)
    ids = (np.arange(n, dtype=np.int64) * 7919 + 13) if int_ids else np.array([f"item-{i:07d}" for i in range(n)], dtype=object)
    codes = resolve_counter(raw, ids).codes
    return ids, codes, [books[i] for i in range(3)], z


def timeit(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def latencies(fn, queries, warmup: int = 20) -> dict:
    for q in queries[:warmup]:
        fn(q)
    ts = []
    for q in queries:
        t = time.perf_counter_ns()
        fn(q)
        ts.append(time.perf_counter_ns() - t)
    ts = np.array(ts) / 1e3
    return {"p50_us": round(float(np.percentile(ts, 50)), 1), "p99_us": round(float(np.percentile(ts, 99)), 1)}


def bench(name: str, ids, codes, books, n_queries: int = 2000, split: int | None = None) -> list[dict]:
    rows = []
    n = len(ids)
    gc.collect()
    before = rss_bytes()
    t = time.perf_counter()
    lk = SemanticIDLookup(ids, codes, [256, 256, 256], codebooks=books, code_split=split)
    _ = lk.code_index.index  # build the FAISS index now, to time and measure it (none for the grouped search)
    build_s = time.perf_counter() - t
    mem_mb = (rss_bytes() - before) / 2**20
    rows.append({"catalog": name, "items": n, "what": f"build lookup ({lk.code_index.kind} index)", "seconds": round(build_s, 2), "memory_mb": round(mem_mb, 1)})

    # baseline: dicts and pandas built from the same arrays
    gc.collect()
    before = rss_bytes()
    sids = format_sids(codes)
    base_item = dict(zip(ids.tolist(), sids))
    base_sid = dict(zip(sids, ids.tolist()))
    series = pd.Series(sids, index=pd.Index(ids))
    base_mem = (rss_bytes() - before) / 2**20
    rows.append({"catalog": name, "items": n, "what": "build baseline (2 dicts + pandas Series)", "memory_mb": round(base_mem, 1)})

    rng = np.random.default_rng(0)
    keys = ids[rng.integers(0, n, n)]
    full = codes[rng.integers(0, n, n)]
    key_strs = [base_item[k] for k in keys[:n_queries * 50]]

    def add(what, ours_s, base_s, count, lat=None, base_lat=None, extra=None):
        rows.append({
            "catalog": name, "items": n, "what": what,
            "ours_keys_per_s": round(count / ours_s) if ours_s else None,
            "baseline_keys_per_s": round(count / base_s) if base_s else None,
            "speedup": round(base_s / ours_s, 2) if ours_s and base_s else None,
            **({"ours_" + k: v for k, v in lat.items()} if lat else {}),
            **({"baseline_" + k: v for k, v in base_lat.items()} if base_lat else {}),
            **(extra or {}),
        })
        print(json.dumps(rows[-1]), flush=True)

    qs = keys[:n_queries].tolist()
    t = time.perf_counter()
    lk.item_to_sid(keys[:1])  # builds the token-string table once
    rows.append({"catalog": name, "items": n, "what": "build token-string table (first string lookup)", "seconds": round(time.perf_counter() - t, 2)})
    add("item -> codes (batch)", timeit(lambda: lk.item_to_codes(keys), 3), timeit(lambda: series.reindex(keys).to_numpy(), 3), len(keys),
        latencies(lambda k: lk.item_to_codes(k), qs), latencies(lambda k: base_item[k], qs))
    add("item -> token string (batch)", timeit(lambda: lk.item_to_sid(keys), 3), timeit(lambda: [base_item[k] for k in keys.tolist()], 1), len(keys))
    add("codes -> item (batch, int codes)", timeit(lambda: lk.codes_to_rows(full), 3), timeit(lambda: [base_sid[s] for s in format_sids(full)], 1), len(full),
        latencies(lambda c: lk.codes_to_rows(c[None, :]), list(full[:n_queries])), None)
    add("token string -> item (batch)", timeit(lambda: lk.sid_to_item(key_strs), 3), timeit(lambda: [base_sid[s] for s in key_strs], 1), len(key_strs),
        latencies(lambda s: lk.sid_to_item(s), key_strs[:n_queries]), latencies(lambda s: base_sid[s], key_strs[:n_queries]))
    prefixes = [tuple(c[:2]) for c in full[:n_queries]]
    add("prefix (depth 2) -> items", None, None, 0, latencies(lambda p: lk.prefix_items(p), prefixes),
        latencies(lambda p: ids[(codes[:, 0] == p[0]) & (codes[:, 1] == p[1])], prefixes[:50]),
        {"note": "baseline = boolean-mask scan"})

    # nearest-code search: generated codes -> nearest items; recall@10 of the index vs exact
    index = lk.code_index
    gen = rng.integers(0, 256, (n_queries, 3))
    vecs = index.decode(gen)
    exact = CodeIndex(codes[:, :3], books, kind="flat", within_group=codes[:, -1]) if index.kind != "flat" else index
    r_exact, _ = exact.search(vecs[:500], 10)
    r_ours, _ = index.search(vecs[:500], 10)
    # recall over distinct code tuples (items in one group share a distance; order among ties is arbitrary)
    g_exact = index.row_group[np.maximum(r_exact, 0)]
    g_ours = index.row_group[np.maximum(r_ours, 0)]
    recall = float(np.mean([len(set(a) & set(b)) / len(set(a)) for a, b in zip(g_exact, g_ours)]))
    faiss.omp_set_num_threads(1)
    lat_single = latencies(lambda v: index.search(v[None, :], 10), list(vecs))
    lat_exact = latencies(lambda v: exact.search(v[None, :], 10), list(vecs[:300]))
    faiss.omp_set_num_threads(0 or 2)
    batch_s = timeit(lambda: index.search(vecs, 10), 3)
    add(f"nearest code, k=10 ({index.kind})", batch_s, timeit(lambda: exact.search(vecs, 10), 1), len(vecs), lat_single, lat_exact,
        {"recall_at_10_vs_exact": round(recall, 4), "note": "baseline = exact IndexFlatL2"})
    if index.kind == "ivf":
        t = time.perf_counter()
        hnsw = CodeIndex(codes[:, :3], books, kind="hnsw", within_group=codes[:, -1])
        _ = hnsw.index
        hnsw_build = time.perf_counter() - t
        r_h, _ = hnsw.search(vecs[:500], 10)
        g_h = index.row_group[np.maximum(r_h, 0)]
        rec_h = float(np.mean([len(set(a) & set(b)) / len(set(a)) for a, b in zip(g_exact, g_h)]))
        faiss.omp_set_num_threads(1)
        lat_h = latencies(lambda v: hnsw.search(v[None, :], 10), list(vecs))
        faiss.omp_set_num_threads(2)
        add("nearest code, k=10 (hnsw, alternative)", timeit(lambda: hnsw.search(vecs, 10), 3), timeit(lambda: exact.search(vecs, 10), 1), len(vecs),
            lat_h, lat_exact, {"recall_at_10_vs_exact": round(rec_h, 4), "note": f"build {hnsw_build:.1f} s; baseline = exact IndexFlatL2"})
    lat_prefix = latencies(lambda c: lk.search_codes([c], k=10), [list(c) for c in gen[:500]])
    add("generated code -> nearest valid items (prefer prefix)", None, None, 0, lat_prefix, None)
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| catalog | items | what | ours keys/s | baseline keys/s | speedup | ours p50 µs | ours p99 µs | baseline p50 µs | baseline p99 µs | notes |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        note = r.get("note", "")
        if "recall_at_10_vs_exact" in r:
            note = f"recall@10 = {r['recall_at_10_vs_exact']}; {note}"
        if "memory_mb" in r or "seconds" in r:
            note = (f"memory {r['memory_mb']} MB, " if "memory_mb" in r else "") + (f"{r['seconds']} s" if "seconds" in r else "")
        f = lambda k: "" if r.get(k) is None else f"{r[k]:,}" if isinstance(r[k], int) else str(r[k])  # noqa: E731
        out.append(f"| {r['catalog']} | {r['items']:,} | {r['what']} | {f('ours_keys_per_s')} | {f('baseline_keys_per_s')} | {f('speedup')} | "
                   f"{f('ours_p50_us')} | {f('ours_p99_us')} | {f('baseline_p50_us')} | {f('baseline_p99_us')} | {note} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--beauty-export", help="an export directory of Amazon Beauty (see benchmarks/quality.py)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    rows = []
    if args.beauty_export:
        lk = SemanticIDLookup.load(args.beauty_export)
        books = [c for c in lk.codebooks]
        rows += bench("amazon-beauty", lk.ids, lk.codes, books, split=lk.code_index.split)
    ids, codes, books, _ = synthetic(args.n)
    rows += bench("synthetic, string ids", ids, codes, books)
    del ids
    ids, codes, books, _ = synthetic(args.n, int_ids=True)
    rows += bench("synthetic, int ids", ids, codes, books)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "faiss": faiss.__version__, "machine": platform.machine()}
    (out / "lookup.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    md = markdown(rows)
    (out / "lookup.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
