"""Quality and speed of a default build, on real catalogs, beside peers in the same run.

    python benchmarks/quality.py --seeds 0 1 2       # everything (30-40 min on 2 idle cores)
    python benchmarks/quality.py --catalogs movielens --methods rqvae faiss vqp-rqvae --out /tmp/q

For each catalog: our default build (embedding included, cached under
data/cache after the first run), and on the same embeddings, in the same process
(``--methods`` picks rows; default all):

- ``rqvae``: our default RQ-VAE (level 1 from bisecting k-means, levels 2-3 from
  the RQ-VAE on the residual, latent 4); ``rqvae-progressive``: the previous
  default (``first_level = "progressive"``, latent 5); ``rqvae-latent``: TIGER's
  all-latent RQ-VAE, the default before that (``first_level = "latent"``, MLP
  512-256-128, latent 6, 200 epochs);
  ``rq-kmeans``: our ``model.method = "rq-kmeans"``;
- ``faiss``: FAISS's ResidualQuantizer (3 x 8 bits, greedy beam 1);
- ``semantic-id-rqkmeans`` / ``semantic-id-rqvae``: the semantic-id PyPI package's
  RQKMeans and RQVAE, 3 x 256 codes, its defaults otherwise (benchmarks/peers.py);
- ``vqp-rqvae``: an MLP RQ-VAE around vector-quantize-pytorch's ResidualVQ (EMA,
  k-means init, dead-code expiry), sized like ours (benchmarks/peers.py);
- ``letter``: for Beauty, the LETTER paper's published IDs (first 3 of 4 levels);
- ``random``: uniform random codes (the floor).

Every row: codes before collision resolution; collision rate, largest group, codes
used per level, level-1 perplexity; purity and NMI (category labels) and
co-interaction lift (user sequences) at depths 1 and 2 (semantic_ids.quality.evaluate);
reconstruction error where the method has a decoder; seconds = train + assign
(wall clock), cpu_seconds = the process CPU time of the same work (all threads;
steadier than wall time on a shared machine), load_1m = the machine's 1-minute
load average when the row finished. Rows run seed-major (seed 0 of every method,
then seed 1, ...) so methods share the machine's load. ``--seeds`` applies to our
rows and FAISS, ``--peer-seeds`` to the peer RQ-VAEs, ``--slow-seeds`` to
semantic-id's RQKMeans (scikit-learn, the slowest row).

Prints a table and writes benchmarks/results/quality.json ({"env", "rows"}: rows
are flat dicts keyed "catalog", "method", "seed" plus metrics; our rows also keep
the nested per-stage "stages" timings; the peers' settings are in
env["peer_settings"]) and quality.md (rows, then mean ± sd).
"""

from __future__ import annotations

import argparse
import contextlib
import json
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

from semantic_ids import BuildConfig  # noqa: E402
from semantic_ids.stages.embed import embed_texts  # noqa: E402
from semantic_ids.runners.build import build  # noqa: E402
from semantic_ids.stages.catalog.datasets import fetch_movielens  # noqa: E402
from semantic_ids.stages.catalog import load_catalog  # noqa: E402
from semantic_ids.quality.evaluate import category_labels, evaluate_codes, sequence_pairs  # noqa: E402
from semantic_ids.stages.metrics import code_stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"
CACHE = str(ROOT / "data" / "cache")
SEQUENCES = {"beauty": BEAUTY / "sequences.jsonl", "movielens": ROOT / "data" / "ml-100k" / "sequences.jsonl"}
TEMPLATES = {
    # as pipelines/configs/amazon_beauty.toml: categories first, no price (docs/method.md, "The text template")
    "beauty": "Categories: {categories}; Title: {title}; Brand: {brand}",
    "movielens": "Title: {title}; Year: {year}; Genres: {genres}",
}


def catalog_path(name: str) -> Path | None:
    if name == "beauty":
        return BEAUTY / "items.jsonl" if (BEAUTY / "items.jsonl").exists() else None
    return fetch_movielens(ROOT / "data" / "ml-100k")


