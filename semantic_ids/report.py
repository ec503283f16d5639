"""An HTML report about one export directory, with PNG plots beside it.

``write_report(DIR)`` writes ``DIR/report/index.html`` and its plots
(``training.png``, ``usage.png``, ``collisions.png``) in one staged directory
that is swapped in atomically (see :mod:`semantic_ids.atomic`): a failed run
leaves any earlier report untouched. The page is self-contained apart from
the PNGs, which it links by relative name, so the folder can be moved or
served as is.

The page shows: header facts (items, levels, codebook sizes, collision rate,
build time), the quality table (``metrics.json``, or a fresh
:func:`semantic_ids.evaluate.evaluate_export` when a catalog is given) beside
baseline rows from a JSON file such as ``benchmarks/results/quality.json``,
training curves, per-level code usage, collision-group sizes, build stages
and the saved config.

Plots need matplotlib (``pip install 'semantic-ids[report]'``); it is imported
only when a report is written, with the Agg backend and without pyplot.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import staged_dir
from .export import Export, read_export
from .metrics import group_sizes, perplexity
from .outdir import REPORT_MARKER, check_out_dir
from .tokens import LETTERS

log = logging.getLogger(__name__)

REPORT_DIR = "report"
INDEX = "index.html"
GENERATOR = "semantic-ids report"
_MARKER = REPORT_MARKER  # names GENERATOR; outdir recognises earlier reports by it
_INSTALL_HINT = "pip install 'semantic-ids[report]'"


class ReportError(ValueError):
    """The report cannot be written: a bad output directory or baselines file."""


# -- public API -------------------------------------------------------------------


def write_report(
    export_dir: str | Path,
    out: str | Path | None = None,
    *,
    baselines: str | Path | Sequence[dict] | None = None,
    baselines_catalog: str | None = None,
    catalog: Any = None,
    sequences: str | Path | None = None,
    embeddings: str | Path | np.ndarray | None = None,
    category_column: str | None = None,
    show_progress: bool = False,
) -> Path:
    """Write an HTML report about ``export_dir``; return the path of its ``index.html``.

    Parameters
    ----------
    export_dir : an export directory (checksums are verified).
    out : the report directory (default ``export_dir/report``); it is replaced
        atomically, and an existing directory is only replaced if it is empty
        or an earlier report.
    baselines : a JSON file (or the rows themselves) of flat row dicts, as a
        list or as ``{"rows": [...]}`` like ``benchmarks/results/quality.json``.
        Every column present is shown; rows are filtered to the export's
        catalog when it can be inferred (``baselines_catalog`` names it).
    catalog, sequences, embeddings, category_column : when ``catalog`` is given
        the quality table comes from
        :func:`semantic_ids.evaluate.evaluate_export` (purity/NMI,
        neighbour and, with ``sequences``, co-interaction coherence);
        otherwise from the export's ``metrics.json``.
    """
    export_dir = Path(export_dir)
    mpl = _matplotlib()  # fail before any heavy work
    exp = read_export(export_dir)
    out = Path(out) if out is not None else export_dir / REPORT_DIR
    out = _check_out(out, export_dir)
    if sequences is not None and catalog is None:
        raise ReportError("sequences need a catalog (the co-interaction metrics are computed by evaluate_export)")

    base_rows: list[dict] = []
    base_note = ""
    if baselines is not None:
        rows = _load_baselines(baselines)
        name = baselines_catalog or _infer_catalog(rows, exp, [export_dir, catalog])
        if name is not None:
            base_rows = [r for r in rows if str(r.get("catalog")) == name]
            base_note = f"{len(base_rows)} of {len(rows)} baseline rows, catalog {name!r}"
        else:
            base_rows = rows
            base_note = f"all {len(rows)} baseline rows (the export's catalog could not be inferred)"
        if isinstance(baselines, (str, Path)):
            base_note += f", from {baselines}"
    else:
        name = None

    emb = None
    if catalog is not None:
        from .catalog import load_catalog
        from .evaluate import evaluate_catalog, export_rows

        cat = load_catalog(catalog, exp.config.catalog)
        item_rows = export_rows(exp.ids, cat)  # fail before embedding
        emb = _embeddings(exp, cat.ids, embeddings, cat.texts, show_progress)
        log.info("evaluating %s against %s", export_dir, _describe(catalog))
        # the export and catalog already loaded here, and the same embeddings, serve the
        # evaluation and the raw codes below
        quality = evaluate_catalog(
            item_rows, exp.codes, exp.model.codebook_sizes, cat, embeddings=emb, sequences=sequences,
            category_column=category_column, reconstruction_mse=exp.metrics.get("reconstruction_mse"),
        )
        source = f"evaluated against {_describe(catalog)}" + (f" and sequences {sequences}" if sequences else "")
        if len(cat) != len(exp.ids):
            emb = None  # a partial catalog: its codes are not the export's collision groups
    else:
        if embeddings is not None and exp.config.collision.strategy != "counter":
            emb = _embeddings(exp, exp.ids, embeddings, None, show_progress)
        quality = _build_quality(exp.metrics)
        source = "build-time metrics from metrics.json"
    raw, raw_note = _raw_codes(exp, emb)

    with staged_dir(out) as stage:
        figures = {
            "training": _plot_training(mpl, exp, stage / "training.png"),
            "usage": _plot_usage(mpl, exp, stage / "usage.png"),
            "collisions": _plot_collisions(mpl, exp, raw, stage / "collisions.png"),
        }
        page = _render(
            exp, export_dir, quality=quality, source=source, base_rows=base_rows, base_note=base_note,
            catalog_name=name, figures=figures, raw_note=raw_note,
        )
        (stage / INDEX).write_text(page, encoding="utf-8")
    log.info("wrote report %s", out / INDEX)
    return out / INDEX


# -- inputs --------------------------------------------------------------------------


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"the report's plots need matplotlib, which is not installed ({exc}); {_INSTALL_HINT}") from exc
    return matplotlib, Figure, FigureCanvasAgg


def _embeddings(exp: Export, ids: np.ndarray, embeddings: Any, texts: list[str] | None, show_progress: bool) -> np.ndarray:
    """The model's inputs in the order of ``ids``: embeddings given (path or array), else
    computed from ``texts``; fused with behaviour for a build with sequences."""
    from .collab import model_inputs
    from .embed import embed_texts, given_embeddings

    emb = given_embeddings(embeddings, ids, exp.config.catalog.id_column)
    if emb is None:
        assert texts is not None
        emb = embed_texts(texts, exp.config.embedding, show_progress=show_progress)[0]
    return model_inputs(exp.fusion, emb, exp.model.input_dim, ids)


def _raw_codes(exp: Export, emb: np.ndarray | None) -> tuple[np.ndarray | None, str]:
    """The model codes before collision resolution, and a note on where they come from.

    With the counter strategy they are the exported codes minus the collision
    level. Rebalancing moves items on the last level and the raw codes are not
    stored, so they are recomputed with the frozen model when embeddings are at hand.
    """
    if exp.config.collision.strategy == "counter":
        return exp.codes[:, :-1], "the exported codes without the collision level"
    if emb is None:
        return None, ("raw codes are not stored for the 'balanced' strategy; pass the full catalog (or embeddings) "
                      "to recompute them; shown: the groups left after rebalancing")
    import torch

    from .encode import encode_all

    if emb.shape[1] != exp.model.input_dim:
        raise ValueError(f"embeddings have dim {emb.shape[1]}, the export's model expects {exp.model.input_dim}")
    with torch.no_grad():
        raw = encode_all(exp.model, torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))).numpy()
    return raw, "recomputed with the export's frozen model from the embeddings (before rebalancing)"


def _describe(catalog: Any) -> str:
    return str(catalog) if isinstance(catalog, (str, Path)) else f"a {type(catalog).__name__} of the catalog"


def _check_out(out: Path, export_dir: Path) -> Path:
    """Refuse to replace anything but an empty directory or an earlier report
    (the check every writer shares, :func:`semantic_ids.outdir.check_out_dir`)."""
    return check_out_dir(out, kind="report", inputs=[export_dir], error=ReportError)


def _load_baselines(baselines: str | Path | Sequence[dict]) -> list[dict]:
    if isinstance(baselines, (str, Path)):
        path = Path(baselines)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: baselines file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReportError(f"{path}: baselines file is not valid JSON ({exc})") from None
    else:
        path, data = "baselines", list(baselines)
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ReportError(f"{path}: baselines should be a JSON list of row objects (or {{\"rows\": [...]}})")
    return data


def _infer_catalog(rows: list[dict], exp: Export, hints: list[Any]) -> str | None:
    """The baselines' catalog name for this export: by item count, else by a name in its path."""
    names = sorted({str(r["catalog"]) for r in rows if r.get("catalog") is not None})
    if not names:
        return None
    n = int(exp.info.get("n_items", len(exp.ids)))
    by_items = {str(r["catalog"]) for r in rows if r.get("catalog") is not None and _items(r) == n}
    if len(by_items) == 1:
        return by_items.pop()
    text = " ".join(str(Path(h).resolve()) for h in hints if isinstance(h, (str, Path))).lower()
    by_name = [c for c in names if re.search(rf"(?<![a-z0-9]){re.escape(c.lower())}(?![a-z0-9])", text)]
    return by_name[0] if len(by_name) == 1 else None


