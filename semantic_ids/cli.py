"""Command line: ``semantic-ids build ...`` (also ``python -m semantic_ids``).

A subcommand is a parser function (``_parser_NAME``) plus a handler
(``cmd_NAME``) that imports its heavy modules itself: this module imports
only the standard library and the (light) config and output-path checks, so
``--help`` and bad input answer without loading torch or sentence-transformers.

Exit codes: 0 success; 1 ``lookup`` found no item for at least one id (every
id is still reported, misses marked); 2 bad input or a failed command (the
message says why); 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from pathlib import Path

from .config import BuildConfig
from .outdir import check_out_dir

# CatalogError, ConfigError, EmbeddingError, ExportError, OutputPathError, TokenError
# are ValueErrors and UnknownIDError a KeyError: catching the bases keeps their modules unloaded
EXPECTED_ERRORS = (FileNotFoundError, KeyError, ValueError)
EXIT_MISSING = 1  # lookup: at least one id matched no item


def _config_from_args(args: argparse.Namespace) -> BuildConfig:
    # a batch-job config (pipelines/) works here too; its [job] table is the job's
    cfg = BuildConfig.from_toml(args.config, ignore=("job",)) if args.config else BuildConfig()
    catalog: dict = {}
    if args.id_column:
        catalog["id_column"] = args.id_column
    if args.text_columns:
        catalog["text_columns"] = [c.strip() for c in args.text_columns.split(",") if c.strip()]
    if args.template:
        catalog["template"] = args.template
    changes: dict = {}
    if catalog:
        changes["catalog"] = catalog
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.epochs is not None:
        changes["train"] = {"epochs": args.epochs}
    if args.model:
        changes["embedding"] = {"model": args.model}
    if getattr(args, "holdout_last", None) is not None:
        changes["collab"] = {"holdout_last": args.holdout_last}
    return cfg.replace(**changes) if changes else cfg


def summary_rows(metrics: dict, out: Path) -> list[tuple[str, str]]:
    k = metrics["codebook_sizes"]
    rows = [
        ("items", f"{metrics['n_items']:,}"),
        *([("items with empty text", f"{metrics['n_empty_text']:,}")] if "n_empty_text" in metrics else []),
        ("levels x codes", " x ".join(map(str, k)) + f" + collision level ({metrics['collision_level_size']})"),
        ("codes used per level", " / ".join(f"{u}/{c}" for u, c in zip(metrics["codes_used"], k))),
        ("perplexity per level", " / ".join(f"{p:.1f}" for p in metrics["perplexity"])),
        ("collision rate (before resolution)", f"{metrics['collision_rate']:.4%}"),
        ("collided items / largest group", f"{metrics['n_collided_items']:,} / {metrics['largest_group']}"),
        ("reconstruction MSE", f"{metrics['reconstruction_mse']:.4f}"),
        ("unique semantic IDs", "yes" if metrics["unique_after_resolution"] else "NO"),
    ]
    for stage, s in metrics["stages"].items():
        rows.append((f"stage {stage}", f"{s['seconds']:.1f} s, peak {s['peak_rss_mb']:.0f} MB"))
    rows.append(("export", str(out)))
    return rows


def print_table(rows: list[tuple[str, str]], file=None) -> None:
    file = file or sys.stdout
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{width}}  {b}", file=file)


def cmd_build(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)
    # before any heavy work: the export replaces only an earlier export or an empty directory;
    # the previous export may be replaced (a rebuild in place): fit reads it fully first
    previous = args.previous
    in_place = previous is not None and Path(previous).resolve() == Path(args.out).resolve()
    inputs = [args.catalog, args.embeddings, args.config, args.work_dir, args.sequences, None if in_place else previous]
    out = check_out_dir(args.out, inputs=inputs)
    if args.sequences and (args.streaming or args.engine == "ray"):
        raise ValueError("--sequences works with the in-memory build only; the streaming build does not fuse behaviour yet")
    if previous is not None and (args.streaming or args.engine == "ray"):
        raise ValueError("--previous works with the in-memory build only; the streaming build does not warm-start yet")
    if previous is not None:
        from .manifest import verify_export

        verify_export(previous)  # a missing or damaged previous export fails before the catalog is read
    if args.streaming or args.engine == "ray":
        return _build_streaming(args, cfg, out)
    if not args.catalog:
        raise ValueError("build needs --catalog (only --streaming builds from --embeddings alone)")
    from .catalog import load_catalog

    # read and check the catalog before torch and sentence-transformers load (seconds)
    catalog = load_catalog(args.catalog, cfg.catalog, require_text=args.embeddings is None)
    from .api import SemanticIDs

    sid = SemanticIDs(cfg, show_progress=not args.no_progress)
    sid.fit(catalog, embeddings=args.embeddings, sequences=args.sequences, previous=previous)
    sid.save(out)
    return _report_build(args, sid.metrics_, out)


def _report_build(args: argparse.Namespace, metrics: dict, out: Path) -> int:
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "training"}))
    else:
        print(f"semantic IDs for {metrics['n_items']:,} items written to {out}")
        rows = summary_rows(metrics, out)
        warm = metrics.get("warm_start")
        if warm and "kept_full_id" in warm:
            rows.insert(-1, ("previous items keeping their ID", f"{warm['kept_full_id']:.2%} of {warm['common_items']:,} "
                             f"(level 1: {warm['kept_prefix'][0]:.2%})"))
        print_table(rows)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from .churn import churn

    rep = churn(args.old, args.new)
    if args.json:
        print(json.dumps(rep.to_dict()))
        return 0
    rows = [
        ("items old / new", f"{rep.n_old:,} / {rep.n_new:,}"),
        ("common / added / removed", f"{rep.n_common:,} / {rep.n_added:,} / {rep.n_removed:,}"),
        ("full ID changed (common items)", f"{rep.full_id_changed:.2%}"),
    ]
    rows += [(f"prefix changed at depth {d}", f"{v:.2%}") for d, v in enumerate(rep.prefix_changed, 1)]
    print_table(rows)
    return 0


def _build_streaming(args: argparse.Namespace, cfg: BuildConfig, out: Path) -> int:
    from .stream import build_streaming

    if not args.catalog and not args.embeddings:
        raise ValueError("build --streaming needs --catalog (Parquet) or --embeddings (a Parquet file or directory of shards)")
    res = build_streaming(
        out,
        catalog=None if args.embeddings else args.catalog,
        embeddings=args.embeddings,
        config=cfg,
        work_dir=args.work_dir,
        batch_rows=args.batch_rows,
        engine=args.engine,
        ray_options={"address": args.ray_address} if args.ray_address else None,
        show_progress=not args.no_progress,
    )
    return _report_build(args, res.metrics, out)


def _neighbor_records(lk, nb, queries, kind: str) -> list[dict]:
    from .tokens import format_sid

    recs = []
    for i, q in enumerate(queries):
        items = []
        for r, item, d in zip(nb.rows[i], nb.ids[i], nb.distances[i]):
            if r < 0:
                continue
            items.append({"item_id": _plain(item), "semantic_id": format_sid(lk.codes[r].tolist()), "distance": round(float(d), 6)})
        recs.append({kind: _plain(q), "codes": [int(c) for c in nb.codes[i] if c >= 0], "neighbors": items})
    return recs


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def cmd_lookup(args: argparse.Namespace) -> int:
    """Every queried id gets a record; misses say ``found: false`` and make the exit code 1."""
    from .lookup import SemanticIDLookup

    lk = SemanticIDLookup.load(args.dir)
    records: list[dict] = []
    if args.item:
        sids = lk.item_to_sid(args.item, missing="null")
        if args.k:
            known = [item for item, sid in zip(args.item, sids) if sid is not None]
            nb = _neighbor_records(lk, lk.similar_items(known, k=args.k), known, "item_id") if known else []
            by_item = dict(zip(known, nb))
            for item, sid in zip(args.item, sids):
                rec = by_item.get(item, {"item_id": item, "neighbors": []})
                records.append({**rec, "semantic_id": sid, "found": sid is not None})
        else:
            records = [{"item_id": item, "semantic_id": sid, "found": sid is not None} for item, sid in zip(args.item, sids)]
    elif args.sid:
        if args.k:
            records = _neighbor_records(lk, lk.search_codes(args.sid, k=args.k), args.sid, "query")
        else:
            for sid, item in zip(args.sid, lk.sid_to_item(args.sid, missing="null")):
                records.append({"semantic_id": sid, "item_id": _plain(item), "found": item is not None})
    elif args.prefix:
        items = lk.prefix_items(args.prefix)
        records = [{"prefix": args.prefix, "count": int(len(items)), "items": [_plain(i) for i in items[: args.limit]]}]
    elif args.text:
        records = _neighbor_records(lk, lk.search_texts(args.text, k=args.k or 10), args.text, "text")
    for rec in records:
        if args.json:
            print(json.dumps(rec))
        else:
            _print_record(rec)
    misses = sum(1 for rec in records if rec.get("found") is False)
    if misses:
        print(f"semantic-ids: {misses} of {len(records)} id(s) not found in {args.dir}", file=sys.stderr)
        return EXIT_MISSING
    return 0


def _print_record(rec: dict) -> None:
    head = {k: v for k, v in rec.items() if k not in ("neighbors", "items", "found")}
    if rec.get("found") is False:
        head = {k: ("-" if v is None else v) for k, v in head.items()}
    print("  ".join(f"{k}={v}" for k, v in head.items()) + ("  NOT FOUND" if rec.get("found") is False else ""))
    for n in rec.get("neighbors", []):
        print(f"    {n['item_id']!s:<20} {n['semantic_id']:<32} {n['distance']:.6f}")
    if "items" in rec:
        shown = rec["items"]
        print("    " + ", ".join(map(str, shown)) + (" ..." if rec["count"] > len(shown) else ""))


def cmd_assign(args: argparse.Namespace) -> int:
    from .assign import assign_new_items

    res = assign_new_items(args.dir, args.catalog, embeddings=args.embeddings, show_progress=not args.no_progress)
    summary = {"new_items": res.n_new, "already_present": res.n_already_present, "collided": res.n_collided, "export": str(args.dir)}
    if args.json:
        print(json.dumps(summary))
    else:
        print_table([(k.replace("_", " "), str(v)) for k, v in summary.items()])
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.downstream:
        return _evaluate_downstream(args)
    if not args.catalog:
        raise ValueError("evaluate needs --catalog (the catalog the export was built from), or --downstream with --sequences")
    from .evaluate import evaluate_export

    m = evaluate_export(
        args.dir, args.catalog, sequences=args.sequences, embeddings=args.embeddings,
        category_column=args.category_column, show_progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(m))
        return 0
    k = m["codebook_sizes"]
    rows = [
        ("items scored", f"{m['n_scored']:,} of {m['n_export_items']:,} in the export"
         + ("" if m["n_scored"] == m["n_export_items"] else " (the catalog covers only these; metrics are over them)")),
        ("codes used per level", " / ".join(f"{u}/{c}" for u, c in zip(m["codes_used"], k))),
        ("perplexity per level", " / ".join(f"{p:.1f}" for p in m["perplexity"])),
        ("collision rate / largest group", f"{m['collision_rate']:.4%} / {m['largest_group']}"),
    ]
    if m.get("reconstruction_mse") is not None:
        rows.append(("reconstruction MSE", f"{m['reconstruction_mse']:.4f}"))
    for d in (1, 2):
        if f"purity@{d}" in m:
            rows.append((
                f"purity (chance) / NMI @ depth {d} ({m['category_column']})",
                f"{m[f'purity@{d}']:.3f} ({m[f'chance_purity@{d}']:.3f}) / {m[f'nmi@{d}']:.3f}",
            ))
        rows.append((f"10-NN share @ depth {d}", f"{m[f'neighbour_share@{d}']:.3f}"))
        if f"lift@{d}" in m:
            rows.append((f"co-interaction share / lift @ depth {d}", f"{m[f'co_share@{d}']:.4f} / {m[f'lift@{d}']:.1f}"))
    print_table(rows)
    return 0


def _evaluate_downstream(args: argparse.Namespace) -> int:
    """Train the generative retriever on the export's IDs and print Recall/NDCG (docs/downstream.md)."""
    if not args.sequences:
        raise ValueError("--downstream needs --sequences (JSON Lines of {\"user_id\", \"items\"} in time order)")
    from .downstream import evaluate_export_downstream
    from .downstream.retriever import RetrieverConfig

    fields = {"device": args.device, "seed": args.seed, **({"epochs": args.epochs} if args.epochs else {})}
    cfg = RetrieverConfig.preset(args.preset, **fields)
    res = evaluate_export_downstream(args.dir, args.sequences, cfg, show_progress=not args.no_progress)
    if args.json:
        print(json.dumps(res))
        return 0

    def ci(v: dict) -> str:
        return f"{v['mean']:.4f} [{v['low']:.4f}, {v['high']:.4f}]"

    ids, pop, diff = res["ids"], res["popularity"], res["ids_minus_popularity"]
    rows = [("users / items", f"{res['protocol']['users']:,} / {res['protocol']['items']:,}"),
            ("protocol", res["protocol"]["split"])]
    for m in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        rows.append((f"{m}: these IDs [95% CI]", ci(ids[m])))
        rows.append((f"{m}: popularity / IDs - popularity", f"{pop[m]['mean']:.4f} / {diff[m]['mean']:+.4f} "
                     f"[{diff[m]['low']:+.4f}, {diff[m]['high']:+.4f}]"))
    rows += [("invalid-ID rate", f"{ids['invalid_id_rate']:.4f}"),
             ("best epoch / epochs run", f"{ids['best_epoch']} / {len(ids['history'])}"),
             ("model parameters / training time", f"{ids['parameters']:,} / {ids['train_seconds']} s")]
    print_table(rows)
    return 0


