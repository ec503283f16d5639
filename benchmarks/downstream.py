"""Downstream quality of ID schemes: the same generative retriever trained on each, same budget.

    python benchmarks/downstream.py --catalogs beauty movielens --seeds 0 1 2
    python benchmarks/downstream.py --catalogs movielens --arms ours random --seeds 0 --out /tmp/d
    python benchmarks/downstream.py --preset tiger --device cuda          # TIGER-sized, on a GPU

Arms (IDs are built on the same cached embeddings; each seed builds its own IDs
where the scheme has a seed, and trains its own retriever):

- ``ours``: our default build (the catalog's pipeline template, defaults otherwise);
- ``rq-kmeans``: ``model.method = "rq-kmeans"`` (greedy residual k-means);
- ``rqvae-latent``: TIGER's all-latent RQ-VAE (``first_level = "latent"``, MLP 512-256-128, latent 6, 200 epochs);
- ``random``: uniform random codes with the level sizes of our default build, collision level appended;
- ``letter``: LETTER's published Beauty IDs (4 levels), collision level appended where they collide;
- ``sasrec``: one token per item (item-ID embeddings, cross-entropy over all items), the same network;
- ``popularity``: items ranked by training count;
- ``bisecting-rq`` (an experiment): our level 1 (bisecting k-means), then greedy residual k-means of
  the residual for levels 2-3, i.e. RQ-KMeans' finer levels under our first level.

Every generative arm: the same :class:`RetrieverConfig` (``--config`` fields override
it), leave-one-out split, early stopping on validation Recall@10, trie-constrained
beam search. Per-user ranks are kept under ``out/downstream/`` so an interrupted run
resumes (``--resume``) and intervals are computed over all seeds at the end: each
arm's per-user metric is averaged over its seeds, then a paired bootstrap over users
gives the 95% interval of its difference to ``ours``.

Prints a table and writes benchmarks/results/downstream.json and downstream.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (benchmarks/omp_wait.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.stages.embed import embed_texts  # noqa: E402
from semantic_ids.runners.build import read_and_embed  # noqa: E402
from semantic_ids.stages.catalog import load_catalog  # noqa: E402
from semantic_ids.stages.resolve import resolve_counter  # noqa: E402
from semantic_ids.stages.catalog.datasets import fetch_movielens  # noqa: E402
from semantic_ids.model.sizing import auto_codebook_sizes  # noqa: E402
from semantic_ids.quality.downstream import leave_one_out, paired_bootstrap, read_sequences, recall_ndcg, target_ranks  # noqa: E402
from semantic_ids.quality.downstream.retriever import GenerativeRetriever, RetrieverConfig, popularity_ranking  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "out" / "downstream"
TEMPLATES = {
    "beauty": "Categories: {categories}; Title: {title}; Brand: {brand}",
    "movielens": "Title: {title}; Year: {year}; Genres: {genres}",
}
BUILDS = {
    "ours": {},
    "rq-kmeans": {"model": {"method": "rq-kmeans"}},
    "rqvae-latent": {"model": {"first_level": "latent", "latent_dim": 6, "hidden_dims": [512, 256, 128]}, "train": {"epochs": 200}},
}
# builds with the users' sequences fused in (semantic_ids.model.collab), the signal learned from the training
# parts only (holdout_last = 2: no validation or test item); "ours-seq" is the default weight, and
# "rq-kmeans-seq" quantizes the same fused vectors with RQ-KMeans
SEQ_BUILDS = {
    "ours-seq": {},
    "ours-seq-w0.3": {"collab": {"weight": 0.3}},
    "ours-seq-w0.7": {"collab": {"weight": 0.7}},
    "rq-kmeans-seq": {"model": {"method": "rq-kmeans"}},
}
# simulated catalog growth (benchmarks/churn.py): our default build on a seeded 80% of the items, then every
# item gets IDs by a warm-started rebuild (build --previous) or by assign; compare with "ours" (a fresh build)
GROWTH_ARMS = ("ours-warm", "ours-assign")
ARMS = ["ours", "ours-seq", *GROWTH_ARMS, "ours-seq-w0.3", "ours-seq-w0.7", "rq-kmeans-seq", "rq-kmeans", "rqvae-latent", "random", "letter", "sasrec", "popularity", "bisecting-rq"]
# MovieLens-100K has 943 users, about 21 training steps an epoch against Beauty's 88: it gets
# more epochs and a shorter warm-up so that it trains for a comparable number of steps
SMALL_BUDGET = {"movielens": {"epochs": 20, "warmup_steps": 50}}
METRICS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]
TIGER_BEAUTY = {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384}


def catalog(name: str):
    if name == "beauty":
        if not (BEAUTY / "items.jsonl").exists():
            return None
        return BEAUTY / "items.jsonl", BEAUTY / "sequences.jsonl"
    path = fetch_movielens(ROOT / "data" / "ml-100k")
    return path, path.parent / "sequences.jsonl"


def sequences_path(name: str) -> Path:
    return BEAUTY / "sequences.jsonl" if name == "beauty" else ROOT / "data" / "ml-100k" / "sequences.jsonl"


def with_counter(codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return resolve_counter(codes, ids).codes


def embeddings(name: str, path: Path) -> np.ndarray:
    """The catalog's embeddings under its template, from the cache our builds fill."""
    cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]})
    return embed_texts(load_catalog(path, cfg.catalog).texts, cfg.embedding, show_progress=False)[0]