def _items(row: dict) -> int | None:
    for key in ("items", "n_items"):
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return int(v)
    return None


_QUALITY_KEYS = (
    "n_items", "codes_used", "codebook_sizes", "perplexity", "collision_rate", "n_collided_items", "largest_group",
    "collision_rate_by_depth", "collision_rate_after_rebalancing", "items_moved_by_rebalancing", "reconstruction_mse",
)


def _build_quality(metrics: dict) -> dict:
    return {k: metrics[k] for k in _QUALITY_KEYS if k in metrics}


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


# -- plots -----------------------------------------------------------------------------

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _figure(mpl, w: float, h: float):
    _, Figure, Canvas = mpl
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    Canvas(fig)
    return fig


def _save(fig, path: Path) -> str:
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    return path.name


def _level_name(i: int) -> str:
    return f"level {LETTERS[i]}" if i < len(LETTERS) else f"level {i}"


def _ragged(history: list[dict], key: str) -> np.ndarray:
    """(epochs, levels) float array of a per-level history list, NaN where absent."""
    width = max((len(r.get(key) or []) for r in history), default=0)
    out = np.full((len(history), width), np.nan)
    for i, r in enumerate(history):
        vals = r.get(key) or []
        out[i, : len(vals)] = vals
    return out


def _plot_training(mpl, exp: Export, path: Path) -> str | None:
    history = exp.metrics.get("training", {}).get("history") or []
    if not history:
        return None
    epochs = np.array([r.get("epoch", i) for i, r in enumerate(history)], dtype=float) + 1
    fig = _figure(mpl, 11, 6.6)
    axes = fig.subplots(2, 2)
    # loss terms: every numeric scalar of the record but the bookkeeping ones
    ax = axes[0, 0]
    terms = [k for k in history[0] if k not in ("epoch", "levels", "collision_rate")
             and isinstance(history[0][k], (int, float)) and not isinstance(history[0][k], bool)]
    for j, k in enumerate(terms):
        y = np.array([r.get(k, np.nan) for r in history], dtype=float)
        y = np.where(y > 0, y, np.nan)
        if np.isfinite(y).any():
            # the total is drawn wide and dark, the terms (which may nearly equal it) dashed on top
            style = dict(color="0.15", lw=2.6, alpha=0.55) if k == "loss" else dict(color=_COLORS[j % len(_COLORS)], lw=1.3, ls="--")
            ax.plot(epochs, y, label=k, **style)
    ax.set_yscale("log")
    ax.set_title("loss terms (mean per item)")
    ax.legend(fontsize=8, loc="upper right")

    sizes = list(exp.info.get("codebook_sizes") or exp.config.model.codebook_sizes)
    ax = axes[0, 1]
    used = _ragged(history, "codes_used")
    for lvl in range(used.shape[1]):
        ax.plot(epochs, used[:, lvl], label=_level_name(lvl), color=_COLORS[lvl % len(_COLORS)], lw=1.2)
    for k in sorted(set(sizes)):
        ax.axhline(k, color="0.5", ls="--", lw=0.8)
    ax.set_ylim(0, max(sizes) * 1.08 if sizes else None)
    ax.set_title("codes used per level (dashed: codebook size)")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1, 0]
    restarted = _ragged(history, "restarted")
    if restarted.size and np.nansum(restarted) > 0:
        bottom = np.zeros(len(history))
        for lvl in range(restarted.shape[1]):
            y = np.nan_to_num(restarted[:, lvl])
            ax.bar(epochs, y, bottom=bottom, width=1.0, color=_COLORS[lvl % len(_COLORS)], label=_level_name(lvl))
            bottom += y
        ax.legend(fontsize=8, loc="upper right")
        ax.set_title(f"dead codes restarted (total {int(np.nansum(restarted)):,})")
    else:
        ax.text(0.5, 0.5, "no dead codes restarted", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_title("dead codes restarted")
    ax.set_xlim(0, epochs.max() + 1)

    ax = axes[1, 1]
    col = np.array([r.get("collision_rate", np.nan) for r in history], dtype=float)
    ok = np.isfinite(col)
    if ok.any():
        y = col[ok] * 100
        ax.plot(epochs[ok], y, marker="o", ms=3, lw=1.2, color=_COLORS[1])
        ax.annotate(f"{col[ok][-1]:.2%}", (epochs[ok][-1], y[-1]), textcoords="offset points",
                    xytext=(-4, 8), ha="right", fontsize=8)
        positive = y[y > 0]
        if len(positive) and positive.max() / positive.min() > 20:
            ax.set_yscale("log")  # an early spike would flatten the rest
        else:
            ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_title("collision rate, % of items (at restart epochs and the last)")
    ax.set_xlim(0, epochs.max() + 1)

    levels = [r.get("levels") for r in history]
    for i in range(1, len(levels)):
        if levels[i] != levels[i - 1]:  # progressive training: a level was added
            for a in axes.flat:
                a.axvline(epochs[i] - 0.5, color="0.6", ls=":", lw=0.9)
    for a in axes.flat:
        a.set_xlabel("epoch", fontsize=9)
        a.tick_params(labelsize=8)
        a.grid(alpha=0.25)
        a.title.set_fontsize(10)
    return _save(fig, path)


def _plot_usage(mpl, exp: Export, path: Path) -> str:
    codes = exp.codes[:, :-1]
    sizes = list(exp.info.get("codebook_sizes") or exp.config.model.codebook_sizes)
    n_levels = codes.shape[1]
    cols = min(n_levels, 3)
    rows = math.ceil(n_levels / cols)
    fig = _figure(mpl, 11, 3.2 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    n = len(codes)
    for lvl in range(n_levels):
        ax = axes[lvl]
        k = int(sizes[lvl]) if lvl < len(sizes) else int(codes[:, lvl].max()) + 1
        freq = np.sort(np.bincount(codes[:, lvl], minlength=k))[::-1]
        x = np.arange(1, k + 1)
        ax.fill_between(x, freq, step="mid", color=_COLORS[lvl % len(_COLORS)], alpha=0.75, lw=0)
        if n:
            ax.axhline(n / k, color="0.2", ls="--", lw=0.9, label=f"uniform ({n / k:.3g})")
            ax.legend(fontsize=8, loc="upper right")
        used = int((freq > 0).sum())
        ax.set_title(f"{_level_name(lvl)}: {used}/{k} codes used, perplexity {perplexity(codes[:, lvl], k):.1f}", fontsize=10)
        ax.set_xlim(0.5, k + 0.5)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("code rank (most used first)", fontsize=9)
        ax.set_ylabel("items", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25)
    for ax in axes[n_levels:]:
        ax.set_visible(False)
    return _save(fig, path)


def _plot_collisions(mpl, exp: Export, raw: np.ndarray | None, path: Path) -> str:
    codes = raw if raw is not None else exp.codes[:, :-1]
    sizes = group_sizes(codes)
    fig = _figure(mpl, 11, 3.4)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[3, 2])
    if len(sizes):
        values, counts = np.unique(sizes, return_counts=True)
        if len(values) <= 30:
            xs = np.arange(len(values))
            bars = ax.bar(xs, counts, color=_COLORS[0], width=0.7)
            ax.set_xticks(xs, [str(v) for v in values])
            for b, c, v in zip(bars, counts, values):
                ax.annotate(f"{c:,}" + ("" if v == 1 else f"\n({c * v:,} items)"), (b.get_x() + b.get_width() / 2, c),
                            textcoords="offset points", xytext=(0, 2), ha="center", va="bottom", fontsize=7)
        else:
            edges = np.unique(np.round(np.logspace(0, np.log10(values.max() + 1), 25)).astype(int))
            ax.hist(sizes, bins=edges, color=_COLORS[0])
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(0.5, counts.max() * 8)  # a single group still shows as a bar
    ax.set_xlabel("items sharing all model codes (group size)", fontsize=9)
    ax.set_ylabel("groups", fontsize=9)
    when = "before resolution" if raw is not None else "after rebalancing"
    ax.set_title(f"collision groups {when}: {int((sizes > 1).sum()):,} of {len(sizes):,} groups collide", fontsize=10)

    depth = [float(v) for v in exp.metrics.get("collision_rate_by_depth") or []]
    if not depth and len(codes):
        depth = [1.0 - len(group_sizes(codes[:, : d + 1])) / len(codes) for d in range(codes.shape[1])]
    xs = np.arange(len(depth))
    vals = np.array(depth) * 100
    bars = ax2.bar(xs, np.maximum(vals, 1e-4), color=_COLORS[1], width=0.6)
    ax2.set_xticks(xs, [f"a–{LETTERS[d]}" if d else "a" for d in range(len(depth))])
    for b, v in zip(bars, vals):
        ax2.annotate(f"{v:.2f}%", (b.get_x() + b.get_width() / 2, max(v, 1e-4)), textcoords="offset points",
                     xytext=(0, 2), ha="center", va="bottom", fontsize=8)
    ax2.set_yscale("log")
    if len(vals):
        ax2.set_ylim(top=max(vals.max(), 1e-3) * 8)
    ax2.set_xlabel("levels compared", fontsize=9)
    ax2.set_ylabel("% of items colliding", fontsize=9)
    ax2.set_title("collision rate by depth", fontsize=10)
    for a in (ax, ax2):
        a.tick_params(labelsize=8)
        a.grid(alpha=0.25, axis="y")
    return _save(fig, path)


# -- HTML ----------------------------------------------------------------------------------

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
    sizes = list(info.get("codebook_sizes") or exp.config.model.codebook_sizes)
    n_levels = int(info.get("n_levels", exp.codes.shape[1]))
    stages = m.get("stages") or {}
    peak = max((s.get("peak_rss_mb", 0) for s in stages.values() if isinstance(s, dict)), default=None)
    history = m.get("training", {}).get("history") or []
    col_level = m.get("collision_level_size")
    facts = [
        ("items", _num(int(info.get("n_items", len(exp.ids))))),
        ("levels", f"{n_levels - 1} model + 1 collision"),
        ("codebook sizes", " × ".join(map(str, sizes)) + (f" + {col_level}" if col_level is not None else "")),
        ("codes used", " / ".join(f"{u}/{k}" for u, k in zip(m.get("codes_used", []), sizes)) or "–"),
        ("collision rate (before resolution)", _num(m.get("collision_rate_before_resolution", m.get("collision_rate")), "rate")
         if m.get("collision_rate") is not None else "–"),
        ("collided items / largest group", f"{_num(m.get('n_collided_items', '–'))} / {m.get('largest_group', '–')}"),
        ("unique semantic IDs", {True: "yes", False: "NO"}.get(m.get("unique_after_resolution"), "–")),
        ("reconstruction MSE", _num(m["reconstruction_mse"]) if m.get("reconstruction_mse") is not None else "–"),
        ("build time", f"{m['total_seconds']:.1f} s" if isinstance(m.get("total_seconds"), (int, float)) else "–"),
        ("peak memory", f"{peak:,.0f} MB" if peak else "–"),
        ("epochs", str(len(history)) if history else "–"),
        ("collision strategy", str(exp.config.collision.strategy)),
        ("embedding model", f"{info.get('embedding_model', '–')} (dim {info.get('input_dim', '–')})"),
        ("versions", f"library {info.get('library_version', '–')}, format {info.get('format_version', '–')}"),
    ]
    return facts


def _quality_table(quality: dict, when: str) -> str:
    rows = []
    for k, v in quality.items():
        if k in ("codebook_sizes", "category_column") or v is None:
            continue
        if k == "codes_used" and quality.get("codebook_sizes"):
            val = _esc(" / ".join(f"{u}/{s}" for u, s in zip(v, quality["codebook_sizes"])))
        elif isinstance(v, dict):
            continue
        else:
            val = _cell(v, k)
        rows.append(f"<tr><td>{_esc(_label(k, quality, when))}</td><td class=n>{val}</td><td><code>{_esc(k)}</code></td></tr>")
    return "<table class=kv><tr><th>metric</th><th>value</th><th>key</th></tr>" + "".join(rows) + "</table>"


def _export_value(col: str, quality: dict, exp: Export) -> Any:
    """This export's value for a baselines column, when one of its metrics matches by name."""
    m = exp.metrics
    for src in (quality, m):
        if col in src and not isinstance(src[col], dict):
            return src[col]
    if col in ("items", "n_items"):
        return quality.get("n_items", m.get("n_items"))
    if col == "seed":
        return exp.config.seed
    stages = m.get("stages") or {}
    if col == "stages":
        return stages
    if col == "peak_rss_mb" and stages:
        return max(s.get("peak_rss_mb", 0) for s in stages.values())
    hit = re.fullmatch(r"(.+)_l(\d+)", col)
    if hit:
        base, d = hit.group(1), int(hit.group(2))
        if f"{base}@{d}" in quality:
            return quality[f"{base}@{d}"]
        for src in (quality, m):
            seq = src.get(base)
            if isinstance(seq, list) and 0 < d <= len(seq):
                return seq[d - 1]
    hit = re.fullmatch(r"(.+)_seconds", col)
    if hit and isinstance(stages.get(hit.group(1)), dict):
        return stages[hit.group(1)].get("seconds")
    return None


def _baselines_table(rows: list[dict], quality: dict, exp: Export, export_dir: Path, catalog_name: str | None) -> str:
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    first = [c for c in ("catalog", "method", "seed") if c in columns]
    columns = first + [c for c in columns if c not in first]
    ours = {c: _export_value(c, quality, exp) for c in columns}
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


def _render(exp: Export, export_dir: Path, *, quality: dict, source: str, base_rows: list[dict], base_note: str,
            catalog_name: str | None, figures: dict[str, str | None], raw_note: str) -> str:
    m = exp.metrics
    # evaluate_export measures the exported model levels, which rebalancing has changed
    evaluated = not source.startswith("build-time")
    when = "after rebalancing" if evaluated and exp.config.collision.strategy == "balanced" else "before resolution"
    title = f"Semantic IDs report: {export_dir.resolve().name}"
    facts = "".join(
        f"<div class=fact><div class=k>{_esc(k)}</div><div class=v>{_esc(v)}</div></div>" for k, v in _facts(exp)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        _MARKER,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p class=sub>{_esc(str(export_dir.resolve()))} · report written "
        f"{_esc(_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z'))}</p>",
        f"<div class=facts>{facts}</div>",
        "<h2>Quality</h2>",
        f"<p class=note>{_esc(source)}"
        + ("" if evaluated else "; pass a catalog (and sequences) for purity/NMI, neighbour and co-interaction coherence")
        + ".</p>",
        _quality_table(quality, when),
    ]
    if base_rows or base_note:
        parts += [
            "<h3>Beside the baselines</h3>",
            f"<p class=note>{_esc(base_note)}. The highlighted row is this export, its values taken from the table "
            "above where a metric matches the column by name (blank otherwise).</p>",
            _baselines_table(base_rows, quality, exp, export_dir, catalog_name),
        ]
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


__all__ = ["ReportError", "write_report", "REPORT_DIR", "INDEX"]
