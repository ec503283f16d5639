"""An HTML report about one export directory, with PNG plots beside it.

``write_report(DIR)`` writes ``DIR-report/index.html`` (beside the export, so
that rebuilding or assigning into DIR never touches it) and its plots
(``training.png``, ``usage.png``, ``collisions.png``) in one staged directory
that is swapped in atomically (see :mod:`semantic_ids.atomic`): a failed run
leaves any earlier report untouched. The page is self-contained apart from
the PNGs, which it links by relative name, so the folder can be moved or
served as is.

The page shows: header facts (items, levels, codebook sizes, collision rate,
build time), the quality table (``metrics.json``, or a fresh
:func:`semantic_ids.evaluate.evaluate_catalog` when a catalog is given) beside
baseline rows from a JSON file such as ``benchmarks/results/quality.json``,
the churn since a previous export and a warm-started build's record, training
curves, per-level code usage, collision-group sizes, build stages and the
saved config.

One module per concern: :mod:`.evaluation` (what is measured), :mod:`.plots`
(the figures), :mod:`.html` (the page). Plots need matplotlib
(``pip install 'semantic-ids[report]'``); it is imported only when a report is
written, with the Agg backend and without pyplot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...export.atomic import staged_dir
from ...export.io import read_export
from ...export.outdir import check_out_dir
from . import evaluation
from . import html
from . import plots
from .evaluation import ReportError

log = logging.getLogger(__name__)

REPORT_DIR = "report"
INDEX = "index.html"


def default_report_dir(export_dir: str | Path) -> Path:
    """``DIR-report`` beside the export ``DIR`` (the report's default place)."""
    export_dir = Path(export_dir).resolve()
    return export_dir.with_name(f"{export_dir.name}-{REPORT_DIR}")


def write_report(
    export_dir: str | Path,
    report_dir: str | Path | None = None,
    *,
    baselines: str | Path | Sequence[dict] | None = None,
    baselines_catalog: str | None = None,
    catalog: Any = None,
    sequences: str | Path | None = None,
    embeddings: str | Path | np.ndarray | None = None,
    category_column: str | None = None,
    previous: str | Path | None = None,
    show_progress: bool = True,
) -> Path:
    """Write an HTML report about ``export_dir``; return the path of its ``index.html``.

    Parameters
    ----------
    export_dir : an export directory (checksums are verified).
    report_dir : the report directory (default ``DIR-report`` beside ``export_dir``: an in-place
        rebuild or ``assign`` replaces the export directory whole, and a report inside it
        would go with it); it is replaced
        atomically, and an existing directory is only replaced if it is empty
        or an earlier report.
    baselines : a JSON file (or the rows themselves) of flat row dicts, as a
        list or as ``{"rows": [...]}`` like ``benchmarks/results/quality.json``.
        Every column present is shown.
    baselines_catalog : keep only the baseline rows of this ``catalog``. Without
        it, the rows are filtered to the one catalog whose rows count as many
        items (``items`` or ``n_items``) as the export; when no single catalog
        does, every row is shown and the page says so.
    catalog, sequences, embeddings, category_column : when ``catalog`` is given
        the quality table comes from
        :func:`semantic_ids.evaluate.evaluate_catalog` (purity/NMI,
        neighbour and, with ``sequences``, co-interaction coherence);
        otherwise from the export's ``metrics.json``. ``embeddings`` (path or
        (N, D) array) also let the raw codes of a ``balanced`` export be
        recomputed.
    previous : an earlier export directory to compare with (any export, not only the
        one a warm start built on, though the name is the same: in the package
        ``previous`` is always the earlier export): the page gets a "Churn since the
        previous export" section with :func:`semantic_ids.churn.churn`'s numbers.
        A warm-started build's ``warm_start`` record in ``metrics.json`` is
        shown in that section with or without it.

    Raises
    ------
    ExportError : ``export_dir`` or ``previous`` is missing, damaged or not an export.
    ReportError : a bad output directory or baselines file, or sequences without a catalog.
    ImportError : matplotlib is missing (the message names the extra to install).
    """
    export_dir = Path(export_dir)
    mpl = plots.matplotlib_parts()  # fail before any heavy work
    exp = read_export(export_dir)
    out = check_out_dir(Path(report_dir) if report_dir is not None else default_report_dir(export_dir), kind="report",
                        inputs=[export_dir], error=ReportError)
    base = evaluation.select_baselines(baselines, exp, baselines_catalog) if baselines is not None else None
    churn = evaluation.churn_since(previous, export_dir)  # a bad previous export fails before embedding
    quality = evaluation.measure(exp, export_dir, catalog=catalog, sequences=sequences, embeddings=embeddings,
                                 category_column=category_column, show_progress=show_progress)
    raw, raw_note = evaluation.raw_codes(exp, quality.inputs, quality.input_ids)

    with staged_dir(out) as stage:
        figures = {
            "training": plots.plot_training(mpl, exp, stage / "training.png"),
            "usage": plots.plot_usage(mpl, exp, stage / "usage.png"),
            "collisions": plots.plot_collisions(mpl, exp, raw, stage / "collisions.png"),
        }
        page = html.render(exp, export_dir, quality=quality, baselines=base, figures=figures, raw_note=raw_note,
                           churn=churn)
        (stage / INDEX).write_text(page, encoding="utf-8")
    log.info("wrote report %s", out / INDEX)
    return out / INDEX


__all__ = ["ReportError", "write_report", "default_report_dir", "REPORT_DIR", "INDEX"]