def bisecting_rq(emb: np.ndarray, seed: int, sizes: tuple[int, ...]) -> np.ndarray:
    """(N, L) codes: level 1 = our bisecting k-means; the deeper levels = greedy residual k-means
    of the residual x - c1 (FAISS), i.e. the default's level 1 with RQ-KMeans' finer levels."""
    from semantic_ids.model.kmeans import bisecting_kmeans, nearest
    from semantic_ids.stages.train import residual_codebooks

    x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    c = bisecting_kmeans(x, sizes[0], generator=torch.Generator().manual_seed(seed))
    first = nearest(x, c)
    res = x - c[first]
    codes = [first]
    for book in residual_codebooks(res.numpy(), sizes[1:], seed=seed):  # greedy: nearest code, level by level
        book = torch.from_numpy(book)
        idx = nearest(res, book)
        codes.append(idx)
        res = res - book[idx]
    return torch.stack(codes, 1).numpy().astype(np.int64)


def arm_codes(arm: str, name: str, path: Path, ids: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """(N, L) unique codes for an arm, in catalog order, and what building them cost."""
    if arm in BUILDS:
        cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, seed=seed, **BUILDS[arm])
        start = time.perf_counter()
        cat, emb, _ = read_and_embed(path, cfg, show_progress=False)
        sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=cat.ids)
        assert np.array_equal(sid.ids_, ids), "the build's item order should be the catalog's"
        return sid.codes_, {"build_seconds": round(time.perf_counter() - start, 1),
                            "collision_rate": round(float(sid.metrics_.get("collision_rate", float("nan"))), 4)}
    if arm in SEQ_BUILDS:
        over = {**SEQ_BUILDS[arm]}
        over["collab"] = {"holdout_last": 2, **over.get("collab", {})}
        cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, seed=seed, **over)
        start = time.perf_counter()
        cat, emb, _ = read_and_embed(path, cfg, show_progress=False)
        sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=cat.ids, sequences=sequences_path(name))
        assert np.array_equal(sid.ids_, ids), "the build's item order should be the catalog's"
        return sid.codes_, {"build_seconds": round(time.perf_counter() - start, 1),
                            "collision_rate": round(float(sid.metrics_["collision_rate"]), 4)}
    if arm in GROWTH_ARMS:
        import tempfile

        import pandas as pd

        from semantic_ids.runners.assign import assign_new_items

        cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, seed=seed)
        frame, emb = load_catalog(path, cfg.catalog).frame, embeddings(name, path)
        old = np.sort(np.random.default_rng(seed).permutation(len(ids))[: int(0.8 * len(ids))])
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            old_dir = SemanticIDs(cfg, show_progress=False).fit(emb[old], ids=frame.iloc[old]["item_id"].to_numpy()).save(Path(tmp) / "old")
            if arm == "ours-warm":
                sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=frame["item_id"].to_numpy(), previous=old_dir)
                got_ids, codes = sid.ids_, sid.codes_
            else:
                assign_new_items(old_dir, frame, embeddings=emb, show_progress=False)
                sid = SemanticIDs.load(old_dir)
                got_ids, codes = sid.ids_, sid.codes_
        order = pd.Index(got_ids).get_indexer(pd.Index(ids))
        return codes[order], {"build_seconds": round(time.perf_counter() - start, 1),
                              "collision_rate": round(float(sid.metrics_.get("collision_rate", float("nan"))), 4)}
    if arm == "bisecting-rq":  # experiment: our level 1, then FAISS's residual k-means on x - c1 for levels 2-3
        return with_counter(bisecting_rq(embeddings(name, path), seed, auto_codebook_sizes(len(ids))), ids), {}
    if arm == "random":  # the level sizes our default build uses for this catalog
        rng = np.random.default_rng(seed)
        return with_counter(np.column_stack([rng.integers(0, k, len(ids)) for k in auto_codebook_sizes(len(ids))]), ids), {}
    if arm == "letter":
        rows = {}
        for line in (BEAUTY / "peer_letter_semantic_ids.jsonl").read_text().splitlines():
            r = json.loads(line)
            rows[r["item_id"]] = r["codes"]
        codes = np.array([rows[i] for i in ids], dtype=np.int64)
        if len(np.unique(codes, axis=0)) < len(codes):
            codes = with_counter(codes, ids)
        return codes, {}
    if arm == "sasrec":
        return np.arange(len(ids), dtype=np.int64)[:, None], {}
    raise ValueError(arm)


