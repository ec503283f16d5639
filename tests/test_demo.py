"""The demo and the README's quick starts (issue 24): `make demo` builds with the users'
sequences too, and the quick starts run as written on the demo's data."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from semantic_ids.config import BuildConfig, load_toml
from semantic_ids.cli.main import build_parser

from .conftest import ROOT

DEMO_DATA = "data/ml-100k"  # where pipelines/build.py's built-in movielens-100k catalog is fetched to


def _demo_recipe() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    lines = text[text.index("\ndemo:"):].split("\n")[2:]  # after the target's line
    return [line.strip() for line in lines[: next(i for i, line in enumerate(lines) if not line.startswith("\t"))]]


def _cli_quick_start() -> list[list[str]]:
    """The README's `semantic-ids ...` commands (continuation lines joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Quick start: CLI"):]
    block = block[block.index("```bash\n") + 8:]
    block = block[: block.index("```")].replace("\\\n", "")
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("semantic-ids ")]


def test_make_demo_builds_with_the_sequences_it_fetches():
    builds = [line for line in _demo_recipe() if "pipelines/build.py" in line]
    configs = [re.search(r"--config (\S+)", line).group(1) for line in builds]
    assert configs == ["pipelines/configs/movielens.toml", "pipelines/configs/movielens_sequences.toml"]
    job = load_toml(ROOT / configs[1])["job"]
    assert job["catalog"] == "movielens-100k" and job["sequences"] == f"{DEMO_DATA}/sequences.jsonl"
    cfg = BuildConfig.from_toml(ROOT / configs[1], ignore=("job",))
    assert cfg.collab.holdout_last == 2  # so `evaluate --downstream` may score what the IDs never saw
    assert cfg.catalog == BuildConfig.from_toml(ROOT / configs[0], ignore=("job",)).catalog  # the same text


def test_readme_quick_start_uses_the_demos_data_and_parses():
    text = (ROOT / "README.md").read_text()
    assert "B004756YJA" not in text and "<a_12>" not in text  # Amazon ids, IDs of a 5,120+ item build
    commands = _cli_quick_start()
    assert {c[1] for c in commands} >= {"build", "lookup", "assign", "diff", "evaluate", "decoding-files", "report"}
    for argv in commands:
        build_parser().parse_args(argv[1:])  # argparse exits on an unknown option
        for arg in argv:
            if arg.startswith("data/"):
                assert arg.startswith(DEMO_DATA + "/"), arg
    assert any("--sequences" in c for c in commands if c[1] == "build")


@pytest.mark.slow
def test_readme_quick_start_runs_as_written(tmp_path):
    """Every quick-start command, in order, on MovieLens-100K in a fresh directory: exit 0."""
    from semantic_ids.stages.catalog.datasets import fetch_movielens

    fetch_movielens(ROOT / DEMO_DATA)
    (tmp_path / "data").mkdir()
    (tmp_path / DEMO_DATA).symlink_to(ROOT / DEMO_DATA)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in _cli_quick_start():
        extra = ["--no-progress"] if argv[1] in ("build", "assign", "evaluate", "report") else []
        proc = subprocess.run([sys.executable, "-m", "semantic_ids", *argv[1:], *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, (argv, proc.stderr[-2000:])
    assert (tmp_path / "ids-report" / "index.html").exists() and (tmp_path / "ids-seq" / "collab.safetensors").exists()