def faiss_rq(emb: np.ndarray, levels: int = 3, bits: int = 8, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """Codes, train + assign seconds, reconstruction error (see peers.recon_error)."""
    import faiss

    rq = faiss.ResidualQuantizer(emb.shape[1], levels, bits)
    rq.max_beam_size = 1  # greedy, so codes are prefixes
    rq.cp.seed = seed
    start = time.perf_counter()
    rq.train(emb)
    codes = rq.compute_codes(emb)
    seconds = time.perf_counter() - start
    assert bits == 8, "byte-aligned codes only"
    return codes.astype(np.int64), seconds, peers.recon_error(emb, rq.decode(codes))


def letter_codes(ids: np.ndarray) -> np.ndarray:
    rows = {}
    for line in (BEAUTY / "peer_letter_semantic_ids.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[r["item_id"]] = r["codes"][:3]
    return np.array([rows[i] for i in ids], dtype=np.int64)


def coherence(codes: np.ndarray, ctx: dict) -> dict:
    """Purity, NMI and co-interaction lift at depths 1 and 2 (see semantic_ids.quality.evaluate)."""
    m = evaluate_codes(codes[:, :3], (256, 256, 256), labels=ctx.get("labels"), pairs=ctx.get("pairs"), depths=(1, 2))

    def get(key: str, digits: int):
        return round(m[key], digits) if key in m else None

    return {
        "purity_l1": get("purity@1", 3),
        "lift_l1": get("lift@1", 1),
        "nmi_l1": get("nmi@1", 3),
        "purity_l2": get("purity@2", 3),
        "lift_l2": get("lift@2", 1),
        "nmi_l2": get("nmi@2", 3),
    }


def row(method: str, catalog: str, seed, stats: dict, seconds: float, extra: dict | None = None) -> dict:
    return {
        "catalog": catalog,
        "method": method,
        "seed": seed,
        "items": stats["n_items"],
        "collision_rate": round(stats["collision_rate"], 5),
        "largest_group": stats["largest_group"],
        "codes_used": stats["codes_used"],
        "perplexity_l1": round(stats["perplexity"][0], 1),
        "seconds": round(seconds, 1),
        **(extra or {}),
    }


METHODS = {
    "rqvae": "semantic-ids RQ-VAE (default)",
    "rqvae-progressive": "semantic-ids RQ-VAE, level 1 progressive-dim k-means (previous default)",
    "rqvae-latent": "semantic-ids RQ-VAE, all levels in the latent (TIGER; default before that)",
    "rq-kmeans": "semantic-ids RQ-KMeans (model.method=rq-kmeans)",
    "faiss": "FAISS ResidualQuantizer (greedy)",
    "semantic-id-rqkmeans": "semantic-id 0.2.5 RQKMeans (defaults)",
    "semantic-id-rqvae": "semantic-id 0.2.5 RQVAE (defaults)",
    "vqp-rqvae": "vector-quantize-pytorch ResidualVQ RQ-VAE (MLP as our all-latent row)",
    "letter": "LETTER published IDs (3 of 4 levels)",
    "random": "random codes (floor)",
}
PEER_SETTINGS: dict[str, dict] = {}  # method -> the settings a peer ran with (into quality.json's env)
PEERS = {
    "semantic-id-rqkmeans": peers.semantic_id_rqkmeans,
    "semantic-id-rqvae": peers.semantic_id_rqvae,
    "vqp-rqvae": peers.vqp_rqvae,
}


@contextlib.contextmanager
def cpu_clock():
    """Process CPU seconds (all threads) spent inside the library's train and assign calls
    during a fit, so our rows count the same work as ``cpu_seconds`` of the peers."""
    import semantic_ids.runners.estimator as api

    spent = {"cpu": 0.0}
    originals = {name: getattr(api, name) for name in ("train_rqvae", "encode_all")}

    def timed(fn):
        def wrapper(*a, **kw):
            start = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                spent["cpu"] += time.process_time() - start

        return wrapper

    for name, fn in originals.items():
        setattr(api, name, timed(fn))
    try:
        yield spent
    finally:
        for name, fn in originals.items():
            setattr(api, name, fn)


# config sections per row of ours (on top of the library's defaults)
OURS = {
    "rqvae": {},
    "rqvae-progressive": {"model": {"first_level": "progressive", "latent_dim": 5}},
    "rqvae-latent": {"model": {"first_level": "latent", "latent_dim": 6, "hidden_dims": [512, 256, 128]}, "train": {"epochs": 200}},
    "rq-kmeans": {"model": {"method": "rq-kmeans"}},
}


def ours(name: str, path: Path, seed: int, method: str, ctx: dict) -> dict:
    """One build with the library (embedding through the cache), scored like every row."""
    cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, embedding={"cache_dir": CACHE}, seed=seed, **OURS[method])
    out = ROOT / "out" / "bench" / (f"{name}-seed{seed}" if method == "rqvae" else f"{name}-{method}-seed{seed}")
    with cpu_clock() as spent:
        sid = build(out, catalog=path, config=cfg, show_progress=False).estimator  # read, embed, fit, export
    m = sid.metrics_
    stats = code_stats(sid.raw_codes_, cfg.model.codebook_sizes)
    stages = m["stages"]
    return row(METHODS[method], name, seed, stats, stages["train"]["seconds"] + stages["encode"]["seconds"], {
        "cpu_seconds": round(spent["cpu"], 1),
        "reconstruction_mse": round(m["reconstruction_mse"], 4),
        "embed_seconds": stages.get("embed", {}).get("seconds"),
        "embedded_from_cache": m["embedding"].get("computed", 0) == 0,
        "total_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
        "stages": stages,
        **coherence(sid.raw_codes_, ctx),
    })


def run(catalogs: list[str], seeds: list[int], methods: list[str], peer_seeds: list[int], slow_seeds: list[int]) -> list[dict]:
    """Rows for every catalog; seed-major (each seed runs every method in turn), so the
    methods share whatever load the machine has while they run."""
    rows = []

    def emit(r: dict) -> None:
        r["load_1m"] = round(os.getloadavg()[0], 2)  # machine load when the row finished
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "stages"}), flush=True)

    for name in catalogs:
        path = catalog_path(name)
        if path is None:
            print(f"skipping {name}: not found (Amazon Beauty lives in ../shared)", file=sys.stderr)
            continue
        cfg0 = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, embedding={"cache_dir": CACHE})
        cat = load_catalog(path, cfg0.catalog)
        found = category_labels(cat.frame)
        ctx = {"labels": found[1] if found else None, "pairs": sequence_pairs(SEQUENCES[name], cat.ids)[0]}
        ids = cat.ids
        emb = None
        for seed in sorted(set(seeds) | set(peer_seeds) | set(slow_seeds)):
            for method in OURS:
                if method in methods and seed in seeds:
                    emit(ours(name, path, seed, method, ctx))
            if emb is None:
                # The same embeddings for every row, from the cache our builds wrote (or
                # filled now), after them so a cold first build still times its embedding.
                emb = embed_texts(cat.texts, cfg0.embedding, show_progress=False)[0]
            if "faiss" in methods and seed in seeds:
                cpu = time.process_time()
                codes, secs, recon = faiss_rq(emb, seed=seed)
                cpu = time.process_time() - cpu
                extra = {"cpu_seconds": round(cpu, 1), "reconstruction_mse": round(recon, 4), **coherence(codes, ctx)}
                emit(row(METHODS["faiss"], name, seed, code_stats(codes, (256, 256, 256)), secs, extra))
            for method, fn in PEERS.items():
                if method not in methods or seed not in (slow_seeds if method == "semantic-id-rqkmeans" else peer_seeds):
                    continue
                cpu = time.process_time()
                res = fn(emb, seed=seed)
                cpu = time.process_time() - cpu  # includes its reconstruction (a decode), small
                extra = {
                    "cpu_seconds": round(cpu, 1),
                    "reconstruction_mse": round(res.reconstruction_mse, 4),
                    **coherence(res.codes, ctx),
                }
                emit(row(METHODS[method], name, seed, code_stats(res.codes, (256, 256, 256)), res.seconds, extra))
                PEER_SETTINGS[METHODS[method]] = {k: v for k, v in res.settings.items() if k != "random_state"}
        if emb is None:
            emb = embed_texts(cat.texts, cfg0.embedding, show_progress=False)[0]
        if name == "beauty" and "letter" in methods:
            letter = letter_codes(ids)
            emit(row(METHODS["letter"], name, None, code_stats(letter, (256, 256, 256)), float("nan"), coherence(letter, ctx)))
        if "random" in methods:
            rng = np.random.default_rng(0)
            rand = rng.integers(0, 256, (len(emb), 3))
            emit(row(METHODS["random"], name, None, code_stats(rand, (256, 256, 256)), 0.0, coherence(rand, ctx)))
    order = list(METHODS.values())
    rows.sort(key=lambda r: (catalogs.index(r["catalog"]), order.index(r["method"]), -1 if r["seed"] is None else r["seed"]))
    return rows