def run_arm(arm, name, path, ids, split, seed, cfg) -> tuple[np.ndarray, dict]:
    """Per-user test ranks (-1 = not in the top 20) and a row of facts."""
    if arm == "popularity":
        top = popularity_ranking(split, len(ids), cfg.beam)
        return target_ranks(np.broadcast_to(top, (len(split.test_target), len(top))), split.test_target), {"invalid_id_rate": 0.0}
    codes, info = arm_codes(arm, name, path, ids, seed)
    model = GenerativeRetriever(codes, None, RetrieverConfig(**{**cfg.to_dict(), "seed": seed}), show_progress=False).fit(split)
    start = time.perf_counter()
    ranked = model.rank(split.test_history)
    info.update({
        "codes_sha256": hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int64).tobytes()).hexdigest()[:16],
        "levels": int(codes.shape[1]),
        "parameters": model.model_.num_parameters(),
        "best_epoch": model.best_epoch_,
        "epochs_run": len(model.history_),
        "train_seconds": round(model.train_seconds_, 1),
        "test_seconds": round(time.perf_counter() - start, 1),
        "invalid_id_rate": float((ranked < 0).mean()),
        "history": model.history_,
    })
    return target_ranks(ranked, split.test_target), info


REFERENCES = ("ours", "ours-seq")  # each arm's paired difference is reported against both


