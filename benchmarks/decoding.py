"""Decoding-layer speed: PrefixTrie build, next-code masks and advance on ~1M synthetic IDs,
beside rectokens' CompactCSRTrie (PyPI rectokens==0.2.2, where it runs on CPU) and a
Python dict-of-prefixes trie in the same run.

    python benchmarks/decoding.py                  # 1,000,000 items, batch 1,024
    python benchmarks/decoding.py --n 200000 --threads 2

IDs: clustered 6-d latents quantised by FAISS's greedy RQ (3 x 256, as in
benchmarks/lookup.py) plus the collision counter, so branching is as uneven as a
real catalog's. Each query batch holds the prefixes of 1,024 random items (item-
weighted, like beams over popular regions). Times are the best of repeated calls
(the machine is shared, so the minimum is the least noisy estimate of the cost);
the load average at the start is recorded.
Writes benchmarks/results/decoding.json and decoding.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semantic_ids.stages.resolve import resolve_counter  # noqa: E402
from semantic_ids.decoding.trie import PrefixTrie  # noqa: E402

try:
    import rectokens
    from rectokens.schemas.compact_csr_trie import CompactCSRTrie
except ImportError:  # an optional peer (pip install --no-deps rectokens==0.2.2)
    rectokens = CompactCSRTrie = None


def synthetic_codes(n: int, seed: int = 0) -> np.ndarray:
    """(n, 4) int64 unique IDs: 3 RQ levels of 256 codes + the collision counter."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, 6)).astype(np.float32)
    z = centres[rng.integers(0, 2000, n)] + 0.3 * rng.normal(size=(n, 6)).astype(np.float32)
    rq = faiss.ResidualQuantizer(6, 3, 8)
    rq.max_beam_size = 1
    rq.train(z[:200_000])
    raw = rq.compute_codes(z).astype(np.int64)
    return resolve_counter(raw, np.arange(n, dtype=np.int64)).codes.astype(np.int64)


