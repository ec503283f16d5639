"""The report's HTML page: one self-contained document that links its PNGs by relative name.

:func:`render` lays out header facts, the quality table, baseline rows, the
churn since a previous export (and a warm-started build's own record), the
figures, build stages and the saved config. Every piece of text from the
export, catalog or baselines is escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..churn import ChurnReport
from ...export.io import Export
from ...export.outdir import REPORT_MARKER
from ...stages.metrics import usage_text
from .evaluation import Baselines, Quality, export_value


# -- formatting ------------------------------------------------------------------------


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, key: str = "") -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "–"
        if key.endswith("rate") or "rate_by" in key:
            return f"{v:.2%}"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _cell(v: Any, key: str = "", sep: str = " / ") -> str:
    """One value as escaped HTML: numbers formatted, lists joined, dicts folded."""
    if v is None:
        return ""
    if isinstance(v, dict):
        if not v:
            return ""
        inner = "<br>".join(f"{_esc(k)}: {_cell(x, str(k), sep)}" for k, x in v.items())
        return f"<details><summary>{len(v)} keys</summary><div class=nested>{inner}</div></details>"
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in v):
            return _esc(sep.join(_num(x, key) for x in v))
        return _esc(", ".join(str(x) for x in v))
    return _esc(_num(v, key))


def _wrap_key(k: str) -> str:
    """A column name that may break after underscores (narrow headers)."""
    return _esc(k).replace("_", "_<wbr>")


def _label(key: str, quality: dict, when: str = "before resolution") -> str:
    m = re.fullmatch(r"(.+)@(\d+)", key)
    if m:
        base, d = m.groups()
        names = {
            "purity": "purity", "chance_purity": "chance purity (random groups, same sizes)", "nmi": "NMI",
            "neighbour_share": "10-NN share",
            "co_share": "co-interaction share", "lift": "co-interaction lift",
        }
        extra = f" ({quality['category_column']})" if base in ("purity", "nmi") and quality.get("category_column") else ""
        return f"{names.get(base, base)} @ depth {d}{extra}"
    return {
        "n_items": "items",
        "codes_used": "codes used per level",
        "perplexity": "perplexity per level",
        "collision_rate": f"collision rate ({when})",
        "n_collided_items": f"collided items ({when})",
        "largest_group": f"largest collision group ({when})",
        "collision_rate_by_depth": f"collision rate at depth 1, 2, … ({when})",
        "collision_rate_after_rebalancing": "collision rate after rebalancing",
        "items_moved_by_rebalancing": "items moved by rebalancing",
        "reconstruction_mse": "reconstruction MSE",
        "n_labelled": "items with a label",
        "n_scored": "items evaluated (in the catalog)",
        "n_export_items": "items in the export",
        "sequence_pairs": "consecutive sequence pairs",
        "sequence_items_not_in_catalog": "sequence items not in the catalog",
    }.get(key, key)


# -- page ----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;color:#1d2330;
 max-width:1240px;margin:0 auto;padding:18px 16px 48px;background:#fff}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:30px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 6px}
.sub{color:#5b6475;margin:0 0 14px}.note{color:#5b6475;font-size:12.5px;margin:4px 0 8px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:8px;margin:10px 0}
.fact{background:#f4f6fa;border:1px solid #e2e6ee;border-radius:6px;padding:7px 10px}
.fact .k{color:#5b6475;font-size:12px}.fact .v{font-size:15px;font-weight:600;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0}
th,td{border:1px solid #dde2ea;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfd}tr.ours td{background:#fff6d9;font-weight:600}
.scroll{overflow-x:auto;max-width:100%}
.cmp th{min-width:34px;max-width:96px;overflow-wrap:normal;word-break:normal;hyphens:none}
.cmp{font-size:11px}.cmp th,.cmp td{padding:2px 3px}.cmp td.t{min-width:100px;max-width:180px}
details summary{cursor:pointer;color:#2b5fb3;white-space:nowrap}.nested{font-size:11.5px;white-space:nowrap}
img{max-width:100%;height:auto;display:block;margin:6px 0}
.cols{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px;align-items:start}
.cols table{width:100%}code{font-size:12px;background:#f4f6fa;padding:0 3px;border-radius:3px}
.kv td:first-child{color:#3b4454;white-space:nowrap}.kv td{overflow-wrap:anywhere}
"""


