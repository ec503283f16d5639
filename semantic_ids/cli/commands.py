"""The command line's handlers: one ``cmd_NAME(args) -> exit code`` per subcommand
(their parsers are in :mod:`semantic_ids.cli`).

Each handler imports its heavy modules itself, so ``--help`` and bad input
answer without loading torch or sentence-transformers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import BuildConfig
from ..errors import ConfigError

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
    from ..stages.metrics import usage_text

    k = metrics["codebook_sizes"]
    given = (metrics.get("embedding") or {}).get("source") == "given"  # no text was embedded: empty texts do not matter
    rows = [
        ("items", f"{metrics['n_items']:,}"),
        *([("items with empty text", f"{metrics['n_empty_text']:,}")] if metrics["n_empty_text"] is not None and not given else []),
        *_collab_rows(metrics.get("collab")),
        ("levels x codes", " x ".join(map(str, k)) + f" + collision level ({metrics['collision_level_size']})"),
        ("codes used per level", usage_text(metrics["codes_used"], k)),
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


def _collab_rows(collab: dict | None) -> list[tuple[str, str]]:
    """What a build with sequences learnt behaviour from (none without sequences)."""
    if not collab:
        return []
    held = collab.get("interactions_held_out", 0)
    return [
        ("sequences: users / interactions used", f"{collab['users']:,} / {collab['interactions']:,}"
         + (f" ({held:,} held out: the last items of each user)" if held else "")),
        ("items with interactions", f"{collab['items_with_interactions']:,} (the others' behaviour is predicted from text)"),
    ]


def print_table(rows: list[tuple[str, str]], file=None) -> None:
    file = file or sys.stdout
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{width}}  {b}", file=file)


def cmd_build(args: argparse.Namespace) -> int:
    from ..runners.build import build  # imports only light modules; torch loads once the inputs are checked

    res = build(
        args.out,
        catalog=args.catalog,
        embeddings=args.embeddings,
        sequences=args.sequences,
        previous=args.previous,
        config=_config_from_args(args),
        streaming=args.streaming,
        engine=args.engine,
        work_dir=args.work_dir,
        batch_rows=args.batch_rows,
        ray_options={"address": args.ray_address} if args.ray_address else None,
        show_progress=not args.no_progress,
        also_reads=(args.config,) if args.config else (),
    )
    return _report_build(args, res.metrics, res.export_dir)


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
    from ..quality.churn import churn

    rep = churn(args.old, args.new)
    if args.json:
        print(json.dumps(rep.to_dict()))
        return 0
    print_table(rep.table())  # the rows the HTML report's churn section shows
    return 0


def _neighbor_records(lk, nb, queries, kind: str) -> list[dict]:
    from ..export.tokens import format_sid

    texts = getattr(lk, "texts", None) is not None
    recs = []
    for i, q in enumerate(queries):
        items = []
        for r, item, d in zip(nb.rows[i], nb.ids[i], nb.distances[i]):
            if r < 0:
                continue
            items.append({"item_id": _plain(item), "semantic_id": format_sid(lk.codes[r].tolist()), "distance": round(float(d), 6),
                          **({"text": lk.text_of([item])[0]} if texts else {})})
        recs.append({kind: _plain(q), "codes": [int(c) for c in nb.codes[i] if c >= 0], "neighbors": items})
    return recs


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _text_records(lk, texts: list[str], k: int) -> list[dict]:
    """``--text``: each text's codes (as a new item with that text would get them) and its nearest items."""
    from ..export.tokens import format_sid

    recs = _neighbor_records(lk, lk.search_texts(texts, k=k), texts, "text")
    for rec in recs:
        rec["id_prefix"] = format_sid(rec["codes"])
        if lk.uses_behaviour:  # a text has no users: its behaviour half is predicted from it
            rec["behaviour"] = "predicted from the text"
        same = lk.rows_with_text(rec["text"])
        if len(same):  # the catalog's own items with this exact text, and where their behaviour put them
            rec["catalog_items"] = [{"item_id": _plain(lk.ids[r]), "semantic_id": format_sid(lk.codes[r].tolist())} for r in same[:5]]
    return recs


