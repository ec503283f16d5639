"""The READMEs: generated tables match the results files; README.md stays short and names real files.

Standard library only (no torch, no semantic_ids import), so this runs in well under a second.
"""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_tables_match_the_results_files():
    stale = readme_tables().stale()
    assert not stale, f"out of date (run python benchmarks/readme_tables.py): {stale}"


def test_regenerating_twice_changes_nothing():
    mod = readme_tables()
    for path, blocks in mod.FILES.items():
        once = mod.render(path.read_text(), blocks, path)
        assert mod.render(once, blocks, path) == once, path


def test_readme_is_at_most_250_lines():
    n = len(README.read_text().splitlines())
    assert n <= 250, f"README.md has {n} lines, more than 250"


def test_every_results_file_and_benchmark_the_readme_names_exists():
    text = README.read_text()
    results = set(re.findall(r"benchmarks/results/[\w.\-]+", text))
    scripts = set(re.findall(r"benchmarks/\w+\.py", text))
    assert results and scripts
    missing = sorted(p for p in results | scripts if not (ROOT / p).is_file())
    assert not missing, f"README.md names files that do not exist: {missing}"


def test_every_readme_link_to_a_local_file_resolves():
    for doc in (README, ROOT / "benchmarks" / "README.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to missing {target}"