def cmd_decoding_files(args: argparse.Namespace) -> int:
    from .decoding.formats import FORMATS, write_decoding_files

    paths = write_decoding_files(args.export, args.out, formats=args.formats or FORMATS)
    if args.json:
        print(json.dumps({name: str(p) for name, p in paths.items()}))
    else:
        for p in paths.values():
            print(p)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    try:
        index = write_report(
            args.dir, args.out, baselines=args.baselines, baselines_catalog=args.baselines_catalog,
            catalog=args.catalog, sequences=args.sequences, embeddings=args.embeddings,
            category_column=args.category_column, show_progress=not args.no_progress,
        )
    except ImportError as exc:  # matplotlib missing: the message names the extra to install
        print(f"semantic-ids: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"report": str(index)}) if args.json else f"report written to {index}")
    return 0


def _add_quality_inputs(p: argparse.ArgumentParser) -> None:
    """What ``evaluate`` and ``report`` read beside the catalog."""
    p.add_argument("--sequences", help="JSON Lines of user sequences: {\"user_id\": ..., \"items\": [ids in time order]}")
    p.add_argument("--embeddings", help="embeddings of the catalog for neighbour coherence (default: computed with the export's model)")
    p.add_argument("--category-column", help="label column for purity/NMI (default: categories/category/genres if present)")


def _parser_build(sub) -> None:
    b = sub.add_parser("build", help="catalog -> embeddings -> RQ-VAE -> unique semantic IDs -> export DIR")
    b.add_argument("--catalog", help="catalog file: .parquet, .csv or .jsonl (Parquet only with --streaming)")
    b.add_argument("--out", required=True, help="export directory: new, empty, or an earlier export (replaced atomically); "
                   "anything else is refused before any work")
    b.add_argument("--config", help="TOML config file (sections: catalog, embedding, model, train, collision, collab)")
    b.add_argument("--id-column", help="id column (default item_id)")
    b.add_argument("--text-columns", help="comma-separated columns that make the item text")
    b.add_argument("--template", help='text template, e.g. "Title: {title}; Brand: {brand}"')
    b.add_argument("--embeddings", help="precomputed embeddings (.parquet keyed by id, .npy in catalog order, .npz)")
    b.add_argument("--model", help="sentence-transformers model name or path")
    b.add_argument("--sequences", help="JSON Lines of user sequences ({\"user_id\": ..., \"items\": [ids in time order]}): "
                   "fuse what users do with what items say (config section [collab])")
    b.add_argument("--holdout-last", type=int, help="with --sequences: leave each user's last N items out of the signal "
                   "(2 for IDs evaluated with evaluate --downstream)")
    b.add_argument("--previous", metavar="DIR", help="an earlier export to warm-start from: retrain on this catalog "
                   "from its model and keep its items' IDs where the new model agrees (docs/warmstart.md); "
                   "--out may be DIR itself")
    b.add_argument("--seed", type=int)
    b.add_argument("--epochs", type=int, help="training epochs (overrides the config)")
    b.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    b.add_argument("--no-progress", action="store_true", help="hide progress bars")
    b.add_argument(
        "--streaming",
        action="store_true",
        help="bounded-memory build for large catalogs: Parquet batches, sharded embeddings, on-disk resolution "
        "(with --embeddings: a Parquet file or directory of shards with the id and an 'embedding' column)",
    )
    b.add_argument("--engine", choices=("local", "ray"), default="local", help="run embed and assign as Ray Data jobs (implies --streaming)")
    b.add_argument("--ray-address", help="Ray cluster address, e.g. auto or ray://head:10001 (default: start a local Ray)")
    b.add_argument("--work-dir", help="where a streaming build keeps shards (default: the cache dir's stream/)")
    b.add_argument("--batch-rows", type=int, default=65536, help="rows per batch in a streaming build (default 65536)")
    b.set_defaults(func=cmd_build)


def _parser_lookup(sub) -> None:
    lk = sub.add_parser(
        "lookup", help="look up IDs in an export: by item, semantic ID, prefix or text",
        epilog="exit status: 0 every id found; 1 at least one item id or semantic ID matched no item (every id is "
        "still reported, misses marked NOT FOUND, or \"found\": false with --json); 2 bad input (e.g. a malformed ID)",
    )
    lk.add_argument("dir", help="export directory")
    q = lk.add_mutually_exclusive_group(required=True)
    q.add_argument("--item", nargs="+", help="item id(s) -> semantic ID (with --k: nearest items in code space)")
    q.add_argument("--sid", nargs="+", help="semantic ID(s) -> item (with --k: nearest valid items, for generated codes)")
    q.add_argument("--prefix", help="a semantic-ID prefix, e.g. '<a_12><b_200>' -> items under it and their count")
    q.add_argument("--text", nargs="+", help="text(s) -> codes under the frozen model and the k nearest items")
    lk.add_argument("--k", type=int, help="number of nearest items")
    lk.add_argument("--limit", type=int, default=50, help="items shown for --prefix (the count is always exact)")
    lk.add_argument("--json", action="store_true", help="one JSON object per line")
    lk.set_defaults(func=cmd_lookup)


def _parser_assign(sub) -> None:
    a = sub.add_parser("assign", help="give new catalog items IDs without moving any existing ID")
    a.add_argument("dir", help="export directory (updated atomically)")
    a.add_argument("--catalog", required=True, help="catalog with the new items (items already present are skipped)")
    a.add_argument("--embeddings", help="precomputed embeddings for the catalog")
    a.add_argument("--json", action="store_true")
    a.add_argument("--no-progress", action="store_true")
    a.set_defaults(func=cmd_assign)


def _parser_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="quality of an export: usage, collisions, purity/NMI, neighbour and co-interaction coherence")
    ev.add_argument("dir", help="export directory")
    ev.add_argument("--catalog", help="the catalog the export was built from (for labels and texts); required without --downstream")
    _add_quality_inputs(ev)
    ev.add_argument("--downstream", action="store_true",
                    help="instead: train a generative retriever on the IDs and --sequences (leave-one-out) and report "
                         "Recall@5/10 and NDCG@5/10 with 95%% intervals beside a popularity ranking (docs/downstream.md)")
    ev.add_argument("--preset", choices=["small", "tiger"], default="small",
                    help="with --downstream: the retriever's size; small fits a CPU, tiger is TIGER-sized (use --device cuda)")
    ev.add_argument("--epochs", type=int, help="with --downstream: at most this many epochs (default: the preset's)")
    ev.add_argument("--device", default="cpu", help="with --downstream: torch device, e.g. cuda")
    ev.add_argument("--seed", type=int, default=0, help="with --downstream: the retriever's seed")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_evaluate)