def cmd_lookup(args: argparse.Namespace) -> int:
    """Every query gets a record; an id, ID or prefix that matches no item says ``found: false``
    and makes the exit code 1 (:data:`EXIT_MISSING`)."""
    from ..lookup import SemanticIDLookup

    lk = SemanticIDLookup.load(args.dir)
    if getattr(args, "catalog", None):
        lk.read_catalog_texts(args.catalog)
    texts = getattr(lk, "texts", None) is not None
    records: list[dict] = []
    if args.item:
        sids = lk.item_to_sid(args.item, missing="null")
        text = lk.text_of(args.item) if texts else None
        if args.k:
            known = [item for item, sid in zip(args.item, sids) if sid is not None]
            nb = _neighbor_records(lk, lk.similar_items(known, k=args.k), known, "item_id") if known else []
            by_item = dict(zip(known, nb))
            for i, (item, sid) in enumerate(zip(args.item, sids)):
                rec = by_item.get(item, {"item_id": item, "neighbors": []})
                records.append({**rec, "semantic_id": sid, **({"text": text[i]} if texts else {}), "found": sid is not None})
        else:
            records = [{"item_id": item, "semantic_id": sid, **({"text": text[i]} if texts else {}), "found": sid is not None}
                       for i, (item, sid) in enumerate(zip(args.item, sids))]
    elif args.sid:
        if args.k:
            records = _neighbor_records(lk, lk.search_codes(args.sid, k=args.k), args.sid, "query")
        else:
            for sid, item in zip(args.sid, lk.sid_to_item(args.sid, missing="null")):
                text = {"text": lk.text_of([item])[0] if item is not None else None} if texts else {}
                records.append({"semantic_id": sid, "item_id": _plain(item), **text, "found": item is not None})
    elif args.prefix:
        items = lk.prefix_items(args.prefix)
        shown = [_plain(i) for i in items[: args.limit]]
        records = [{"prefix": args.prefix, "count": int(len(items)), "items": shown,
                    **({"texts": lk.text_of(shown)} if texts else {}), "found": len(items) > 0}]
    elif args.text:
        records = _text_records(lk, args.text, args.k or 10)
    for rec in records:
        if args.json:
            print(json.dumps(rec))
        else:
            _print_record(rec)
    misses = sum(1 for rec in records if rec.get("found") is False)
    if misses:
        print(f"semantic-ids: {misses} of {len(records)} quer{'y' if len(records) == 1 else 'ies'} matched no item in {args.dir}",
              file=sys.stderr)
        return EXIT_MISSING
    return 0


