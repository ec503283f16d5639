"""Where the collab stage's memory goes: peak RSS of each of its steps, alone (issue 21).

    python benchmarks/collab_memory.py stream      # as build --streaming --sequences does it
    python benchmarks/collab_memory.py memory      # as the in-memory build does it

Runs only the collab stage (and what precedes it in the build: the catalog, the sequences
and the embeddings for ``memory``) on the catalog of ``benchmarks/behaviour_data.py``
(1M items x 10.3M events; written under data/bench/ if missing), sampling the resident set
every 5 ms. Steps: ``count`` (read and count the sequences), ``finish`` (sum each block),
``svd``, ``ridge`` (the text -> behaviour map), ``vectors``, and ``fuse`` (the streaming
build's fused pass over the shards, or the in-memory build's fused matrix). Prints one line
per step and a JSON line of peaks (MiB) and seconds. ``--save F.npy`` keeps the vectors,
to compare two versions of the code bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class Steps:
    """The current step's name, its peak RSS (a sampling thread) and its seconds."""

    def __init__(self):
        self.name, self.start, self.peaks, self.seconds = "start", time.perf_counter(), {}, {}
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        while True:
            self.peaks[self.name] = max(self.peaks.get(self.name, 0.0), rss_mib())
            time.sleep(0.005)

    def next(self, name: str) -> None:
        now, r = time.perf_counter(), rss_mib()
        self.peaks[self.name] = max(self.peaks.get(self.name, 0.0), r)
        self.seconds[self.name] = round(now - self.start, 1)
        print(f"{self.name:>10}: peak {self.peaks[self.name]:6.0f} MiB, after {r:6.0f} MiB, {now - self.start:6.1f} s", flush=True)
        self.name, self.start = name, now


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["stream", "memory"])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=600_000)
    p.add_argument("--save", help="save the collaborative vectors here (.npy)")
    args = p.parse_args()
    import torch  # noqa: F401  (the builds hold torch too: the same baseline)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from behaviour_data import generate
    from semantic_ids.config import BuildConfig
    from semantic_ids.model.collab import fit_from_counts

    base = ROOT / "data" / "bench" / f"behaviour-{args.items}"
    generate(base, items=args.items, users=args.users)
    cfg = BuildConfig()
    cut = cfg.collab.holdout_last
    steps = Steps()
    after = {"svd": "ridge", "ridge": "vectors", "vectors": "fuse"}
    hook = lambda done: steps.next(after[done])  # noqa: E731
    steps.next("imports")
    if args.mode == "stream":
        from semantic_ids.model.cooccur import CountBlocks
        from semantic_ids.model.keys import IdRows
        from semantic_ids.stages.behaviour import FusedShards
        from semantic_ids.stages.sequences import iter_sequences
        from semantic_ids.stages.shards import EmbeddingShards

        work = Path(tempfile.mkdtemp(dir=base))
        shards = EmbeddingShards(base / "emb.parquet", "item_id")
        ids = shards.ids()
        steps.next("count")
        index = IdRows(ids)
        counts = CountBlocks(len(ids), cfg.collab.window, directory=work / "cooc")
        for chunk in iter_sequences(base / "sequences.jsonl", index, min_length=1):
            counts.add([s[:-cut] if cut else s for s in chunk.items])
        del index
        steps.next("finish")
        counts.finish()
        steps.next("svd")
        fusion = fit_from_counts(counts, shards, ids, cfg.collab, seed=cfg.seed, hook=hook)
        for _ in FusedShards(shards, fusion).iter_batches():
            pass
        shutil.rmtree(work)
    else:
        from semantic_ids.model.cooccur import count_sequences
        from semantic_ids.stages.catalog import load_catalog
        from semantic_ids.stages.embed import item_embeddings
        from semantic_ids.stages.sequences import read_sequences

        steps.next("catalog")
        cat = load_catalog(base / "ids.parquet", cfg.catalog, require_text=False)
        steps.next("sequences")
        seqs = read_sequences(base / "sequences.jsonl", cat.ids, min_length=1)
        steps.next("embed")
        text, _ = item_embeddings(cat.ids, None, cfg.embedding, given=base / "emb.parquet", show_progress=False)
        steps.next("count")
        counts = count_sequences([s[:-cut] if cut else s for s in seqs.items], len(cat.ids), cfg.collab.window)
        steps.next("svd")
        fusion = fit_from_counts(counts, text, cat.ids, cfg.collab, seed=cfg.seed, hook=hook)
        del counts
        fused = fusion.fuse(text, cat.ids)  # noqa: F841 (held, as the build holds it)
    steps.next("end")
    if args.save:
        np.save(args.save, fusion.vectors)
    print(json.dumps({"mode": args.mode, "peak_mib": {k: round(v) for k, v in steps.peaks.items()}, "seconds": steps.seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