def _cell(v, fmt: str = "{}") -> str:
    return "" if v is None else fmt.format(v)


def markdown(rows: list[dict]) -> str:
    head = (
        "| catalog | method | seed | collision rate | largest group | codes used per level | L1 perplexity | L1 purity | L1 lift | L1 NMI "
        "| L2 purity | L2 lift | L2 NMI | recon MSE | train+assign s | CPU s | load | total s (embed incl.) | peak MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['catalog']} | {r['method']} | {_cell(r['seed'])} | {r['collision_rate']:.2%} | {r['largest_group']} | "
            f"{'/'.join(map(str, r['codes_used']))} | {r['perplexity_l1']} | {_cell(r.get('purity_l1'))} | {_cell(r.get('lift_l1'))} | "
            f"{_cell(r.get('nmi_l1'))} | {_cell(r.get('purity_l2'))} | {_cell(r.get('lift_l2'))} | {_cell(r.get('nmi_l2'))} | "
            f"{_cell(r.get('reconstruction_mse'))} | {r['seconds']} | {_cell(r.get('cpu_seconds'))} | {_cell(r.get('load_1m'))} | {_cell(r.get('total_seconds'))} | {_cell(r.get('peak_rss_mb'))} |"
        )
    return head + "\n".join(lines) + "\n"


