"""Regenerate the measurement blocks of benchmarks/README.md and README.md from benchmarks/results/.

    python benchmarks/readme_tables.py            # rewrite the blocks in place
    python benchmarks/readme_tables.py --check    # exit 1, naming the blocks, if a file is out of date

A block sits between ``<!-- begin: NAME -->`` and ``<!-- end: NAME -->``; everything
outside the markers is prose and is left alone. Each block is built by one function
below from the results files that a benchmark script writes (the script and its command
line are named in the prose around the block). Rewriting is idempotent: a second run
changes nothing. Only the standard library is imported, so the check is fast.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"(<!-- begin: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


# ---------------------------------------------------------------- formatting


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def span(values, fmt: str = "{}", sep: str = "–") -> str:
    """'lo–hi' over the values, or one value when they print the same."""
    values = [v for v in values if v is not None and v == v]  # v != v: NaN, a run that has no such number
    if not values:
        return "–"
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}{sep}{hi}"


def pct(values, nd: int = 2) -> str:
    return span([100 * v for v in values], "{:.%df}" % nd) + "%"


def ci(v) -> str:
    """A paired difference [mean, lo, hi] as '+0.0106 [+0.0089, +0.0123]'."""
    return "" if v is None else f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]"


def negated(v):
    """The difference the other way round: [m, lo, hi] -> [-m, -hi, -lo]."""
    return [-v[0], -v[2], -v[1]]


def covers(v) -> str:
    return "the interval covers 0" if v[1] <= 0 <= v[2] else "the interval excludes 0"


def seeds(s) -> str:
    s = list(s)
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}–{s[-1]}"
    return ",".join(map(str, s))


def thousands(v) -> str:
    return f"{v:,.0f}"


def keys_per_s(v) -> str:
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"


# ---------------------------------------------------------------- downstream

DOWNSTREAM_ARMS = {  # arm -> label, in the order the README shows them
    "ours-seq": "ours, built with `--sequences` (`--holdout-last 2`)",
    "ours": "ours, text only",
    "rq-kmeans": "RQ-KMeans",
    "letter": "LETTER's published IDs",
    "sasrec": "SASRec (one token per item, same network, quick configuration)",
}


def downstream_rows() -> dict:
    return {(r["catalog"], r["arm"]): r for r in load("downstream.json")["rows"]}


def tiger_published() -> list[str]:
    """TIGER's published Beauty row, as downstream.py writes it into downstream.md (R@5, N@5, R@10, N@10)."""
    for line in (RESULTS / "downstream.md").read_text().splitlines():
        if "TIGER (published" in line:
            return [c.strip() for c in line.strip("|").split("|")][3:7]
    raise SystemExit("downstream.md has no TIGER (published) row")


