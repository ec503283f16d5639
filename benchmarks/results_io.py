"""Shared by the benchmark scripts: the environment record and the results files."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def environment(setup: str) -> dict:
    """What a results file records about the run: the setup, versions, machine and load."""
    import torch

    return {
        "setup": setup,
        "python": platform.python_version(), "torch": torch.__version__, "machine": f"{os.cpu_count()} CPUs",
        "load_1m": round(os.getloadavg()[0], 2),
    }


def write_results(out: str | Path, env: dict, rows: list[dict], md: str) -> None:
    """``out``.json (env and rows) and ``out``.md (the table), then print the table."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)


def markdown_table(rows: list[dict], cols: list[str], env: dict) -> str:
    """The setup line, then one table row per result (blank where a column is missing)."""
    lines = [f"Setup: {env['setup']}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"
