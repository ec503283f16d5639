"""Every Python that pyproject's ``requires-python`` admits can run the package.

Statically, on this interpreter: every source parses with the oldest admitted
grammar (``ast.parse(feature_version=...)``) and uses no standard-library module
or name newer than it, unless behind a ``sys.version_info`` check. Then, where
that oldest interpreter is on this machine, it compiles the sources itself and
runs ``semantic-ids --help`` (which needs nothing outside the standard library).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "semantic_ids").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")])

# standard-library modules and names added after Python 3.10, with the version that added them
NEWER = {
    "tomllib": (3, 11), "wsgiref.types": (3, 11),
    "typing.Self": (3, 11), "typing.LiteralString": (3, 11), "typing.Never": (3, 11), "typing.assert_never": (3, 11),
    "typing.assert_type": (3, 11), "typing.reveal_type": (3, 11), "typing.Required": (3, 11),
    "typing.NotRequired": (3, 11), "typing.TypeVarTuple": (3, 11), "typing.Unpack": (3, 11),
    "typing.dataclass_transform": (3, 11), "typing.override": (3, 12), "typing.TypeAliasType": (3, 12),
    "enum.StrEnum": (3, 11), "enum.verify": (3, 11), "datetime.UTC": (3, 11), "contextlib.chdir": (3, 11),
    "hashlib.file_digest": (3, 11), "operator.call": (3, 11), "asyncio.TaskGroup": (3, 11), "asyncio.timeout": (3, 11),
    "math.exp2": (3, 11), "math.cbrt": (3, 11), "logging.getLevelNamesMapping": (3, 11),
    "itertools.batched": (3, 12), "warnings.deprecated": (3, 13), "copy.replace": (3, 13),
    "builtins.ExceptionGroup": (3, 11), "builtins.BaseExceptionGroup": (3, 11),
}


def minimum_python() -> tuple[int, int]:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'^requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', text, re.M)
    assert found, "pyproject.toml should say requires-python = \">=3.X\""
    return int(found.group(1)), int(found.group(2))


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``if sys.version_info ...`` (either branch) or ``try: ... except ImportError``."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "version_info" in ast.unparse(node.test):
            return True
        if isinstance(node, ast.Try) and any(
            h.type is not None and re.search(r"ImportError|ModuleNotFoundError|AttributeError", ast.unparse(h.type))
            for h in node.handlers
        ):
            return True
    return False


def newer_uses(source: str, oldest: tuple[int, int]) -> list[str]:
    """'line: name (3.X)' for each unguarded use of a standard-library name newer than ``oldest``."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    aliases: dict[str, str] = {}  # local name -> module it stands for
    found = []

    def check(name: str, node: ast.AST) -> None:
        added = NEWER.get(name)
        if added and added > oldest and not _guarded(node, parents):
            found.append(f"{node.lineno}: {name} ({added[0]}.{added[1]})")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                check(a.name, node)
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            check(node.module, node)
            for a in node.names:
                check(f"{node.module}.{a.name}", node)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            check(f"builtins.{node.id}", node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            check(f"{aliases[node.value.id]}.{node.attr}", node)
    return found


def test_sources_parse_with_the_oldest_admitted_grammar():
    oldest = minimum_python()
    bad = []
    for path in SOURCES:
        try:
            ast.parse(path.read_text(), filename=str(path), feature_version=oldest)
        except SyntaxError as exc:
            bad.append(f"{path.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    assert not bad, f"syntax newer than Python {oldest[0]}.{oldest[1]}:\n" + "\n".join(bad)


def test_sources_use_no_newer_standard_library():
    oldest = minimum_python()
    bad = [f"{p.relative_to(ROOT)}:{use}" for p in SOURCES for use in newer_uses(p.read_text(), oldest)]
    assert not bad, f"standard library newer than Python {oldest[0]}.{oldest[1]}:\n" + "\n".join(bad)


def test_the_checker_finds_what_it_names():
    assert newer_uses("import tomllib\n", (3, 10)) == ["1: tomllib (3.11)"]
    assert newer_uses("from typing import Any, Self\n", (3, 10)) == ["1: typing.Self (3.11)"]
    assert newer_uses("import datetime as dt\nx = dt.UTC\n", (3, 10)) == ["2: datetime.UTC (3.11)"]
    assert newer_uses("import tomllib\n", (3, 11)) == []
    guarded = "import sys\nif sys.version_info >= (3, 11):\n    import tomllib\nelse:\n    import tomli as tomllib\n"
    assert newer_uses(guarded, (3, 10)) == []
    with pytest.raises(SyntaxError):
        ast.parse("try:\n    pass\nexcept* ValueError:\n    pass\n", feature_version=(3, 10))


def _interpreter(version: tuple[int, int]) -> str | None:
    name = f"python{version[0]}.{version[1]}"
    if sys.version_info[:2] == version:
        return sys.executable
    found = shutil.which(name)
    if found and subprocess.run([found, "-c", "pass"], capture_output=True).returncode == 0:  # not a bare pyenv shim
        return found
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for d in sorted(pyenv.glob(f"{version[0]}.{version[1]}.*"), reverse=True):
        if (d / "bin" / "python").exists():
            return str(d / "bin" / "python")
    return None


def test_the_oldest_admitted_python_compiles_the_sources_and_runs_help(tmp_path):
    oldest = minimum_python()
    python = _interpreter(oldest)
    if python is None:
        pytest.skip(f"no Python {oldest[0]}.{oldest[1]} on this machine")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(tmp_path)}  # no .pyc beside the sources
    code = "import sys, compileall; sys.exit(not all(compileall.compile_dir(d, quiet=1, force=True) for d in sys.argv[1:]))"
    done = subprocess.run([python, "-c", code, str(ROOT / "semantic_ids"), str(ROOT / "pipelines")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([python, "-m", "semantic_ids", "--help"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "usage: semantic-ids" in done.stdout, done.stderr[-2000:]
