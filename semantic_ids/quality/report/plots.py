"""The report's figures: training curves, code usage per level, collision groups.

Each ``plot_*`` function draws one PNG with matplotlib's object API (a
``Figure`` on an Agg canvas, never pyplot, so no global state or display is
touched) and returns its file name, or None when there is nothing to draw.
matplotlib is imported only by :func:`matplotlib_parts`, when a report is
written (``pip install 'semantic-ids[report]'``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...export.io import Export
from ...stages.metrics import group_sizes, perplexity
from ...export.tokens import LETTERS
from ...errors import MissingExtraError

INSTALL_HINT = "pip install 'semantic-ids[report]'"


def matplotlib_parts():
    """(matplotlib, Figure, FigureCanvasAgg); a MissingExtraError (an ImportError) naming the extra when it is missing."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingExtraError(f"the report's plots need matplotlib, which is not installed ({exc}); {INSTALL_HINT}") from exc
    return matplotlib, Figure, FigureCanvasAgg


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


def plot_training(mpl, exp: Export, path: Path) -> str | None:
    """Per-epoch curves from ``metrics.json``'s training history (loss terms, codes used,
    dead codes restarted, collision rate); None when there is no history."""
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

    sizes = list(exp.config.model.codebook_sizes)  # the one stored copy (older exports stored two, equal)
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


def plot_usage(mpl, exp: Export, path: Path) -> str:
    """Items per code on each model level, codes sorted by use, beside a uniform spread."""
    codes = exp.codes[:, :-1]
    sizes = list(exp.config.model.codebook_sizes)  # the one stored copy (older exports stored two, equal)
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


def plot_collisions(mpl, exp: Export, raw: np.ndarray | None, path: Path) -> str:
    """Collision-group sizes of ``raw`` (N, L) model codes (the exported model levels when
    None) and the collision rate by depth."""
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