SUMMARY_KEYS = [
    ("collision_rate", "collision rate", "{:.2%}"),
    ("purity_l1", "L1 purity", "{:.3f}"),
    ("lift_l1", "L1 lift", "{:.1f}"),
    ("nmi_l1", "L1 NMI", "{:.3f}"),
    ("purity_l2", "L2 purity", "{:.3f}"),
    ("lift_l2", "L2 lift", "{:.1f}"),
    ("reconstruction_mse", "recon MSE", "{:.4f}"),
    ("seconds", "train+assign s", "{:.1f}"),
    ("cpu_seconds", "CPU s", "{:.1f}"),
]


def summary(rows: list[dict]) -> str:
    """Mean ± standard deviation over seeds, one line per (catalog, method)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["catalog"], r["method"]), []).append(r)
    head = "| catalog | method | seeds | " + " | ".join(label for _, label, _ in SUMMARY_KEYS) + " |\n"
    head += "|---" * (3 + len(SUMMARY_KEYS)) + "|\n"
    lines = []
    for (cat, method), rs in groups.items():
        cells = []
        for key, _, fmt in SUMMARY_KEYS:
            vals = [r.get(key) for r in rs if r.get(key) is not None and not (isinstance(r.get(key), float) and np.isnan(r.get(key)))]
            if not vals:
                cells.append("")
            elif len(vals) == 1:
                cells.append(fmt.format(vals[0]))
            else:
                cells.append(f"{fmt.format(float(np.mean(vals)))} ± {fmt.format(float(np.std(vals, ddof=1)))}")
        seeds = ",".join(str(r["seed"]) for r in rs if r["seed"] is not None) or "–"
        lines.append(f"| {cat} | {method} | {seeds} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogs", nargs="+", default=["beauty", "movielens"], choices=["beauty", "movielens"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="rows to run (default: all)")
    p.add_argument("--peer-seeds", nargs="+", type=int, default=None, help="seeds for semantic-id RQVAE and vector-quantize-pytorch (default: --seeds)")
    p.add_argument(
        "--slow-seeds", nargs="+", type=int, default=None,
        help="seeds for semantic-id RQKMeans (sklearn KMeans, n_init=10: about 9 min a seed on Beauty on 2 cores; default: the first of --seeds)",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    peer_seeds = args.peer_seeds if args.peer_seeds is not None else args.seeds
    slow_seeds = args.slow_seeds if args.slow_seeds is not None else args.seeds[:1]
    load_start = os.getloadavg()
    wall = time.perf_counter()
    rows = run(args.catalogs, args.seeds, args.methods, peer_seeds, slow_seeds)
    wall = time.perf_counter() - wall
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {
        "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "packages": _versions(), "argv": sys.argv[1:], "wall_seconds": round(wall, 1),
        "loadavg_start": [round(v, 2) for v in load_start], "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "peer_settings": PEER_SETTINGS,
    }
    (out / "quality.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    md = markdown(rows) + "\nMean ± standard deviation over seeds:\n\n" + summary(rows)
    (out / "quality.md").write_text(md)
    print(md)
    print(f"wall time {wall:.0f} s", file=sys.stderr)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("semantic-ids", "semantic-id", "vector-quantize-pytorch", "faiss-cpu", "scikit-learn", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


if __name__ == "__main__":
    main()