def best_ms(fn, repeat: int = 30, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return round(float(np.min(ts)) * 1e3, 3)


class DictTrie:
    """The naive baseline: nested dicts (code -> child), walked per row in Python."""

    def __init__(self, codes: np.ndarray):
        self.root: dict = {}
        for row in codes.tolist():
            node = self.root
            for c in row:
                node = node.setdefault(c, {})

    def nodes(self, prefixes: list[list[int]]) -> list[dict | None]:
        out = []
        for p in prefixes:
            node = self.root
            for c in p:
                node = node.get(c) if node is not None else None
            out.append(node)
        return out

    @staticmethod
    def masks(nodes: list[dict | None], size: int) -> np.ndarray:
        out = np.zeros((len(nodes), size), dtype=bool)
        for i, node in enumerate(nodes):
            if node:
                out[i, list(node)] = True
        return out

    @staticmethod
    def advance(nodes: list[dict | None], codes: list[int]) -> list[dict | None]:
        return [n.get(c) if n is not None else None for n, c in zip(nodes, codes)]


def nbytes(tensors) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors if t is not None))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CI machine shares 2 cores)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    codes = synthetic_codes(args.n)
    sizes = (256, 256, 256, int(codes[:, 3].max()) + 1)
    print(f"{len(codes):,} IDs, level sizes {sizes}, generated in {time.perf_counter() - t0:.1f} s", flush=True)
    rng = np.random.default_rng(1)
    batch = codes[rng.integers(0, len(codes), args.batch)]
    rows: list[dict] = []

    def add(what, depth, ours, peers, note=""):
        row = {"what": what, "depth": depth, "ours_ms": ours, **peers, "note": note}
        for k, v in peers.items():
            if isinstance(v, (int, float)) and v and ours:
                row[k.replace("_ms", "_ratio")] = round(v / ours, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)

    # -- build -------------------------------------------------------------------------
    ours = PrefixTrie.from_codes(codes, sizes)
    build = best_ms(lambda: PrefixTrie.from_codes(codes, sizes), repeat=5, warmup=0)
    csr = PrefixTrie.from_codes(codes, sizes, dense_cap=0, mask_cap=0)
    build_csr = best_ms(lambda: PrefixTrie.from_codes(codes, sizes, dense_cap=0, mask_cap=0), repeat=5, warmup=0)
    peers = {"ours_pure_csr_ms": build_csr}
    order = np.lexsort(codes.T[::-1])
    sorted_t = torch.from_numpy(codes[order])
    rt = None
    if CompactCSRTrie is not None:
        rt = CompactCSRTrie.from_sorted_batch(sorted_t, vocab_size=max(sizes), dense_lookup_layers=2)
        peers["rectokens_ms"] = best_ms(lambda: CompactCSRTrie.from_sorted_batch(sorted_t, max(sizes), 2), repeat=5, warmup=0)
    t = time.perf_counter()
    naive = DictTrie(codes)
    peers["dict_ms"] = round((time.perf_counter() - t) * 1e3, 1)
    add("build", "-", build, peers, "rectokens needs rows pre-sorted: its time excludes the sort ours includes")
    mem = {"ours_mb": round(ours.nbytes / 1e6, 1), "ours_pure_csr_mb": round(csr.nbytes / 1e6, 1)}
    if rt is not None:
        mem["rectokens_mb"] = round(nbytes([rt.row_ptrs, rt.stacked_cols_vals, rt.dense_states, *rt.dense_mask_by_layer]) / 1e6, 1)

    # -- masks and advance per depth --------------------------------------------------
    for d in range(4):
        nodes = ours.nodes_of(batch[:, :d])
        dict_nodes = naive.nodes(batch[:, :d].tolist())
        want = naive.masks(dict_nodes, sizes[d])
        assert np.array_equal(ours.next_mask(d, nodes).numpy(), want) and np.array_equal(csr.next_mask(d, nodes).numpy(), want)
        peers = {"ours_pure_csr_ms": best_ms(lambda: csr.next_mask(d, nodes))}
        note = ours.layout()[d]["next_mask"]
        if rt is not None and d < len(rt.dense_mask_by_layer):
            if d == 0:
                fn = lambda: rt.dense_mask_by_layer[0].expand(args.batch, -1).clone()  # noqa: E731
            else:
                first = torch.from_numpy(batch[:, 0])
                fn = lambda: rt.dense_mask_by_layer[1][first]  # noqa: E731
            assert np.array_equal(fn().numpy()[:, : sizes[d]], want)
            peers["rectokens_ms"] = best_ms(fn)
        elif rt is not None:
            peers["rectokens_ms"] = None
            note += "; rectokens' CSR levels run only in its Triton (GPU) kernel"
        peers["dict_ms"] = best_ms(lambda: naive.masks(dict_nodes, sizes[d]), repeat=5)
        add("next_mask", d, best_ms(lambda: ours.next_mask(d, nodes)), peers, note)

        step = torch.from_numpy(batch[:, d])
        assert torch.equal(ours.advance(d, nodes, step), csr.advance(d, nodes, step))
        peers = {"ours_pure_csr_ms": best_ms(lambda: csr.advance(d, nodes, step))}
        note = ours.layout()[d]["advance"]
        if rt is not None and d == 1:
            first = torch.from_numpy(batch[:, 0])
            peers["rectokens_ms"] = best_ms(lambda: rt.dense_states[first, step])
            note += "; rectokens: its dense state table"
        codes_l = step.tolist()
        peers["dict_ms"] = best_ms(lambda: naive.advance(dict_nodes, codes_l), repeat=5)
        add("advance", d, best_ms(lambda: ours.advance(d, nodes, step)), peers, note)

    full = torch.from_numpy(batch)
    add("rows_of (full IDs -> items)", 4, best_ms(lambda: ours.rows_of(full)), {}, "4 advances + leaf_rows gather")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "torch": torch.__version__, "torch_threads": args.threads,
           "rectokens": getattr(rectokens, "__version__", "0.2.2") if rectokens else None, "machine": platform.machine(),
           "items": len(codes), "batch": args.batch, "level_sizes": sizes, "n_nodes": ours.n_nodes,
           "layout": ours.layout(), "memory": mem, "device": "cpu (no GPU on the benchmark machine)",
           "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}  # fmt: skip
    (out / "decoding.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    md = markdown(env, rows)
    (out / "decoding.md").write_text(md)
    print(md)


def markdown(env: dict, rows: list[dict]) -> str:
    f = lambda v: "n/a" if v is None else "" if v == "" else str(v)  # noqa: E731
    out = [f"{env['items']:,} IDs, level sizes {tuple(env['level_sizes'])}, batch {env['batch']}, "
           f"{env['torch_threads']} torch thread(s), {env['device']}, {env['cpus']} CPUs at load {env['load_average_1min']}. "
           f"Memory: {env['memory']}. Times: best of repeated calls, ms.", "",
           "| what | depth | ours ms | ours pure-CSR ms | rectokens ms | dict ms | rectokens / ours | dict / ours | layout, notes |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        out.append(f"| {r['what']} | {r['depth']} | {r['ours_ms']} | {f(r.get('ours_pure_csr_ms', ''))} | "
                   f"{f(r.get('rectokens_ms', ''))} | {f(r.get('dict_ms', ''))} | {f(r.get('rectokens_ratio', ''))} | "
                   f"{f(r.get('dict_ratio', ''))} | {r['note']} |")  # fmt: skip
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