def summarize(name: str, arms: list[str], seeds: list[int], n_users: int, n_boot: int, work: Path = WORK) -> list[dict]:
    """One row per arm: mean over its seeds, per-seed means, and the paired interval of arm - ref
    for each reference arm (``ours``, ``ours-seq``), on the seeds both have (each side's per-user
    metric averaged over those seeds first)."""
    per_arm = {}
    for arm in arms:
        runs = {s: work / f"{name}-{arm}-seed{s}.npy" for s in seeds}
        runs = {s: recall_ndcg(np.load(f, allow_pickle=False)) for s, f in runs.items() if f.exists()}
        if runs:
            per_arm[arm] = runs
    rows = []
    for arm, runs in per_arm.items():
        row = {"catalog": name, "arm": arm, "seeds": sorted(runs), "users": n_users}
        for m in METRICS:
            row[m] = round(float(np.mean([r[m].mean() for r in runs.values()])), 5)
            row[f"{m}_per_seed"] = [round(float(runs[s][m].mean()), 5) for s in sorted(runs)]
        for ref in REFERENCES:
            base = per_arm.get(ref, {})
            common = sorted(set(runs) & set(base))
            if arm == ref or not common:
                continue
            row[f"paired_seeds_{ref}"] = common
            for m in METRICS:
                arm_user = np.mean([runs[s][m] for s in common], axis=0)
                ref_user = np.mean([base[s][m] for s in common], axis=0)
                d, lo, hi = paired_bootstrap(arm_user, ref_user, n_boot=n_boot, seed=0)
                row[f"{m}_minus_{ref}"] = [round(d, 5), round(lo, 5), round(hi, 5)]
        rows.append(row)
    return rows


