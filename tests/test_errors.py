"""One error hierarchy (issue 23): every exception class the package defines is a
:class:`SemanticIDsError` ("the user erred") unless it is listed as internal here, and
each keeps its builtin base so ``except ValueError`` callers keep working."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys

import pytest

import semantic_ids
from semantic_ids import errors
from semantic_ids.errors import SemanticIDsError

# Exceptions that are not the user's doing, each with the reason.
INTERNAL = {
    "semantic_ids.faults.Fault": "fault injection for tests; a BaseException so handlers do not swallow it",
}
OPTIONAL = ("ray",)  # a module that needs an uninstalled extra is skipped, not failed


def exception_classes(package) -> dict[str, type]:
    """Every exception class defined in ``package``'s modules (imported), by qualified name."""
    found = {}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith(".__main__"):  # runs the command line when imported
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError as exc:
            if exc.name and exc.name.split(".")[0] in OPTIONAL:
                continue
            raise
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith(package.__name__):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def not_user_errors(package, internal=INTERNAL) -> list[str]:
    return sorted(name for name, cls in exception_classes(package).items()
                  if name not in internal and not issubclass(cls, SemanticIDsError))


def test_every_exception_class_is_a_semantic_ids_error():
    classes = exception_classes(semantic_ids)
    assert "semantic_ids.errors.CatalogError" in classes and "semantic_ids.faults.Fault" in classes  # the walk sees them
    assert not_user_errors(semantic_ids) == []
    assert set(INTERNAL) <= set(classes), "an internal exception listed here no longer exists"


def test_the_walk_finds_a_planted_error_outside_the_hierarchy(tmp_path, monkeypatch):
    pkg = tmp_path / "planted_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "mod.py").write_text(
        "from semantic_ids.errors import SemanticIDsError\n"
        "class GoodError(SemanticIDsError, ValueError):\n    pass\n"
        "class BadError(ValueError):\n    pass\n"
        "class Chained(BadError):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import planted_pkg

    try:
        assert not_user_errors(planted_pkg, internal={}) == ["planted_pkg.sub.mod.BadError", "planted_pkg.sub.mod.Chained"]
        assert not_user_errors(planted_pkg, internal={"planted_pkg.sub.mod.BadError": "", "planted_pkg.sub.mod.Chained": ""}) == []
    finally:
        for name in [m for m in sys.modules if m.startswith("planted_pkg")]:
            del sys.modules[name]


BUILTIN_BASES = (ValueError, KeyError, RuntimeError, ImportError)


def test_each_error_keeps_a_builtin_base():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, SemanticIDsError) and c is not SemanticIDsError]
    assert len(classes) >= 14
    assert all(issubclass(c, BUILTIN_BASES) for c in classes), [c for c in classes if not issubclass(c, BUILTIN_BASES)]
    assert issubclass(errors.UnknownIDError, KeyError) and issubclass(errors.NotFittedError, RuntimeError)
    assert issubclass(errors.MissingExtraError, ImportError) and issubclass(errors.CatalogError, ValueError)
    assert not issubclass(SemanticIDsError, BUILTIN_BASES)  # catching the base does not catch bugs
    assert str(errors.UnknownIDError("item 'x' not found")) == "item 'x' not found"  # not KeyError's quoting


@pytest.mark.parametrize("module, name", [
    ("semantic_ids.config", "ConfigError"),
    ("semantic_ids.stages.catalog", "CatalogError"),
    ("semantic_ids.stages.embed", "EmbeddingError"),
    ("semantic_ids.stages.sequences", "SequenceError"),
    ("semantic_ids.export.tokens", "TokenError"),
    ("semantic_ids.export.outdir", "OutputPathError"),
    ("semantic_ids.export.manifest", "ExportError"),
    ("semantic_ids.lookup", "UnknownIDError"),
    ("semantic_ids.decoding.vocab", "VocabError"),
    ("semantic_ids.decoding.trie", "TrieError"),
    ("semantic_ids.decoding.formats", "DecodingFilesError"),
    ("semantic_ids.runners.estimator", "NotFittedError"),
    ("semantic_ids.quality.report.evaluation", "ReportError"),
])
def test_errors_import_from_where_they_are_raised(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_the_package_exports_the_base():
    assert "SemanticIDsError" in semantic_ids.__all__ and semantic_ids.SemanticIDsError is SemanticIDsError
    assert all(getattr(semantic_ids, n) is getattr(errors, n) for n in semantic_ids.__all__ if n.endswith("Error"))


def test_user_input_raises_the_hierarchy(tmp_path):
    """A few bad inputs that used to raise plain FileNotFoundError/ValueError."""
    import numpy as np

    from semantic_ids.lookup.ann import CodeIndex
    from semantic_ids.quality.evaluate import sequence_pairs
    from semantic_ids.quality.report.evaluation import load_baselines
    from semantic_ids.config import BuildConfig
    from semantic_ids.runners.build import check_build
    from semantic_ids.stages.embed import load_embeddings

    with pytest.raises(errors.ReportError, match="nope.json: baselines file not found"):
        load_baselines(tmp_path / "nope.json")
    with pytest.raises(errors.SequenceError, match="nope.jsonl"):
        sequence_pairs(tmp_path / "nope.jsonl", np.array([1, 2]))
    with pytest.raises(errors.ConfigError, match="--previous"):
        check_build(tmp_path / "out", BuildConfig(), catalog="c.csv", engine="ray", previous="old")
    (tmp_path / "emb.parquet").write_text("item_id,embedding\n1,0.5\n")
    with pytest.raises(errors.EmbeddingError, match="emb.parquet: cannot read embeddings"):
        load_embeddings(tmp_path / "emb.parquet", np.array([1]))
    with pytest.raises(errors.ConfigError, match="'nope'"):
        CodeIndex(np.zeros((4, 2), np.int64), [np.eye(2, dtype=np.float32)] * 2, kind="nope")