def _kv_table(rows: list[tuple[str, str]], cls: str = "kv") -> str:
    body = "".join(f"<tr><td>{_esc(k)}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<table class={cls}>{body}</table>"


def _facts(exp: Export) -> list[tuple[str, str]]:
    m, info = exp.metrics, exp.info
    sizes = list(exp.config.model.codebook_sizes)
    n_levels = int(info.get("n_levels", exp.codes.shape[1]))
    stages = m.get("stages") or {}
    peak = max((s.get("peak_rss_mb", 0) for s in stages.values() if isinstance(s, dict)), default=None)
    history = m.get("training", {}).get("history") or []
    col_level = m.get("collision_level_size")
    facts = [
        ("items", _num(int(info.get("n_items", len(exp.ids))))),
        ("levels", f"{n_levels - 1} model + 1 collision"),
        ("codebook sizes", " × ".join(map(str, sizes)) + (f" + {col_level}" if col_level is not None else "")),
        ("codes used", usage_text(m["codes_used"], sizes) if m.get("codes_used") else "–"),
        ("collision rate (before resolution)", _num(m.get("collision_rate_before_resolution", m.get("collision_rate")), "rate")
         if m.get("collision_rate") is not None else "–"),
        ("collided items / largest group", f"{_num(m.get('n_collided_items', '–'))} / {m.get('largest_group', '–')}"),
        ("unique semantic IDs", {True: "yes", False: "NO"}.get(m.get("unique_after_resolution"), "–")),
        ("reconstruction MSE", _num(m["reconstruction_mse"]) if m.get("reconstruction_mse") is not None else "–"),
        ("build time", f"{m['total_seconds']:.1f} s" if isinstance(m.get("total_seconds"), (int, float)) else "–"),
        ("peak memory", f"{peak:,.0f} MB" if peak else "–"),
        ("epochs", str(len(history)) if history else "–"),
        ("collision strategy", str(exp.config.collision.strategy)),
        ("embedding model", _embedding_fact(info, m)),
        ("versions", f"library {info.get('library_version', '–')}, format {info.get('format_version', '–')}"),
    ]
    return facts


def _embedding_fact(info: dict, metrics: dict) -> str:
    """The text embedding's model and dimension; with sequences, the model's input is wider
    (text and behaviour side by side), and the fact says so rather than giving that width as
    the embedding's."""
    emb = metrics.get("embedding") or {}
    text_dim = info.get("text_dim", emb.get("dim"))
    name = "given embeddings" if emb.get("source") == "given" else info.get("embedding_model", "–")
    fact = f"{name} ({text_dim if text_dim is not None else info.get('input_dim', '–')}-d)"
    if text_dim is not None and info.get("input_dim") not in (None, text_dim):
        fact += f"; model input {info['input_dim']}-d: text + {int(info['input_dim']) - int(text_dim)}-d behaviour"
    return fact


def _quality_table(quality: dict, when: str) -> str:
    rows = []
    for k, v in quality.items():
        if k in ("codebook_sizes", "category_column") or v is None:
            continue
        if k == "codes_used" and quality.get("codebook_sizes"):
            val = _esc(usage_text(v, quality["codebook_sizes"]))
        elif isinstance(v, dict):
            continue
        else:
            val = _cell(v, k)
        rows.append(f"<tr><td>{_esc(_label(k, quality, when))}</td><td class=n>{val}</td><td><code>{_esc(k)}</code></td></tr>")
    return "<table class=kv><tr><th>metric</th><th>value</th><th>key</th></tr>" + "".join(rows) + "</table>"


def _baselines_table(rows: list[dict], quality: dict, exp: Export, export_dir: Path, catalog_name: str | None) -> str:
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    first = [c for c in ("catalog", "method", "seed") if c in columns]
    columns = first + [c for c in columns if c not in first]
    ours = {c: export_value(c, quality, exp) for c in columns}
    ours["catalog"] = catalog_name if catalog_name is not None else ""
    ours["method"] = f"this export ({export_dir.name})"
    head = "".join(f"<th>{_wrap_key(c)}</th>" for c in columns)

    def tr(r: dict, cls: str = "") -> str:
        cells = []
        for c in columns:
            v = r.get(c)
            num = isinstance(v, (int, float, list)) and not isinstance(v, bool)
            cells.append(f"<td class={'n' if num else 't' if c == 'method' else 'x'}>{_cell(v, c, '/')}</td>")
        return f"<tr{' class=' + cls if cls else ''}>{''.join(cells)}</tr>"

    body = tr(ours, "ours") + "".join(tr(r) for r in rows)
    return f"<div class=scroll><table class=cmp><tr>{head}</tr>{body}</table></div>"


def _config_tables(info: dict) -> str:
    cfg = info.get("config") or {}
    blocks = []
    scalars = [(k, _esc(json.dumps(v))) for k, v in cfg.items() if not isinstance(v, dict)]
    for section, values in cfg.items():
        if isinstance(values, dict):
            rows = [(k, _esc(json.dumps(v))) for k, v in values.items()]
            blocks.append(f"<div><h3>[{_esc(section)}]</h3>{_kv_table(rows)}</div>")
    extra = [(k, _esc(json.dumps(v))) for k, v in info.items() if k != "config"]
    if scalars or extra:
        blocks.append(f"<div><h3>export</h3>{_kv_table(scalars + extra)}</div>")
    return f"<div class=cols>{''.join(blocks)}</div>"


def _stages_table(metrics: dict) -> str:
    stages = metrics.get("stages") or {}
    if not stages:
        return "<p class=note>no stage timings in metrics.json</p>"
    rows = "".join(
        f"<tr><td>{_esc(name)}</td><td class=n>{_esc(_num(float(s.get('seconds', float('nan')))))}</td>"
        f"<td class=n>{_esc(_num(float(s.get('peak_rss_mb', float('nan')))))}</td></tr>"
        for name, s in stages.items() if isinstance(s, dict)
    )
    total = metrics.get("total_seconds")
    foot = f"<tr><th>total</th><th class=n>{_esc(_num(float(total)))}</th><th></th></tr>" if isinstance(total, (int, float)) else ""
    return f"<table><tr><th>stage</th><th>seconds</th><th>peak RSS, MB</th></tr>{rows}{foot}</table>"


def _churn_section(churn: ChurnReport | None, warm: dict | None) -> list[str]:
    """The "Churn since the previous export" section: the table ``semantic-ids diff``
    prints when a previous export is given, and a warm-started build's own record
    (``metrics.json``'s ``warm_start``); nothing when there is neither."""
    if churn is None and not isinstance(warm, dict):
        return []
    parts = ["<h2>Churn since the previous export</h2>"]
    if churn is not None:
        parts += [
            f"<p class=note>From {_esc(churn.old)} to this export, over the items both hold (as "
            f"<code>semantic-ids diff</code> computes it): the share whose full ID changed and whose prefix changed "
            "at each depth (depth 1 = the first code, the last depth = the full ID with the collision level).</p>",
            _kv_table([(k, _esc(v)) for k, v in churn.table()]),
        ]
    if isinstance(warm, dict):
        parts += [
            "<h3>Warm start</h3>",
            "<p class=note>This export was built with <code>build --previous</code>; its record in metrics.json "
            "(<code>warm_start</code>): shares are of the items both builds hold.</p>",
            _kv_table(_warm_rows(warm)),
        ]
    return parts


_WARM_LABELS = {
    "previous_items": "items in the previous export",
    "new_items": "new items (not in the previous export)",
    "common_items": "items in both",
    "items_kept_off_nearest": "items kept on their old codes, off the nearest ones (hysteresis)",
    "kept_full_id": "kept their full ID",
    "lr_scale": "learning-rate scale",
    "sticky_margin": "hysteresis margin",
}


def _warm_rows(warm: dict) -> list[tuple[str, str]]:
    order = ["previous_items", "new_items", "common_items", "items_kept_off_nearest", "kept_full_id", "kept_prefix"]
    keys = [k for k in order if k in warm] + [k for k in warm if k not in order]
    rows = []
    for k in keys:
        v = warm[k]
        if k == "kept_prefix" and isinstance(v, list):
            rows += [(f"kept their prefix at depth {d}", _esc(f"{float(x):.2%}")) for d, x in enumerate(v, 1)]
        elif k == "kept_full_id" and isinstance(v, (int, float)):
            rows.append((_WARM_LABELS[k], _esc(f"{float(v):.2%}")))
        else:
            rows.append((_WARM_LABELS.get(k, k), _cell(v, k)))
    return rows


def render(exp: Export, export_dir: Path, *, quality: Quality, baselines: Baselines | None,
           figures: dict[str, str | None], raw_note: str, churn: ChurnReport | None = None) -> str:
    """The page for ``exp`` (read from ``export_dir``) as one HTML string.

    ``figures`` maps ``training``, ``usage`` and ``collisions`` to PNG file names
    beside the page (``training`` may be None); ``churn`` is the churn since a
    previous export, if any.
    """
    m = exp.metrics
    # evaluate_export measures the exported model levels, which rebalancing has changed
    evaluated = quality.evaluated
    when = "after rebalancing" if evaluated and exp.config.collision.strategy == "balanced" else "before resolution"
    title = f"Semantic IDs report: {export_dir.resolve().name}"
    facts = "".join(
        f"<div class=fact><div class=k>{_esc(k)}</div><div class=v>{_esc(v)}</div></div>" for k, v in _facts(exp)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        REPORT_MARKER,  # outdir recognises an earlier report by it
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p class=sub>{_esc(str(export_dir.resolve()))} · report written "
        f"{_esc(_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z'))}</p>",
        f"<div class=facts>{facts}</div>",
        "<h2>Quality</h2>",
        f"<p class=note>{_esc(quality.source)}"
        + ("" if evaluated else "; pass a catalog (and sequences) for purity/NMI, neighbour and co-interaction coherence")
        + ".</p>",
        _quality_table(quality.values, when),
    ]
    if baselines is not None:
        parts += [
            "<h3>Beside the baselines</h3>",
            f"<p class=note>{_esc(baselines.note)}. The highlighted row is this export, its values taken from the table "
            "above where a metric matches the column by name (blank otherwise).</p>",
            _baselines_table(baselines.rows, quality.values, exp, export_dir, baselines.catalog),
        ]
    parts += _churn_section(churn, m.get("warm_start"))
    parts.append("<h2>Training</h2>")
    if figures.get("training"):
        parts += [
            f'<img src="{_esc(figures["training"])}" alt="training curves">',
            "<p class=note>Per epoch: loss terms; distinct codes chosen per level during the epoch; dead codes "
            "re-seeded; collision rate of the model levels, measured every restart period and at the end. Dotted "
            "lines, if any, mark where progressive training added a level.</p>",
        ]
    else:
        parts.append("<p class=note>metrics.json holds no training history.</p>")
    moved = m.get("items_moved_by_rebalancing")
    balanced = exp.config.collision.strategy == "balanced"
    parts += [
        "<h2>Code usage per level</h2>",
        f'<img src="{_esc(figures["usage"])}" alt="code usage per level">',
        "<p class=note>Items per code, codes sorted from most to least used; the dashed line is a uniform spread. "
        + (f"Codes as exported, after rebalancing ({_num(moved) if moved is not None else 'some'} items moved)."
           if balanced else "")
        + "</p>",
        "<h2>Collisions</h2>",
        f'<img src="{_esc(figures["collisions"])}" alt="collision group sizes">',
        "<p class=note>Groups of items that share every model code; the collision level numbers the items of "
        f"each group 0, 1, 2… to make every ID unique. Codes: {_esc(raw_note)}. "
        + (f"Rebalancing moved {_num(moved) if moved is not None else 'some'} items to free last-level codes; "
           f"collision rate before it {_num(m.get('collision_rate'), 'rate')}, after it "
           f"{_num(m.get('collision_rate_after_rebalancing'), 'rate')}." if balanced else "")
        + "</p>",
        "<h2>Build stages</h2>",
        _stages_table(m),
        "<h2>Config</h2>",
        _config_tables(exp.info),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