def markdown(rows: list[dict], facts: list[dict], env: dict) -> str:
    lines = [f"Protocol: {env['protocol']}", "", f"Retriever: {env['retriever']}", ""]
    lines.append("| catalog | arm | seeds | R@5 | N@5 | R@10 | N@10 | R@10 − ours [95% CI] | N@10 − ours [95% CI] "
                 "| R@10 − ours-seq [95% CI] | N@10 − ours-seq [95% CI] |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        def ci(m, ref):
            v = r.get(f"{m}_minus_{ref}")
            return "" if v is None else f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]"
        lines.append(f"| {r['catalog']} | {r['arm']} | {','.join(map(str, r['seeds']))} | {r['recall@5']:.4f} | {r['ndcg@5']:.4f} | "
                     f"{r['recall@10']:.4f} | {r['ndcg@10']:.4f} | {ci('recall@10', 'ours')} | {ci('ndcg@10', 'ours')} | "
                     f"{ci('recall@10', 'ours-seq')} | {ci('ndcg@10', 'ours-seq')} |")
    if any(r["catalog"] == "beauty" for r in rows):
        t = TIGER_BEAUTY
        lines.append(f"| beauty | TIGER (published; larger model, not run here) | | {t['recall@5']:.4f} | {t['ndcg@5']:.4f} | "
                     f"{t['recall@10']:.4f} | {t['ndcg@10']:.4f} | | | | |")
    lines += ["", "| catalog | arm | seed | levels | params | best epoch / run | train s | test s | invalid-ID rate | ID build s | collisions |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in facts:
        lines.append(f"| {f['catalog']} | {f['arm']} | {f['seed']} | {f.get('levels', '')} | {f.get('parameters', '')} | "
                     f"{f.get('best_epoch', '')} / {f.get('epochs_run', '')} | {f.get('train_seconds', '')} | {f.get('test_seconds', '')} | "
                     f"{f.get('invalid_id_rate', '')} | {f.get('build_seconds', '')} | {f.get('collision_rate', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalogs", nargs="+", default=["beauty", "movielens"])
    ap.add_argument("--arms", nargs="+", default=ARMS, choices=ARMS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--preset", choices=["small", "full", "tiger"], default="small",
                    help="small: the quick CPU check (RetrieverConfig()); full: trained to convergence (RetrieverConfig.full()); "
                    "tiger: TIGER-sized (RetrieverConfig.tiger(), for a GPU)")
    ap.add_argument("--work", default=str(WORK), help="where per-run ranks are kept (one folder per preset/protocol)")
    ap.add_argument("--device", default="cpu", help="torch device for the retriever, e.g. cuda")
    ap.add_argument("--config", default="{}", help="JSON of RetrieverConfig fields over the preset, e.g. '{\"epochs\": 10}'")
    ap.add_argument("--resume", action="store_true", help="skip (catalog, arm, seed) runs whose ranks are already in out/downstream")
    ap.add_argument("--summarize-only", action="store_true", help="train nothing: tabulate the runs in out/downstream")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); two 1-thread processes "
                    "over different seeds use 2 cores better than one 2-thread process for a model this small")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--out", default=str(RESULTS / "downstream"), help="results path without extension")
    args = ap.parse_args()
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.WARNING)
    logging.getLogger("semantic_ids.quality.downstream").setLevel(logging.INFO)  # one line per epoch
    fields = {"device": args.device, **json.loads(args.config)}
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows, cfgs = [], {}
    for name in args.catalogs:
        found = catalog(name)
        if found is None:
            print(f"skipping {name}: ../shared/data/amazon_beauty not found", file=sys.stderr)
            continue
        path, seq_path = found
        # the small preset's budget per catalog (the same for every arm); --config fields override it
        cfg = RetrieverConfig.preset(args.preset, **{**(SMALL_BUDGET.get(name, {}) if args.preset == "small" else {}), **fields})
        cfgs[name] = cfg.to_dict()
        cat = load_catalog(path, BuildConfig().replace(catalog={"template": TEMPLATES[name]}).catalog)
        ids = cat.ids
        split = leave_one_out(read_sequences(seq_path, ids), cfg.max_history)
        arms = [a for a in args.arms if not (a == "letter" and name != "beauty")]
        for seed in args.seeds:  # seed-major, so arms share the machine's load alike
            for arm in arms:
                out = work / f"{name}-{arm}-seed{seed}.npy"
                if args.summarize_only or (args.resume and out.exists()):
                    if out.exists():
                        ran = json.loads(out.with_suffix(".json").read_text()).get("retriever")
                        if ran != {**cfg.to_dict(), "seed": seed}:
                            sys.exit(f"{out} was trained with another retriever config ({ran}); "
                                     "move out/downstream aside or pass the same --config")
                    continue
                start = time.perf_counter()
                ranks, info = run_arm(arm, name, path, ids, split, seed, cfg)
                fact = {"catalog": name, "arm": arm, "seed": seed, **info, "retriever": {**cfg.to_dict(), "seed": seed},
                        "wall_seconds": round(time.perf_counter() - start, 1),
                        "threads": torch.get_num_threads(), "load_1m": round(os.getloadavg()[0], 2)}
                out.with_suffix(".json").write_text(json.dumps(fact) + "\n")
                np.save(out, ranks)  # last: its presence marks the run done
                m = recall_ndcg(ranks)
                print(json.dumps({"catalog": name, "arm": arm, "seed": seed, **{k: round(float(m[k].mean()), 4) for k in METRICS},
                                  **{k: v for k, v in info.items() if k != "history"}}), flush=True)
        rows += summarize(name, arms, args.seeds, len(split.test_target), args.n_boot, work)
    env = {
        "protocol": "leave-one-out (last item test, second-to-last validation, rest training); histories of at most "
                    f"{cfg.max_history} items; all test users; early stopping on validation Recall@10 "
                    f"({cfg.valid_users or 'all'} seeded users, patience {cfg.patience}); trie-constrained beam {cfg.beam}; "
                    f"per-user metrics averaged over seeds, paired bootstrap over users ({args.n_boot} resamples) for arm − ours; "
                    "the interval covers the sampling of users, not training-seed variance (see the per-seed values)",
        "retriever": cfgs,
        "seeds": args.seeds,
        "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": f"{os.cpu_count()} CPUs",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    facts_out = [json.loads(f.with_suffix(".json").read_text()) for f in sorted(work.glob("*-seed*.npy"))]
    facts_out = [{k: v for k, v in f.items() if k != "retriever"} for f in facts_out
                 if f["catalog"] in args.catalogs and f["arm"] in args.arms and f["seed"] in args.seeds]
    out.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows, "runs": facts_out}, indent=1) + "\n")
    md = markdown(rows, facts_out, env)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
