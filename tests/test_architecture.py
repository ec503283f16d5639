"""The package's shape: folders are layers imported only from above, no import cycle,
nothing imports back up into the package ``__init__``, a short top level, and every
module readable in one sitting (at most 400 lines).

Static: the sources are parsed, nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "semantic_ids"
MAX_LINES = 400
MAX_TOP_LEVEL = 12  # .py files directly in semantic_ids/

# Layers, lowest first: a module may import its own layer and those below it, never one above.
# Layers of equal rank (lookup, decoding) may not import each other. The base modules directly in
# semantic_ids/ (version, errors, faults, progress, resources) are the lowest layer; the package
# __init__ (lazy re-exports) and __main__ sit above everything.
LAYERS = {
    "": 0, "config": 1, "model": 2, "export": 3, "stages": 4, "runners": 5,
    "lookup": 6, "decoding": 6, "quality": 7, "cli": 8,
}
TOP = {"semantic_ids", "semantic_ids.__main__"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path], top_level_only: bool) -> set[str]:
    """Package modules that ``name`` imports (resolving relative imports)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:  # "from . import x" names a submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in mods else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in mods}


def _layer(name: str) -> str:
    """``semantic_ids.stages.embed`` -> ``stages``; a base module -> ``""``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def test_layers_import_only_from_below():
    mods = _modules()
    for name in mods:
        if name not in TOP:
            assert _layer(name) in LAYERS, f"{name} sits in no known layer: add its folder to LAYERS"
    offenders = []
    for name, path in mods.items():
        if name in TOP:
            continue
        mine = _layer(name)
        for target in _imports(name, path, mods, top_level_only=False):
            theirs = _layer(target)
            if target in TOP or (theirs != mine and LAYERS[theirs] >= LAYERS[mine]):
                offenders.append(f"{name} ({mine or 'base'}) -> {target} ({theirs or 'base'})")
    assert not offenders, "imports against the layer order:\n" + "\n".join(sorted(offenders))


def test_top_level_is_short():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules directly in semantic_ids/ (at most {MAX_TOP_LEVEL}): {top}"


def test_no_module_imports_back_up_into_the_package_init():
    mods = _modules()
    offenders = []
    for name, path in mods.items():
        if name == "semantic_ids":
            continue
        for target in _imports(name, path, mods, top_level_only=False):
            if target == "semantic_ids" or (target in mods and mods[target].name == "__init__.py" and name.startswith(target + ".")):
                offenders.append(f"{name} -> {target}")
    assert not offenders, offenders


def test_no_import_cycle():
    mods = _modules()
    graph = {name: _imports(name, path, mods, top_level_only=True) - {name} for name, path in mods.items()}
    # a package's __init__ importing its own submodules is not a cycle through them
    for name in graph:
        if mods[name].name == "__init__.py":
            graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, " -> ".join(cycle)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a planted cycle and an upward import are found."""
    pkg = tmp_path / "semantic_ids"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("from .b import y\nx = 1\n")
    (pkg / "b.py").write_text("from . import a\nfrom semantic_ids import x\ny = 2\n")
    monkeypatch.setattr("tests.test_architecture.PKG", pkg)
    import pytest

    with pytest.raises(AssertionError, match="semantic_ids.a -> semantic_ids.b -> semantic_ids.a"):
        test_no_import_cycle()
    with pytest.raises(AssertionError, match="semantic_ids.b -> semantic_ids"):
        test_no_module_imports_back_up_into_the_package_init()


def test_the_layer_check_sees_an_import_from_above(tmp_path, monkeypatch):
    """The layer check can fail: a model module importing a stage, and lookup importing
    decoding (equal rank), are both reported; a stage importing the model is not."""
    pkg = tmp_path / "semantic_ids"
    for folder in ("model", "stages", "lookup", "decoding"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "model" / "m.py").write_text("from ..stages import s\n")
    (pkg / "stages" / "s.py").write_text("from ..model.m import x\n")
    (pkg / "lookup" / "l.py").write_text("def f():\n    from ..decoding import d\n")
    (pkg / "decoding" / "d.py").write_text("")
    monkeypatch.setattr("tests.test_architecture.PKG", pkg)
    import pytest

    with pytest.raises(AssertionError) as err:
        test_layers_import_only_from_below()
    assert "semantic_ids.model.m (model) -> semantic_ids.stages.s (stages)" in str(err.value)
    assert "semantic_ids.lookup.l (lookup) -> semantic_ids.decoding.d (decoding)" in str(err.value)
    assert not any(line.startswith("semantic_ids.stages.s ") for line in str(err.value).splitlines())


def test_modules_are_readable_in_one_sitting():
    long = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