def _parser_decoding_files(sub) -> None:
    p = sub.add_parser("decoding-files", help="write what generative trainers and serving engines read: sid2pid.json, "
                                              "codes.npy + item_ids.json, vocab.json, trie.safetensors")
    p.add_argument("export", help="export directory")
    p.add_argument("--out", required=True, help="output directory: new, empty, or an earlier decoding-files directory")
    p.add_argument("--formats", nargs="+", metavar="FORMAT", help="any of sid2pid, codes, vocab, trie (default: all; "
                   "an unknown name is refused)")
    p.add_argument("--json", action="store_true", help="print the written paths as a JSON object")
    p.set_defaults(func=cmd_decoding_files)


def _parser_report(sub) -> None:
    r = sub.add_parser("report", help="an HTML page with plots about an export: training, code usage, collisions, quality")
    r.add_argument("dir", help="export directory")
    r.add_argument("--out", help="report directory, replaced atomically (default DIR/report); holds index.html and PNGs")
    r.add_argument("--baselines", help="JSON rows to compare with, e.g. benchmarks/results/quality.json")
    r.add_argument("--baselines-catalog", help="keep the baseline rows of this catalog (default: inferred from the export)")
    r.add_argument("--catalog", help="the export's catalog: evaluate purity/NMI and neighbour coherence (else metrics.json)")
    _add_quality_inputs(r)
    r.add_argument("--json", action="store_true", help="print the report path as a JSON object")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_report)


def _parser_diff(sub) -> None:
    d = sub.add_parser("diff", help="ID churn between two exports: share of common items whose ID or prefix changed, "
                                    "new and removed items")
    d.add_argument("old", help="the earlier export directory")
    d.add_argument("new", help="the later export directory")
    d.add_argument("--json", action="store_true", help="print the report as one JSON object")
    d.set_defaults(func=cmd_diff)


# A subcommand: add its parser function here; its handler (cmd_NAME) imports what it needs.
SUBCOMMANDS = [_parser_build, _parser_lookup, _parser_assign, _parser_evaluate, _parser_report, _parser_decoding_files,
               _parser_diff]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semantic-ids", description="Semantic IDs for generative recommenders.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.func(args)
    except EXPECTED_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"semantic-ids: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semantic-ids: interrupted; any earlier export is untouched", file=sys.stderr)
        return 130
    finally:
        # The interpreter's exit-time garbage collection walks every object torch and
        # its dependencies created: 1-3 s after the summary on 2 busy cores. Nothing
        # of ours needs it (files are written and fsynced, handles closed by then), so
        # move what exists to the permanent generation; exit then takes ~0.2 s.
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