def _clip(text, width: int = 70) -> str:
    text = "-" if text is None else str(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _print_record(rec: dict) -> None:
    hidden = ("neighbors", "items", "texts", "found", "codes", "behaviour", "catalog_items")
    head = {k: v for k, v in rec.items() if k not in hidden and not (k == "id_prefix" and "text" not in rec)}
    if "id_prefix" not in rec and "codes" in rec:
        head["codes"] = rec["codes"]
    if rec.get("found") is False:
        head = {k: ("-" if v is None else v) for k, v in head.items()}
    print("  ".join(f"{k}={v}" for k, v in head.items()) + ("  NOT FOUND" if rec.get("found") is False else ""))
    if rec.get("behaviour"):
        print("    (IDs of this export fuse text with users' behaviour; the query's behaviour is predicted from its text, "
              "as for a new item. Hits share the most leading codes with it first.)")
    for c in rec.get("catalog_items", []):
        print(f"    catalog item {c['item_id']} has exactly this text; its ID is {c['semantic_id']}"
              + (" (its own users' behaviour places it there)" if rec.get("behaviour") else ""))
    for n in rec.get("neighbors", []):
        line = f"    {n['item_id']!s:<20} {n['semantic_id']:<32} {n['distance']:.6f}"
        print(line + (f"  {_clip(n['text'])}" if "text" in n else ""))
    if "items" in rec and "texts" in rec:
        for item, text in zip(rec["items"], rec["texts"]):
            print(f"    {item!s:<20} {_clip(text)}")
        if rec["count"] > len(rec["items"]):
            print("    ...")
    elif "items" in rec and rec["items"]:
        shown = rec["items"]
        print("    " + ", ".join(map(str, shown)) + (" ..." if rec["count"] > len(shown) else ""))


def cmd_assign(args: argparse.Namespace) -> int:
    from ..export.tokens import format_sids
    from ..runners.assign import assign_new_items

    res = assign_new_items(args.dir, catalog=args.catalog, embeddings=args.embeddings, show_progress=not args.no_progress)
    summary = {"new_items": res.n_new, "already_present": res.n_already_present, "collided": res.n_collided, "export": str(args.dir)}
    new = [{"item_id": _plain(i), "semantic_id": s} for i, s in zip(res.new_ids, format_sids(res.new_codes))]
    if args.json:
        print(json.dumps({**summary, "assigned": new}))
        return 0
    print_table([(k.replace("_", " "), str(v)) for k, v in summary.items()])
    if new:
        print("new items' IDs:")
        for rec in new[: args.limit]:
            print(f"  {rec['item_id']!s:<20} {rec['semantic_id']}")
        if len(new) > args.limit:
            print(f"  ... and {len(new) - args.limit:,} more (--limit N to show more, --json for all)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.downstream:
        return _evaluate_downstream(args)
    if not args.catalog:
        raise ConfigError("evaluate needs --catalog (the catalog the export was built from), or --downstream with --sequences")
    from ..quality.evaluate import evaluate_export
    from ..stages.metrics import usage_text

    m = evaluate_export(
        args.dir, catalog=args.catalog, sequences=args.sequences, embeddings=args.embeddings,
        category_column=args.category_column, show_progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(m))
        return 0
    k = m["codebook_sizes"]
    rows = [
        ("items scored", f"{m['n_scored']:,} of {m['n_export_items']:,} in the export"
         + ("" if m["n_scored"] == m["n_export_items"] else " (the catalog covers only these; metrics are over them)")),
        ("codes used per level", usage_text(m["codes_used"], k)),
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
        raise ConfigError("--downstream needs --sequences (JSON Lines of {\"user_id\", \"items\"} in time order)")
    from ..quality.downstream import evaluate_export_downstream
    from ..quality.downstream.retriever import RetrieverConfig

    fields = {"device": args.device, "seed": args.seed, **({"epochs": args.epochs} if args.epochs else {}),
              **({"warmup_steps": args.warmup_steps} if args.warmup_steps else {})}
    cfg = RetrieverConfig.preset(args.preset, **fields)
    if not args.json:  # the settings first: the run takes minutes, and its numbers depend on them
        print_table(downstream_settings_rows(cfg, args.preset))
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
             ("best epoch / epochs run", f"{ids['best_epoch']} / {len(ids['history'])}"
              + (f" (the last: still improving; try --epochs {2 * cfg.epochs})" if ids.get("still_improving") else "")),
             ("model parameters / training time", f"{ids['parameters']:,} / {ids['train_seconds']} s")]
    print_table(rows)
    return 0


def downstream_settings_rows(cfg, preset: str) -> list[tuple[str, str]]:
    """The retriever's settings, and what to change to match each benchmark run the README quotes."""
    from ..quality.downstream.retriever import BENCHMARK_SETTINGS, RetrieverConfig

    rows = [("retriever settings", f"preset {preset}: {cfg.n_layer} layers, d_model {cfg.d_model}, at most {cfg.epochs} "
             f"epochs, warm-up {cfg.warmup_steps} steps, patience {cfg.patience}, lr {cfg.lr:g}, batch {cfg.batch_size}, "
             f"beam {cfg.beam}, seed {cfg.seed}")]
    flags = {"epochs": "--epochs", "warmup_steps": "--warmup-steps", "seed": "--seed", "device": "--device"}
    for name, fields in BENCHMARK_SETTINGS.items():
        diff = {k: v for k, v in cfg.differences(RetrieverConfig(**fields)).items() if k not in ("seed", "device")}
        if not diff:
            text = "the same settings"
        else:
            text = ", ".join(f"{k} {theirs} (here {mine})" for k, (mine, theirs) in diff.items())
            opts = [f"{flags[k]} {theirs}" for k, (_, theirs) in diff.items() if k in flags]
            text += f"; run with {' '.join(opts)} to match" if len(opts) == len(diff) else ""
        rows.append((f"README's {name} run (small preset)", text))
    return rows


def cmd_decoding_files(args: argparse.Namespace) -> int:
    from ..decoding.formats import FORMATS, write_decoding_files

    paths = write_decoding_files(args.export, args.out, formats=args.formats or FORMATS)
    if args.json:
        print(json.dumps({name: str(p) for name, p in paths.items()}))
    else:
        for p in paths.values():
            print(p)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..quality.report import write_report

    index = write_report(  # without matplotlib: a MissingExtraError naming the extra to install
        args.dir, args.out, baselines=args.baselines, baselines_catalog=args.baselines_catalog,
        catalog=args.catalog, sequences=args.sequences, embeddings=args.embeddings,
        category_column=args.category_column, previous=args.previous, show_progress=not args.no_progress,
    )
    print(json.dumps({"report": str(index)}) if args.json else f"report written to {index}")
    return 0
