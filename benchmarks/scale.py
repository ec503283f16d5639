"""A million items on one machine: the streaming build, stage by stage, beside FAISS and Ray.

    python benchmarks/scale.py                    # 1,000,000 items (about 10 minutes on 2 cores)
    python benchmarks/scale.py --items 200000     # a quicker look

Steps, each in a fresh process so its peak memory is its own:
1. data: 1,000,000 synthetic 384-d embeddings, clustered in two levels (2,000
   topics around 100 themes, so codes mean something), unit norm, written as
   16 Parquet shards under data/bench/ (kept for reruns);
2. build: ``build_streaming`` with the default model and a training sample of
   ``train.max_train_items`` (100,000, the default) for ``--epochs`` epochs;
   time and peak RSS of every stage (train, encode, resolve, export);
3. assignment speed, in memory, on 262,144 rows: ours (encoder + residual
   quantization) against its FLOP count and this machine's measured matmul
   limit, and FAISS's ResidualQuantizer ``compute_codes`` (3 x 8 bits, greedy,
   trained on the same sample) on the same embeddings;
4. ray: the encode stage as a Ray Data job on a local Ray (2 CPUs) over the
   same shards and model: its time and its overhead over the local encode stage,
   and a check that it gives the same codes;
5. lookup: load the export into ``SemanticIDLookup`` and time lookups.

``--behaviour`` runs the behaviour arms instead, each in a fresh process, on the
catalog of ``benchmarks/behaviour_data.py`` (1M items, 600k users, about 10M
events by default): the text-only streaming build, the streaming build with
``--sequences`` and the in-memory build with ``--sequences``; wall and CPU time and
peak RSS of each (benchmarks/results/scale-behaviour.json and .md).

Prints a table and writes benchmarks/results/scale.json and scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
DIM = 384


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- 1. data ------------------------------------------------------------------------
def make_data(out: Path, n: int, seed: int = 0, shards: int = 16) -> dict:
    from semantic_ids.stages.shards import write_embedding_shards

    done = out / "DONE"
    if done.exists() and json.loads(done.read_text())["n"] == n:
        return json.loads(done.read_text())
    rng = np.random.default_rng(seed)
    themes = rng.normal(size=(100, DIM)).astype(np.float32)
    topics = (themes[rng.integers(0, 100, 2000)] + 0.6 * rng.normal(size=(2000, DIM))).astype(np.float32)
    start = time.perf_counter()
    per = -(-n // shards)
    out.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        lo, hi = s * per, min(n, (s + 1) * per)
        if lo >= hi:
            break
        topic = rng.integers(0, 2000, hi - lo)
        x = topics[topic] + 0.5 * rng.normal(size=(hi - lo, DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ids = np.array([f"item-{i:08d}" for i in range(lo, hi)], dtype=object)
        write_embedding_shards(out / f"s{s:02d}", ids, x, rows_per_shard=hi - lo)
        (out / f"s{s:02d}" / "part-00000.parquet").rename(out / f"part-{s:05d}.parquet")
        (out / f"s{s:02d}").rmdir()
    info = {"n": n, "dim": DIM, "shards": shards, "seconds": round(time.perf_counter() - start, 1)}
    done.write_text(json.dumps(info))
    return info


def config(epochs: int):
    from semantic_ids import BuildConfig

    # checkpoints off: the benchmark times the work, not the resumability
    return BuildConfig().replace(train={"epochs": epochs, "checkpoint_every": 0}, embedding={"use_cache": False})


# -- 2. build -----------------------------------------------------------------------
def step_build(args) -> dict:
    from semantic_ids.runners.streaming import build_streaming

    res = build_streaming(args.out, embeddings=args.data, config=config(args.epochs), work_dir=args.work, workers=args.workers, show_progress=False)
    m = res.metrics
    return {
        "stages": m["stages"],
        "total_seconds": m["total_seconds"],
        "peak_rss_mb": round(peak_mb(), 1),
        "collision_rate": m["collision_rate"],
        "codes_used": m["codes_used"],
        "perplexity": [round(p, 1) for p in m["perplexity"]],
        "largest_group": m["largest_group"],
        "reconstruction_mse": round(m["reconstruction_mse"], 5),
        "train_items": m["training"]["train_items"],
        "epochs": m["training"]["epochs"],
    }


# -- 3. assignment speed --------------------------------------------------------------
def model_flops(model) -> float:
    """Multiply-adds x 2 per item: encoder linears + one distance row per code per level
    (the k-means first level's distances are in the input dimension)."""
    import torch.nn as nn

    f = sum(2 * m.in_features * m.out_features for m in model.encoder.modules() if isinstance(m, nn.Linear))
    f += sum(2 * k * model.latent_dim for k in model.quantizer.codebook_sizes)
    if model.kmeans_first:
        f += 2 * model.codebook_sizes[0] * model.input_dim
    return float(f)


def matmul_gflops(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(4096, 4096)
    b = torch.randn(4096, 4096)
    a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * 4096**3 / (time.perf_counter() - t) / 1e9)
    return best


def step_speed(args) -> dict:
    import faiss
    import torch

    from semantic_ids.export.io import read_export
    from semantic_ids.stages.shards import EmbeddingShards
    from semantic_ids.stages.encode import encode_all, encode_workers

    threads = torch.get_num_threads()
    model = read_export(args.out).model
    shards = EmbeddingShards(args.data)
    rows = min(262144, len(shards))
    x = shards.take(np.arange(rows))
    out = {"threads": threads, "rows": rows}
    for workers in (1, 2):
        with encode_workers(workers) as pool:
            encode_all(model, x[:65536], pool=pool)  # warm up
            t = time.perf_counter()
            for s in range(0, rows, 65536):
                encode_all(model, x[s : s + 65536], pool=pool)
            out[f"ours_items_per_s_w{workers}"] = round(rows / (time.perf_counter() - t))
    t = time.perf_counter()
    with torch.no_grad():
        for s in range(0, rows, 65536):
            model.encode(torch.from_numpy(np.ascontiguousarray(x[s : s + 65536])))
    out["plain_encode_items_per_s"] = round(rows / (time.perf_counter() - t))
    flops = model_flops(model)
    peak = max(matmul_gflops(1), matmul_gflops(os.cpu_count() or 1))  # the best this machine gives
    torch.set_num_threads(threads)
    best = max(out["ours_items_per_s_w1"], out["ours_items_per_s_w2"])
    out.update(
        {
            "flops_per_item": flops,
            "matmul_gflops": round(peak, 1),
            "flop_limit_items_per_s": round(peak * 1e9 / flops),
            "ours_gflops": round(best * flops / 1e9, 1),
            "ours_share_of_limit": round(best * flops / 1e9 / peak, 3),
        }
    )
    # FAISS ResidualQuantizer on the same embeddings: 3 x 8 bits, greedy, trained on the same sample size
    rng = np.random.default_rng(0)
    sample = shards.take(np.sort(rng.choice(len(shards), 100_000, replace=False)))
    rq = faiss.ResidualQuantizer(DIM, 3, 8)
    rq.max_beam_size = 1
    t = time.perf_counter()
    rq.train(sample)
    out["faiss_train_seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    for s in range(0, rows, 65536):
        rq.compute_codes(x[s : s + 65536])
    out["faiss_items_per_s"] = round(rows / (time.perf_counter() - t))
    out["faiss_flops_per_item"] = float(2 * DIM * 256 * 3)
    out["ours_vs_faiss"] = round(best / out["faiss_items_per_s"], 2)
    out["peak_rss_mb"] = round(peak_mb(), 1)
    return out


# -- 4. ray -------------------------------------------------------------------------
def step_ray(args) -> dict:
    import pyarrow.parquet as pq

    from semantic_ids.runners.ray import init_ray, ray_encode
    from semantic_ids.stages.encode import encode_shards
    from semantic_ids.export.io import read_export
    from semantic_ids.stages.shards import EmbeddingShards

    model = read_export(args.out).model
    work = Path(args.work)
    t = time.perf_counter()
    init_ray(num_cpus=os.cpu_count())
    init_s = time.perf_counter() - t
    t = time.perf_counter()
    ray_encode(model, args.data, work / "ray_codes")
    ray_s = time.perf_counter() - t
    t = time.perf_counter()
    encode_shards(model, EmbeddingShards(args.data), work / "local_codes", show_progress=False)
    local_s = time.perf_counter() - t

    def read(d):
        tab = pq.read_table(d, columns=["item_id", "level_0", "level_1", "level_2"]).sort_by("item_id")
        return np.column_stack([tab.column(f"level_{i}").to_numpy() for i in range(3)]), tab.column("item_id")

    (a, ia), (b, ib) = read(work / "ray_codes"), read(work / "local_codes")
    return {
        "ray_init_seconds": round(init_s, 1),
        "ray_assign_seconds": round(ray_s, 1),
        "local_assign_seconds": round(local_s, 1),
        "ray_overhead": round(ray_s / local_s, 2),
        "same_codes": bool(ia.equals(ib) and (a == b).all()),
        "driver_peak_rss_mb": round(peak_mb(), 1),
    }


# -- 5. lookup ----------------------------------------------------------------------
def step_lookup(args) -> dict:
    from semantic_ids.lookup import SemanticIDLookup

    t = time.perf_counter()
    lk = SemanticIDLookup.load(args.out)
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    ids = lk.ids[rng.integers(0, len(lk.ids), 100_000)]
    t = time.perf_counter()
    codes = lk.item_to_codes(ids)
    item_s = time.perf_counter() - t
    t = time.perf_counter()
    back = lk.codes_to_rows(codes)
    code_s = time.perf_counter() - t
    assert (lk.ids[back] == ids).all()
    q = codes[:1000, :3]
    lk.search_codes(q[:1], k=10)  # builds the index
    lat = []
    for c in q[:200]:
        t = time.perf_counter()
        lk.search_codes(c[None], k=10)
        lat.append(time.perf_counter() - t)
    return {
        "load_seconds": round(load_s, 1),
        "item_to_codes_per_s": round(len(ids) / item_s),
        "codes_to_item_per_s": round(len(ids) / code_s),
        "nearest_code_p50_us": round(float(np.percentile(lat, 50)) * 1e6),
        "nearest_code_p99_us": round(float(np.percentile(lat, 99)) * 1e6),
        "peak_rss_mb": round(peak_mb(), 1),
    }


# -- 6. behaviour (--behaviour) ------------------------------------------------------------
def _run_arm(fn) -> dict:
    """Run one build arm in this (fresh) process: wall and CPU seconds, peak RSS, stages."""
    start, cpu = time.perf_counter(), time.process_time()
    res = fn()
    m = res.metrics
    return {
        "wall_seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "peak_rss_mb": round(peak_mb(), 1),
        "stages": {k: {"seconds": v["seconds"], "peak_rss_mb": v.get("peak_rss_mb")} for k, v in m["stages"].items()},
        "collision_rate": m["collision_rate"],
        **({"collab": m["collab"]} if "collab" in m else {}),
    }


def _behaviour_paths(args) -> tuple[Path, Path]:
    base = ROOT / "data" / "bench" / f"behaviour-{args.items}"
    return base, base / "arms"


def step_behaviour_text(args) -> dict:
    from semantic_ids.runners.build import build

    base, arms = _behaviour_paths(args)
    return _run_arm(lambda: build(arms / "text-streaming", streaming=True, embeddings=base / "emb.parquet", config=config(args.epochs),
                                  work_dir=arms / "work", workers=args.workers, show_progress=False))


def step_behaviour_stream(args) -> dict:
    from semantic_ids.runners.build import build

    base, arms = _behaviour_paths(args)
    return _run_arm(lambda: build(arms / "seq-streaming", streaming=True, embeddings=base / "emb.parquet", sequences=base / "sequences.jsonl",
                                  config=config(args.epochs), work_dir=arms / "work", workers=args.workers, show_progress=False))


def step_behaviour_memory(args) -> dict:
    from semantic_ids.runners.build import build

    base, arms = _behaviour_paths(args)
    return _run_arm(lambda: build(arms / "seq-memory", catalog=base / "ids.parquet", embeddings=base / "emb.parquet",
                                  sequences=base / "sequences.jsonl", config=config(args.epochs), show_progress=False))


BEHAVIOUR_ARMS = {"text, streaming": "behaviour-text", "sequences, streaming": "behaviour-stream", "sequences, in memory": "behaviour-memory"}


def behaviour_table(r: dict) -> str:
    d = r["data"]
    lines = [
        f"## Behaviour: {d['items']:,} items, {d['events_written']:,} events of {d['users']:,} users "
        f"({DIM}-d embeddings given; benchmarks/behaviour_data.py), {r['cpus']} CPUs, {r['epochs']} epochs",
        "",
        "| build | wall s | CPU s | peak RSS MB | collab stage s (peak MB) | collision rate |",
        "|---|---|---|---|---|---|",
    ]
    for name, key in BEHAVIOUR_ARMS.items():
        a = r.get(key)
        if a is None:
            continue
        c = a["stages"].get("collab")
        collab = f"{c['seconds']:.0f} ({c['peak_rss_mb']:.0f})" if c else "-"
        lines.append(f"| {name} | {a['wall_seconds']:.0f} | {a['cpu_seconds']:.0f} | {a['peak_rss_mb']:.0f} | {collab} | {a['collision_rate']:.2%} |")
    if "behaviour-text" in r and "behaviour-stream" in r:
        t, s = r["behaviour-text"], r["behaviour-stream"]
        lines += ["", f"Streaming with sequences / text only, same run: wall {s['wall_seconds'] / t['wall_seconds']:.2f}x, "
                      f"CPU {s['cpu_seconds'] / t['cpu_seconds']:.2f}x."]
    return "\n".join(lines)


def run_behaviour(args) -> int:
    import shutil

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from behaviour_data import generate

    base, arms = _behaviour_paths(args)
    info = generate(base, items=args.items, users=args.users)
    print(f"data: {info}", flush=True)
    results = {"items": args.items, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
               "epochs": args.epochs, "data": info, "load_before": os.getloadavg()}
    for key in args.arms:
        shutil.rmtree(arms, ignore_errors=True)
        t = time.perf_counter()
        results[key] = run_step(key, args)
        print(f"{key}: {time.perf_counter() - t:.0f} s {json.dumps(results[key])}", flush=True)
        write_behaviour(args, results)  # after each arm: a long run that dies keeps what it measured
    shutil.rmtree(arms, ignore_errors=True)
    print(behaviour_table(results))
    return 0


def write_behaviour(args, results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.items == 1_000_000 else f"-{args.items}"
    (RESULTS / f"scale-behaviour{suffix}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"scale-behaviour{suffix}.md").write_text(behaviour_table(results) + "\n")


STEPS = {"build": step_build, "speed": step_speed, "ray": step_ray, "lookup": step_lookup,
         "behaviour-text": step_behaviour_text, "behaviour-stream": step_behaviour_stream, "behaviour-memory": step_behaviour_memory}


def run_step(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--step", name, "--items", str(args.items), "--epochs", str(args.epochs), "--workers", str(args.workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(r: dict) -> str:
    b, s, ray, lk = r["build"], r["speed"], r.get("ray"), r["lookup"]
    st = b["stages"]
    lines = [
        f"## {r['items']:,} items, {DIM}-d embeddings, {r['cpus']} CPUs ({r['machine']})",
        "",
        "| stage | seconds | peak RSS MB |",
        "|---|---|---|",
    ]
    for name in ("train", "encode", "resolve", "recon", "export"):
        if name in st:
            lines.append(f"| {name} | {st[name]['seconds']:.1f} | {st[name].get('peak_rss_mb', float('nan')):.0f} |")
    lines += [
        f"| **whole build** | **{b['total_seconds']:.1f}** | **{b['peak_rss_mb']:.0f}** (process peak) |",
        "",
        f"Training: {b['train_items']:,} sampled items x {b['epochs']} epochs. IDs: collision rate {b['collision_rate']:.2%}, "
        f"codes used {'/'.join(map(str, b['codes_used']))}, perplexity {'/'.join(map(str, b['perplexity']))}, largest group {b['largest_group']}.",
        f"Encode stage end to end (read shards, encode, write codes): {r['items'] / st['encode']['seconds']:,.0f} items/s.",
        "",
        "| assignment, in memory | items/s | GFLOP/s | note |",
        "|---|---|---|---|",
        f"| ours, 1 thread (4096-row chunks) | {s['ours_items_per_s_w1']:,} | {s['ours_gflops']} (best) | encoder + 3-level RQ, {s['flops_per_item'] / 1e6:.2f} MFLOP/item; {s['ours_share_of_limit']:.0%} of the matmul limit |",
        f"| ours, 2 threads | {s['ours_items_per_s_w2']:,} | | |",
        f"| plain `model.encode`, torch's own threading | {s['plain_encode_items_per_s']:,} | | |",
        f"| FLOP limit of this machine | {s['flop_limit_items_per_s']:,} | {s['matmul_gflops']} | best 4096² fp32 matmul (1 or all threads) |",
        f"| FAISS ResidualQuantizer compute_codes | {s['faiss_items_per_s']:,} | | 3 x 8 bits greedy on the 384-d embeddings ({s['faiss_flops_per_item'] / 1e6:.2f} MFLOP/item); ours is {s['ours_vs_faiss']}x |",
    ]
    if ray:
        lines += [
            "",
            "| Ray Data path (local Ray, same machine) | value |",
            "|---|---|",
            f"| ray.init | {ray['ray_init_seconds']} s |",
            f"| assign as a Ray Data job | {ray['ray_assign_seconds']} s |",
            f"| local assign, same shards | {ray['local_assign_seconds']} s |",
            f"| overhead (Ray / local) | {ray['ray_overhead']}x |",
            f"| same codes as local | {'yes' if ray['same_codes'] else 'NO'} |",
        ]
    lines += [
        "",
        f"Lookup: load {lk['load_seconds']} s; item -> codes {lk['item_to_codes_per_s']:,}/s; codes -> item {lk['codes_to_item_per_s']:,}/s; "
        f"nearest code (k=10) p50 {lk['nearest_code_p50_us']} µs, p99 {lk['nearest_code_p99_us']} µs; peak {lk['peak_rss_mb']:.0f} MB.",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--workers", type=int, default=1, help="assignment threads in the build (1 is fastest on the 2-vCPU reference machine; see the speed table)")
    p.add_argument("--behaviour", action="store_true", help="the behaviour arms instead: builds with sequences (in memory, "
                   "streaming) and the text-only streaming build on benchmarks/behaviour_data.py's catalog")
    p.add_argument("--users", type=int, default=600_000, help="--behaviour: users (17 events each on average)")
    p.add_argument("--arms", nargs="+", default=list(BEHAVIOUR_ARMS.values()), choices=list(BEHAVIOUR_ARMS.values()))
    p.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.behaviour and not args.step:
        return run_behaviour(args)
    base = ROOT / "data" / "bench" / f"scale-{args.items}"
    args.data = str(base / "embeddings")
    args.out = str(base / "export")
    args.work = str(base / "work")
    if args.step:
        print(json.dumps(STEPS[args.step](args)))
        return 0
    info = make_data(Path(args.data), args.items)
    print(f"data: {info}", flush=True)
    results = {"items": args.items, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(), "data": info}
    for step in ("build", "speed", *(() if args.no_ray else ("ray",)), "lookup"):
        t = time.perf_counter()
        results[step] = run_step(step, args)
        print(f"{step}: {time.perf_counter() - t:.0f} s", flush=True)
    text = table(results)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.items == 1_000_000 else f"-{args.items}"
    (RESULTS / f"scale{suffix}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"scale{suffix}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