def downstream_table(catalog: str, published: bool) -> str:
    rows = []
    for (cat, arm), r in downstream_rows().items():
        if cat != catalog:
            continue
        rows.append([arm, ",".join(map(str, r["seeds"])), *(f"{r[m]:.4f}" for m in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")),
                     ci(r.get("recall@10_minus_ours")), ci(r.get("ndcg@10_minus_ours")),
                     ci(r.get("recall@10_minus_ours-seq")), ci(r.get("ndcg@10_minus_ours-seq"))])
    if published:
        rows.append(["TIGER (published; larger model, not run here)", "", *tiger_published(), "", "", "", ""])
    return table(["arm", "seeds", "R@5", "N@5", "R@10", "N@10", "R@10 − ours [95% CI]", "N@10 − ours [95% CI]",
                  "R@10 − ours-seq [95% CI]", "N@10 − ours-seq [95% CI]"], rows)


def block_downstream_beauty() -> str:
    return downstream_table("beauty", published=True)


def block_downstream_movielens() -> str:
    return downstream_table("movielens", published=False)


def block_downstream_per_seed() -> str:
    all_seeds = load("downstream.json")["env"]["seeds"]
    rows = []
    for (cat, arm), r in downstream_rows().items():
        if cat != "beauty" or arm == "popularity":
            continue
        per = dict(zip(r["seeds"], zip(r["recall@10_per_seed"], r["ndcg@10_per_seed"])))
        rows.append([arm] + [f"{per[s][0]:.4f} / {per[s][1]:.4f}" if s in per else "–" for s in all_seeds])
    return table(["arm (Beauty)"] + [f"seed {s}" for s in all_seeds], rows)


def block_downstream_cost() -> str:
    runs = load("downstream.json")["runs"]
    by_arm: dict[tuple, list] = {}
    for r in runs:
        if r.get("train_seconds") is not None:
            by_arm.setdefault((r["catalog"], r["arm"]), []).append(r)
    rows = []
    for (cat, arm), rs in by_arm.items():
        rows.append([cat, arm, seeds(sorted(r["seed"] for r in rs)), span([r["levels"] for r in rs]),
                     span([r["parameters"] for r in rs], "{:,}"),
                     pct([r["collision_rate"] for r in rs if r.get("collision_rate") is not None], 1)
                     if any(r.get("collision_rate") is not None for r in rs) else "–",
                     span([r.get("build_seconds") for r in rs], "{:.0f}"), span([r["train_seconds"] for r in rs], "{:.0f}"),
                     span([r["test_seconds"] for r in rs], "{:.0f}"),
                     span([r["wall_seconds"] / 60 for r in rs if r.get("wall_seconds")], "{:.1f}"),
                     span([r["threads"] for r in rs if r.get("threads")]), span([r["load_1m"] for r in rs if r.get("load_1m")], "{:.1f}"),
                     span([r["invalid_id_rate"] for r in rs])])
    return table(["catalog", "arm", "seeds", "ID levels", "parameters", "collisions", "ID build s", "train s", "test s", "wall min", "torch threads",
                  "load", "invalid-ID rate"], rows)


def runs_by_arm(d: dict) -> dict[str, list]:
    """A downstream results file's per-run facts, grouped by arm (in run order)."""
    runs: dict[str, list] = {}
    for r in d["runs"]:
        runs.setdefault(r["arm"], []).append(r)
    return runs


def block_downstream_t5() -> str:
    """The t5 arm (pipelines/tiger_t5.py's model) beside the decoder-only retriever on the same IDs."""
    d = load("downstream-t5.json")
    runs = runs_by_arm(d)
    rows = []
    for r in d["rows"]:
        rs = [x for x in runs.get(r["arm"], []) if x.get("train_seconds") is not None]
        size = "items by training count" if r["arm"] == "popularity" else "–"
        if rs and rs[0].get("t5"):
            t = rs[0]["t5"]
            size = f"T5 {t['num_layers']} + {t['num_layers']} layers, d {t['d_model']}, {t['sample']:,} pairs an epoch"
        elif rs:
            size = f"decoder-only, {d['env']['retriever']['beauty']['n_layer']} layers, d {d['env']['retriever']['beauty']['d_model']}"
        rows.append([r["arm"], size, seeds(r["seeds"]),
                     *(f"{r[m]:.4f}" for m in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")),
                     span([x["parameters"] for x in rs], "{:,}") if rs else "–",
                     " / ".join(f"{x['best_epoch']} of {x['epochs_run']}" for x in rs) or "–",
                     span([x["train_seconds"] / 60 for x in rs], "{:.0f}") if rs else "–",
                     span([x["test_seconds"] / 60 for x in rs], "{:.1f}") if rs else "–",
                     span([x["load_1m"] for x in rs if x.get("load_1m")], "{:.1f}") if rs else "–"])
    ours = downstream_rows().get(("beauty", "ours"))
    t5_seeds = next((r["seeds"] for r in d["rows"] if r["arm"] == "t5"), [])
    if ours and set(t5_seeds) <= set(ours["seeds"]) and not any(r["arm"] == "ours" for r in d["rows"]):
        # context, not a paired comparison: downstream.json's runs of the same build config on the t5 row's seeds
        at = [ours["seeds"].index(x) for x in t5_seeds]
        rows.append(["ours (from `downstream.json`)", "decoder-only retriever, 2 layers, d 64", seeds(t5_seeds),
                     *(f"{sum(ours[f'{m}_per_seed'][i] for i in at) / len(at):.4f}" for m in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")),
                     "", "", "", "", ""])
    return table(["arm (Beauty)", "model", "seeds", "R@5", "N@5", "R@10", "N@10", "parameters", "best epoch",
                  "train min", "test min", "load"], rows)
COLD_REF = "content-knn"
COLD_OURS = "ours-seq+nprior-share3"  # our recommended cold-start ranking: every other row is also paired against it
COLD_ARMS = {  # arm -> label, in the order the READMEs show the cold-start protocol
    "ours-seq+nprior-share3": "**ours with sequences, semantic-ID prior, 3 cold slots, cold codes voted by text neighbours (recommended)**",
    "ours-seq+prior-share3": "the same, each cold item's own (predicted) first code",
    "ours-seq+prior": "the same, prior over every item, no reserved slots",
    "ours-seq+beam-prior-share3": "the same, the beam's first m items, then the prior, 3 cold slots",
    "ours-seq+beam-prior": "the same, the beam's first m items, then the prior",
    "ours-seq": "ours with sequences (cold items left out), beam alone",
    "ours-seq+prefix": "the same, TIGER's prefix share (ε 0.3)",
    "ours-seq+dense": "the same, LIGER's dense re-rank of beam + cold items",
    "ours-seq+dense-share1": "the same, 1 slot for the cold item nearest the predicted embedding",
    "ours-seq+dense-share3": "the same, 3 slots for the cold items nearest the predicted embedding",
    "ours-seq+text-share3": "the same, beam's 7 and 3 slots by content-kNN's query",
    "ours-seq-oracle+nprior-share3": "oracle: cold items' IDs from their true behaviour (no build has it), voted codes",
    "ours-seq-oracle+prior-share3": "oracle: the same, the cold items' own codes (the ceiling of placing them)",
    "ours-seq-nohead": "ours with sequences, no dense head, beam",
    "ours-seq-nohead+prior-share3": "ours with sequences, no dense head, prior, 3 cold slots",
    "ours+nprior-share3": "text-only IDs, the same ranking (voted cold codes)",
    "ours+prior-share3": "text-only IDs, own cold codes",
    "ours+prior": "text-only IDs, prior over every item",
    "ours": "text-only IDs, beam",
    "ours+dense": "text-only IDs, dense re-rank",
    "rq-kmeans-seq+nprior-share3": "RQ-KMeans on the fused vectors, the same ranking",
    "rq-kmeans-seq+prior-share3": "RQ-KMeans on the fused vectors, own cold codes",
    "rq-kmeans-seq+prior": "RQ-KMeans on the fused vectors, prior over every item",
    "rq-kmeans-seq": "RQ-KMeans on the fused vectors, beam",
    "rq-kmeans+nprior-share3": "RQ-KMeans on text, the same ranking",
    "rq-kmeans+prior-share3": "RQ-KMeans on text, own cold codes",
    "rq-kmeans": "RQ-KMeans on text, beam",
    "sasrec": "SASRec (item IDs; warm items only)",
    "sasrec+prior": "SASRec fused with content the same way (warm items only)",
    "content-knn": "content-kNN (TIGER's Semantic_KNN)",
    "content-knn+share3": "content-kNN, 3 slots for the nearest cold items",
    "popularity": "popularity",
}


def cold_rows() -> dict:
    return {r["arm"]: r for r in load("downstream-cold.json")["rows"] if r["catalog"] == "beauty"}


README_COLD = ("ours-seq+nprior-share3", "ours-seq+prior-share3", "ours-seq", "ours+nprior-share3", "rq-kmeans+nprior-share3",
               "rq-kmeans-seq+nprior-share3", "sasrec+prior", "content-knn", "content-knn+share3")  # README.md's shorter table


def cold_table(full: bool) -> str:
    rows, got = [], cold_rows()
    for arm, label in COLD_ARMS.items():
        r = got.get(arm)
        if r is None or not (full or arm in README_COLD):
            continue
        cells = [label if not full else f"`{arm}`", seeds(r["seeds"])]
        cells += [f"{r[k]:.4f}" for k in ("recall@10_warm", "recall@10_cold", "recall@10")]
        if full:
            cells += [f"{r[k]:.4f}" for k in ("ndcg@10_warm", "ndcg@10_cold", "ndcg@10")]
        cells += [ci(r.get(f"recall@10_cold_minus_{COLD_REF}")), ci(r.get(f"recall@10_minus_{COLD_REF}"))]
        if full:
            cells += [ci(r.get(f"recall@10_{sub}minus_{COLD_OURS}")) for sub in ("warm_", "cold_", "")]
        rows.append(cells)
    head = ["arm" if full else "IDs / ranking (Beauty, cold start)", "seeds", "R@10 warm", "R@10 cold", "R@10 all"]
    head += ["N@10 warm", "N@10 cold", "N@10 all"] if full else []
    head += [f"R@10 cold − `{COLD_REF}` [95% CI]", f"R@10 all − `{COLD_REF}` [95% CI]"]
    head += [f"R@10 {sub} − ours [95% CI]" for sub in ("warm", "cold", "all")] if full else []
    return table(head, rows)


def block_downstream_cold() -> str:
    return cold_table(full=True)


def block_downstream_full() -> str:
    d = load("downstream-full.json")
    runs = runs_by_arm(d)
    rows = []
    for r in d["rows"]:
        rs = runs.get(r["arm"], [])
        rows.append([r["arm"], seeds(r["seeds"]), f"{r['recall@10']:.4f}", f"{r['ndcg@10']:.4f}",
                     " / ".join(f"{v:.4f}" for v in r["recall@10_per_seed"]),
                     ci(r.get("recall@10_minus_sasrec")),
                     span([f["best_epoch"] for f in rs if f.get("best_epoch")]) + " / " + span([f["epochs_run"] for f in rs if f.get("epochs_run")]),
                     span([f["train_seconds"] / 60 for f in rs if f.get("train_seconds")], "{:.0f}")])
    return table(["arm (Beauty, `--preset full`)", "seeds", "R@10", "N@10", "R@10 per seed", "R@10 − sasrec [95% CI]",
                  "best epoch / run", "train min"], rows)


def block_downstream_tail() -> str:
    rows = []
    for fname, what in (("downstream-full.json", "standard, full"), ("downstream-cold.json", "cold start, warm targets")):
        if not (RESULTS / fname).exists():
            continue
        for r in load(fname)["rows"]:
            if "+" in r["arm"] and not r["arm"].endswith(("+prior", "+nprior-share3")):
                continue
            rows.append([what, r["arm"], *(f"{v:.4f}" for v in r["recall@10_by_popularity"])])
    return table(["split", "arm"] + [f"bucket {b} {'(tail)' if b == 1 else '(head)' if b == 5 else ''}".strip() for b in range(1, 6)], rows)


# ---------------------------------------------------------------- builds with sequences, growth


def block_collab() -> str:
    groups: dict[tuple, list] = {}
    for r in load("collab.json")["rows"]:
        groups.setdefault((r["catalog"], r["arm"]), []).append(r)
    rows = []
    for (cat, arm), rs in groups.items():
        rows.append([cat, arm, seeds(sorted(r["seed"] for r in rs)), pct([r["collisions"] for r in rs]),
                     span([r["purity@1"] for r in rs], "{:.3f}"), span([r["lift@1"] for r in rs], "{:.1f}"),
                     span([r["heldout_lift@1"] for r in rs], "{:.1f}"), span([r["time_ratio"] for r in rs], "{:.2f}") + "×",
                     span([r["collab_seconds"] for r in rs], "{:.1f}")])
    return table(["catalog", "build", "seeds", "collisions", "purity@1", "lift@1", "held-out lift@1",
                  "build time vs text only", "collaborative vectors s"], rows)


def block_churn() -> str:
    rows = []
    for r in load("churn.json")["rows"]:
        rows.append([r["catalog"], r["arm"], r["seed"], f"{100 * r['kept_full_id']:.1f}%", f"{100 * r['kept_level1']:.1f}%",
                     f"{100 * r['collisions']:.2f}%", f"{r['purity@1']:.3f}", f"{r['lift@1']:.1f}", f"{r['lift@2']:.1f}",
                     f"{r['seconds']:.1f}"])
    return table(["catalog", "rebuild", "seed", "old items' full ID kept", "level 1 kept", "collisions", "purity@1",
                  "lift@1", "lift@2", "seconds"], rows)


def block_churn_behaviour() -> str:
    rows = []
    for r in load("churn_behaviour.json")["rows"]:
        rows.append([r["scenario"], r["arm"], r["seed"], f"{r['old_items']:,} -> {r['items']:,}", f"{100 * r['kept_full_id']:.1f}%",
                     f"{100 * r['kept_level1']:.1f}%", f"{100 * r['kept_level2']:.1f}%", f"{100 * r['collisions']:.2f}%",
                     r.get("sq_dist_before_after") or "", r.get("old_vectors_kept") or "", f"{r['seconds']:.0f}"])
    return table(["scenario", "rebuild", "seed", "items", "old items' full ID kept", "level 1 kept", "level 2 kept", "collisions",
                  "behaviour moved (mean sq. distance, before -> after rotation)", "old vectors kept", "seconds"], rows)


def block_downstream_seq_warm() -> str:
    d = load("downstream-seq-warm.json")
    runs = runs_by_arm(d)
    names = {"ours-seq": "fresh build (`ours-seq`)", "ours-seq-warm": "warm, refresh factor 4 (the default)",
             "ours-seq-warm-r2": "warm, refresh factor 2", "ours-seq-warm-r0": "warm, rotation only (every vector refreshed)",
             "ours-seq-warm-fold": "warm, new vectors folded into the old space (experiment)"}
    rows = []
    for r in d["rows"]:
        if r["arm"] not in names:
            continue
        kept = [x["kept_full_id"] for x in runs.get(r["arm"], []) if "kept_full_id" in x]
        diff = r.get("recall@10_minus_ours-seq")
        rows.append([names[r["arm"]], seeds(r["seeds"]), " / ".join(f"{v:.4f}" for v in r["recall@10_per_seed"]),
                     f"{r['recall@10']:.4f}", ci(diff) if diff else "", f"{r['ndcg@10']:.4f}",
                     f"{100 * min(kept):.1f}–{100 * max(kept):.1f}%" if kept else ""])
    return table(["IDs", "seeds", "Recall@10 per seed", "Recall@10", "− fresh [95% CI]", "NDCG@10", "old items' full ID kept"], rows)


def block_scale_behaviour() -> str:
    r = load("scale-behaviour.json")
    names = {"behaviour-text": "text only, `--streaming`", "behaviour-stream": "`--sequences --streaming`",
             "behaviour-memory": "`--sequences`, in memory"}
    rows = []
    for key, name in names.items():
        a = r.get(key)
        if a is None:
            continue
        c = a["stages"].get("collab")
        rows.append([name, f"{a['wall_seconds']:.0f}", f"{a['cpu_seconds']:.0f}", f"{a['peak_rss_mb'] / 1024:.2f}",
                     "–" if c is None else f"{c['seconds']:.0f} s, {c['peak_rss_mb'] / 1024:.2f}", f"{100 * a['collision_rate']:.2f}%"])
    return table(["build", "wall s", "CPU s", "peak RSS GiB", "collab stage (GiB)", "collisions"], rows)


# ---------------------------------------------------------------- decoding, start-up, lookups, scale


def block_decoding() -> str:
    d = load("decoding.json")
    env = d["env"]
    head = (f"{env['items']:,} IDs, level sizes {tuple(env['level_sizes'])}, batch {env['batch']}, "
            f"{env['torch_threads']} torch thread(s), rectokens {env['rectokens']}; times in ms, best of repeated calls.\n\n")
    rows = [[r["what"], r["depth"], r["ours_ms"], r.get("ours_pure_csr_ms"), r.get("rectokens_ms"), r.get("dict_ms"),
             r.get("rectokens_ratio"), r.get("dict_ratio"), r.get("note", "")] for r in d["rows"]]
    return head + table(["what", "depth", "ours", "ours, pure CSR", "rectokens", "dict trie", "rectokens / ours",
                         "dict / ours", "notes"], rows)


def block_startup() -> str:
    d = load("startup.json")
    env = d["env"]
    head = (f"Median of {env['runs']} runs, wall seconds, against commit {env['before_ref']}; "
            f"{env['cpus']} CPUs, 1-minute load {env['load_1m_at_end']} at the end.\n\n")
    rows = [[f"`{r['command']}`", r["before_median_s"], r["after_median_s"], f"{r['speed-up (median)']:.1f}×",
             "yes" if r["after_imports_torch"] else "no"] for r in d["rows"]]
    return head + table(["command", "before s", "now s", "speed-up", "imports torch now"], rows)


def block_lookup() -> str:
    rows = []
    for r in load("lookup.json")["rows"]:
        if r["what"].startswith("build"):
            rows.append([r["catalog"], f"{r['items']:,}", r["what"], "", "", "", "",
                         "; ".join(x for x in (f"{r['memory_mb']} MB" if r.get("memory_mb") else "",
                                               f"{r['seconds']} s" if r.get("seconds") else "") if x)])
            continue
        notes = [r["note"]] if r.get("note") else []
        if r.get("recall_at_10_vs_exact") is not None:
            notes.insert(0, f"recall@10 {r['recall_at_10_vs_exact']} vs exact")
        p = (f"{r['ours_p50_us']} / {r['ours_p99_us']}" if r.get("ours_p50_us") is not None else "")
        bp = (f"{r['baseline_p50_us']} / {r['baseline_p99_us']}" if r.get("baseline_p50_us") is not None else "")
        rows.append([r["catalog"], f"{r['items']:,}", r["what"],
                     keys_per_s(r["ours_keys_per_s"]) if r.get("ours_keys_per_s") else "",
                     keys_per_s(r["baseline_keys_per_s"]) if r.get("baseline_keys_per_s") else "", p, bp, "; ".join(notes)])
    return table(["catalog", "items", "what", "ours /s", "baseline /s", "ours p50 / p99 µs", "baseline p50 / p99 µs",
                  "notes"], rows)


def block_scale() -> str:
    s = load("scale.json")
    b, sp, ray, lk = s["build"], s["speed"], s["ray"], s["lookup"]
    out = (f"{s['items']:,} items, {s['data']['dim']}-d, {s['data']['shards']} Parquet shards, {s['cpus']} CPUs; "
           f"trained on {b['train_items']:,} sampled items × {b['epochs']} epochs.\n\n")
    rows = [[k, f"{v['seconds']:.1f}", f"{v['peak_rss_mb'] / 1000:.2f} GB"] for k, v in b["stages"].items()]
    rows.append(["**whole build**", f"**{b['total_seconds']:.0f}**", f"**{b['peak_rss_mb'] / 1000:.2f} GB** (process peak)"])
    out += table(["stage", "seconds", "peak RSS"], rows)
    out += (f"\nIDs: collisions before resolution {100 * b['collision_rate']:.1f}%, codes used "
            f"{'/'.join(map(str, b['codes_used']))}, largest group {b['largest_group']}.\n\n")
    out += table(["assignment of in-memory rows", "items/s"], [
        ["ours, 1 thread", thousands(sp["ours_items_per_s_w1"])],
        [f"ours, {sp['threads']} threads", thousands(sp["ours_items_per_s_w2"])],
        ["plain `model.encode`, torch's own threading", thousands(sp["plain_encode_items_per_s"])],
        [f"the machine's FLOP limit (best fp32 matmul, {sp['matmul_gflops']} GFLOP/s)", thousands(sp["flop_limit_items_per_s"])],
        ["FAISS `ResidualQuantizer.compute_codes` (3 × 8 bits, greedy)", thousands(sp["faiss_items_per_s"])],
    ])
    out += (f"\nRay Data (local Ray): `ray.init` {ray['ray_init_seconds']} s; assign as a Ray Data job "
            f"{ray['ray_assign_seconds']} s against {ray['local_assign_seconds']} s locally ({ray['ray_overhead']}×); "
            f"same codes: {'yes' if ray['same_codes'] else 'no'}. The export loads into `SemanticIDLookup` in "
            f"{lk['load_seconds']} s; nearest code (k = 10) p50 / p99 {lk['nearest_code_p50_us']} / "
            f"{lk['nearest_code_p99_us']} µs.\n")
    return out


def block_omp_wait() -> str:
    d = load("omp_wait.json")
    head = f"{d['items']:,} items × {d['epochs']} epochs, {d['threads']} torch threads, seconds.\n\n"
    rows = [[r["machine"], r["active_s"], r["passive_s"], "yes" if r["identical_weights"] else "no"] for r in d["rows"]]
    return head + table(["machine", "spin-waiting (ACTIVE)", "passive (PASSIVE)", "identical weights"], rows)


# ---------------------------------------------------------------- ID quality


def quality_groups(catalog: str) -> dict:
    groups: dict[str, list] = {}
    for r in load("quality.json")["rows"]:
        if r["catalog"] == catalog:
            groups.setdefault(r["method"], []).append(r)
    return groups


def block_quality() -> str:
    rows = []
    for cat in ("beauty", "movielens"):
        for method, rs in quality_groups(cat).items():
            used = sorted({"/".join(map(str, r["codes_used"])) for r in rs})
            rows.append([cat, method, seeds(sorted(r["seed"] for r in rs if r.get("seed") is not None)) or "–",
                         pct([r["collision_rate"] for r in rs]), span([r["largest_group"] for r in rs]), " ".join(used),
                         span([r["perplexity_l1"] for r in rs], "{:.1f}"), span([r["purity_l1"] for r in rs], "{:.3f}"),
                         span([r["lift_l1"] for r in rs], "{:.1f}"), span([r["purity_l2"] for r in rs], "{:.3f}"),
                         span([r["lift_l2"] for r in rs], "{:.1f}"),
                         span([r["seconds"] for r in rs if r.get("seconds")], "{:.1f}"),
                         span([r["cpu_seconds"] for r in rs if r.get("cpu_seconds")], "{:.1f}")])
    return table(["catalog", "method", "seeds", "collisions", "largest group", "codes used", "L1 perplexity", "L1 purity",
                  "L1 lift", "L2 purity", "L2 lift", "train + assign s", "CPU s"], rows)


def block_first_level() -> str:
    rows = []
    for name in ("first_level.json", "first_level-fresh-embeddings.json", "first_level-latents4-5-6-8.json",
                 "first_level-latents4-h512-256-128.json"):
        groups: dict[tuple, list] = {}
        for r in load(name)["rows"]:
            groups.setdefault((r["part"], r["method"]), []).append(r)
        for (part, method), rs in groups.items():
            if part == "level 1" and name != "first_level.json":
                continue  # the level-1 rows of the other files repeat first_level.json's
            rows.append([f"`{name}`", method, seeds(sorted(r["seed"] for r in rs)),
                         pct([r["collision_rate"] for r in rs]) if "collision_rate" in rs[0] else "–",
                         span([r["purity_l1"] for r in rs], "{:.3f}"), span([r["lift_l1"] for r in rs], "{:.1f}"),
                         span([r["lift_l2"] for r in rs], "{:.1f}") if "lift_l2" in rs[0] else "–",
                         span([r["seconds"] for r in rs], "{:.1f}")])
    return table(["file", "method", "seeds", "collisions", "L1 purity", "L1 lift", "L2 lift", "seconds"], rows)


def block_codebook_sizes() -> str:
    rows = [[r["catalog"], f"{r['n_items']:,}", f"{r['codebook']}{' (auto)' if r['is_auto'] else ''}",
             r["items_per_code@1"], r["purity@1"], r["chance_purity@1"], f"{r['purity_lift@1']}×", r["nmi@1"],
             f"{100 * r['collision_rate']:.1f}%"] for r in load("codebook_sizes.json")["rows"]]
    return table(["catalog", "items", "codes per level", "items per level-1 code", "purity@1", "chance purity@1",
                  "purity / chance", "NMI@1", "collisions"], rows)


# ---------------------------------------------------------------- README.md's headline numbers


def headline_downstream() -> str:
    ds = downstream_rows()
    b = {arm: ds[("beauty", arm)] for arm in (*DOWNSTREAM_ARMS, "random")}
    seq, rqk, letter = b["ours-seq"], b["rq-kmeans"], b["letter"]
    rows = []
    for arm, label in DOWNSTREAM_ARMS.items():  # the other arms: benchmarks/README.md
        r10, n10 = f"{b[arm]['recall@10']:.4f}", f"{b[arm]['ndcg@10']:.4f}"
        if arm == "ours-seq":
            r10, n10 = f"**{r10}**", f"**{n10}**"
        rows.append([label, seeds(b[arm]["seeds"]), r10, n10])
    pub = tiger_published()
    rows.append(["TIGER as published (a much larger model; not run here)", "–", pub[2], pub[3]])
    ml = {arm: ds[("movielens", arm)] for arm in ("ours-seq", "ours", "sasrec")}
    return (
        "**Downstream** (`python benchmarks/downstream.py --catalogs beauty movielens --seeds 0 1 2`, which writes\n"
        "`benchmarks/results/downstream.json` and `downstream.md`). Amazon Beauty, all "
        f"{b['ours']['users']:,} users, leave-one-out;\n"
        "every arm trains the same small generative retriever with the same budget.\n\n"
        + table(["IDs (Beauty)", "seeds", "Recall@10", "NDCG@10"], rows) + "\n"
        f"- With users' sequences against text only: {ci(seq['recall@10_minus_ours'])} Recall@10, "
        f"{ci(seq['ndcg@10_minus_ours'])} NDCG@10\n  (95% paired bootstrap over users). Against RQ-KMeans: "
        f"{ci(negated(rqk['recall@10_minus_ours-seq']))} Recall@10; {seq['recall@10'] / b['random']['recall@10']:.1f}× random IDs.\n"
        f"- RQ-KMeans minus our text-only IDs: {ci(rqk['recall@10_minus_ours'])} Recall@10; LETTER's published IDs "
        f"minus ours:\n  {ci(letter['recall@10_minus_ours'])}. MovieLens-100K (seed 0): Recall@10 {ml['ours-seq']['recall@10']:.4f} "
        f"with sequences, {ml['ours']['recall@10']:.4f} text only, SASRec {ml['sasrec']['recall@10']:.4f}.\n"
        + headline_warm() + "\n" + headline_cold()
    )


def headline_warm() -> str:
    """Today's IDs with sequences and their warm rebuild after growth (downstream-seq-warm.json)."""
    w = {r["arm"]: r for r in load("downstream-seq-warm.json")["rows"]}
    seq, warm = w["ours-seq"], w["ours-seq-warm"]
    return (f"- Re-run on today's code (`downstream-seq-warm.json`): {seq['recall@10']:.4f} with sequences (seeds "
            f"{seeds(seq['seeds'])}); rebuilt warm after growth {ci(warm['recall@10_minus_ours-seq'])}.\n")


def headline_cold() -> str:
    """Full-strength SASRec and the cold-start protocol: warm, cold and all-target columns."""
    full = {r["arm"]: r for r in load("downstream-full.json")["rows"]}
    sas, knn = full["sasrec"], full.get("content-knn")
    got = cold_rows()

    def vs(arm: str, sub: str) -> str:
        v = negated(got[arm][f"recall@10_{sub}minus_{COLD_OURS}"])
        return ci(v) + (" (a tie)" if v[1] <= 0 <= v[2] else "")

    extra = "".join(f"; {label} {full[arm]['recall@10']:.4f} (seed{'s' if len(full[arm]['seeds']) > 1 else ''} {seeds(full[arm]['seeds'])})"
                    for arm, label in (("sasrec+prior", "SASRec fused with content"), ("ours-seq", "ours with sequences"),
                                       ("ours-seq+prior", "ours with sequences and the semantic-ID prior")) if arm in full)
    return (
        f"**Full strength** (`benchmarks/results/downstream-full.json`; its command: benchmarks/README.md; history items masked as RecBole does): "
        f"SASRec {sas['recall@10']:.4f} (seeds {seeds(sas['seeds'])}){extra}"
        + (f"; content-kNN {knn['recall@10']:.4f}" if knn else "")
        + ".\n**Cold start**, 10% of items never trained on (`benchmarks/results/downstream-cold.json`, quick configuration, history masked; "
        "the prior: [docs/downstream.md](docs/downstream.md#cold-start-after-liger)):\n\n"
        + cold_table(full=False) + "\n"
        "- Ours against the same ranking over other IDs (paired over users, on the seeds both have), cold / all targets: "
        + "; ".join(f"{label} {vs(arm, 'cold_')} / {vs(arm, '')}" for arm, label in (
            ("ours+nprior-share3", "text-only IDs"), ("rq-kmeans+nprior-share3", "RQ-KMeans on text"),
            ("rq-kmeans-seq+nprior-share3", "RQ-KMeans on the same fused vectors")) if arm in got) + ".\n"
    )


def headline_quality() -> str:
    q = quality_groups("beauty")
    ours = q["semantic-ids RQ-VAE (default)"]
    faiss = q["FAISS ResidualQuantizer (greedy)"]
    vqp = q["vector-quantize-pytorch ResidualVQ RQ-VAE (MLP as our all-latent row)"]

    def col(rows, key, fmt):
        return span([r[key] for r in rows], fmt)

    used = ", ".join(sorted({"/".join(map(str, r["codes_used"])) for r in ours}))
    return (
        f"**ID quality** (Amazon Beauty, {ours[0]['items']:,} items, seeds {seeds(sorted(r['seed'] for r in ours))}; "
        "`python benchmarks/quality.py --catalogs beauty movielens --seeds 0 1 2 --peer-seeds 0 1 2 --slow-seeds 0`,\n"
        f"`benchmarks/results/quality.json`): collisions before resolution {pct([r['collision_rate'] for r in ours])} "
        f"(FAISS's residual quantizer {pct([r['collision_rate'] for r in faiss])}, vector-quantize-pytorch's RQ-VAE "
        f"{pct([r['collision_rate'] for r in vqp])});\nlevel-1 category purity {col(ours, 'purity_l1', '{:.3f}')} and "
        f"co-interaction lift {col(ours, 'lift_l1', '{:.1f}')} (FAISS {col(faiss, 'purity_l1', '{:.3f}')} and "
        f"{col(faiss, 'lift_l1', '{:.1f}')}); codes used {used}; trained and assigned in {col(ours, 'seconds', '{:.1f}')} s "
        f"(vector-quantize-pytorch {col(vqp, 'seconds', '{:.1f}')} s).\n"
    )


def headline_decoding() -> str:
    d = load("decoding.json")
    build = next(r for r in d["rows"] if r["what"] == "build")
    masks = [r for r in d["rows"] if r["what"] == "next_mask"]
    return (
        f"**Decoding** ({d['env']['items']:,} synthetic IDs; `python benchmarks/decoding.py`, "
        "`benchmarks/results/decoding.json`):\n"
        f"the prefix trie builds in {build['ours_ms'] / 1000:.2f} s; the allowed-token masks for "
        f"{d['env']['batch']:,} partial IDs take {span([r['ours_ms'] for r in masks], '{:.2f}')} ms\n"
        f"at each depth (a Python dict trie: {span([r['dict_ms'] for r in masks], '{:.0f}')} ms).\n"
    )


def headline_scale() -> str:
    sc = load("scale.json")
    exact = [r["ours_keys_per_s"] for r in load("lookup.json")["rows"]
             if r["items"] == 1_000_000 and r.get("ours_keys_per_s") and "nearest" not in r["what"]]
    st = {r["command"]: r for r in load("startup.json")["rows"]}
    torch_free = not (st["--help"]["after_imports_torch"] or st["lookup --item"]["after_imports_torch"])
    return (
        f"**Scale** (`python benchmarks/scale.py`, `benchmarks/results/scale.json`): a {sc['items']:,}-item streaming\n"
        f"build in {sc['build']['total_seconds']:.0f} s at {sc['build']['peak_rss_mb'] / 1000:.2f} GB peak memory. "
        "**Lookups** (`python benchmarks/lookup.py --beauty-export\nout/bench/beauty-seed0`, "
        f"`benchmarks/results/lookup.json`): exact lookups on 1M items at {min(exact) / 1e6:.1f}M–{max(exact) / 1e6:.1f}M keys/s.\n"
        "**Start-up** (`python benchmarks/startup.py`, `benchmarks/results/startup.json`): `semantic-ids --help` in\n"
        f"{st['--help']['after_median_s']} s and `lookup --item` in {st['lookup --item']['after_median_s']} s"
        + (", without importing torch.\n" if torch_free else ".\n")
    )


def block_headline() -> str:
    """The README's 'Measured' numbers; each paragraph names the command and the results file."""
    return "\n".join([headline_downstream(), headline_quality(), headline_decoding(), headline_scale()])


def block_identity() -> str:
    d = load("identity.json")
    rows = [[name, "same" if c["same_data"] else "CHANGED", "same" if c["same_file"] else "changed",
             d["hashes"][name]["data_sha256"][:16]] for name, c in d["comparison"].items()]
    return table(["build", "IDs (every column, row order)", "file bytes", "data sha256 (prefix)"], rows)


# ---------------------------------------------------------------- files and blocks

FILES = {
    ROOT / "README.md": {"headline": block_headline},
    ROOT / "benchmarks" / "README.md": {
        "downstream-beauty": block_downstream_beauty,
        "downstream-per-seed": block_downstream_per_seed,
        "downstream-movielens": block_downstream_movielens,
        "downstream-cost": block_downstream_cost,
        "downstream-t5": block_downstream_t5,
        "downstream-full": block_downstream_full,
        "downstream-cold": block_downstream_cold,
        "downstream-tail": block_downstream_tail,
        "collab": block_collab,
        "churn": block_churn,
        "churn-behaviour": block_churn_behaviour,
        "downstream-seq-warm": block_downstream_seq_warm,
        "scale-behaviour": block_scale_behaviour,
        "decoding": block_decoding,
        "startup": block_startup,
        "codebook-sizes": block_codebook_sizes,
        "quality": block_quality,
        "first-level": block_first_level,
        "omp-wait": block_omp_wait,
        "lookup": block_lookup,
        "scale": block_scale,
        "identity": block_identity,
    },
}


def render(text: str, blocks: dict, path: Path) -> str:
    """``text`` with every named block regenerated; a block the file lacks is an error."""
    found = {m.group("name") for m in MARKER.finditer(text)}
    missing = sorted(set(blocks) - found)
    unknown = sorted(found - set(blocks))
    if missing or unknown:
        raise SystemExit(f"{path}: blocks missing {missing}, blocks with no generator {unknown}")
    return MARKER.sub(lambda m: m.group(1) + blocks[m.group("name")]() + m.group(4), text)


def stale() -> list[str]:
    """'file: block' for every block whose text differs from what the results files give."""
    out = []
    for path, blocks in FILES.items():
        text = path.read_text()
        new = render(text, blocks, path)
        if new != text:
            now = {m.group("name"): m.group("body") for m in MARKER.finditer(text)}
            then = {m.group("name"): m.group("body") for m in MARKER.finditer(new)}
            out += [f"{path.relative_to(ROOT)}: {name}" for name in blocks if now.get(name) != then.get(name)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is out of date; write nothing")
    args = ap.parse_args(argv)
    if args.check:
        out = stale()
        for s in out:
            print(f"out of date: {s} (run python benchmarks/readme_tables.py)", file=sys.stderr)
        return 1 if out else 0
    for path, blocks in FILES.items():
        text = path.read_text()
        new = render(text, blocks, path)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
