import json

import numpy as np
import pandas as pd
import pytest

from semantic_ids.cli.main import main

from .conftest import clustered_embeddings

FAST = ["--epochs", "6", "--no-progress"]


@pytest.fixture
def catalog_files(tmp_path):
    n = 300
    df = pd.DataFrame({"sku": [f"s{i}" for i in range(n)], "title": [f"thing {i}" for i in range(n)], "brand": ["b"] * n})
    df.to_csv(tmp_path / "cat.csv", index=False)
    np.save(tmp_path / "emb.npy", clustered_embeddings(n))
    (tmp_path / "cfg.toml").write_text(
        "[model]\ncodebook_sizes = [16, 16, 16]\nhidden_dims = [64, 32]\n[train]\nbatch_size = 64\nrestart_every = 3\n"
    )
    return tmp_path


@pytest.mark.slow
def test_build_cli_writes_export_and_summary(catalog_files, capsys):
    t = catalog_files
    rc = main(["build", "--catalog", str(t / "cat.csv"), "--out", str(t / "out"), "--config", str(t / "cfg.toml"),
               "--id-column", "sku", "--text-columns", "title,brand", "--embeddings", str(t / "emb.npy"), "--seed", "1", *FAST])
    assert rc == 0
    out = capsys.readouterr().out
    assert "collision rate (before resolution)" in out and "unique semantic IDs" in out
    df = pd.read_parquet(t / "out" / "semantic_ids.parquet")
    assert df["sku"].tolist() == [f"s{i}" for i in range(300)]
    assert df["semantic_id"].is_unique
    cfg = json.loads((t / "out" / "config.json").read_text())["config"]
    assert cfg["seed"] == 1 and cfg["catalog"]["id_column"] == "sku" and cfg["train"]["epochs"] == 6


def test_build_cli_json(catalog_files, capsys):
    t = catalog_files
    rc = main(["build", "--catalog", str(t / "cat.csv"), "--out", str(t / "o"), "--config", str(t / "cfg.toml"),
               "--id-column", "sku", "--embeddings", str(t / "emb.npy"), "--json", *FAST])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_items"] == 300 and metrics["unique_after_resolution"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--id-column", "nope"], "id column 'nope' not found"),
        (["--text-columns", "title,missing"], r"text column\(s\) \['missing'\] not found"),
        (["--template", "{title} {colour}"], r"template uses column\(s\) \['colour'\]"),
    ],
)
def test_build_cli_bad_input_exit_2(catalog_files, capsys, args, message):
    t = catalog_files
    argv = ["build", "--catalog", str(t / "cat.csv"), "--out", str(t / "out"), "--embeddings", str(t / "emb.npy"), *FAST]
    if "--id-column" not in args:
        argv += ["--id-column", "sku"]
    rc = main(argv + args)
    assert rc == 2
    err = capsys.readouterr().err
    assert pytest.importorskip("re").search(message, err), err
    assert not (t / "out").exists()


def test_build_cli_bad_config(catalog_files, capsys):
    t = catalog_files
    (t / "bad.toml").write_text("[train]\nepochs = 'many'\n")
    rc = main(["build", "--catalog", str(t / "cat.csv"), "--out", str(t / "out"), "--config", str(t / "bad.toml")])
    assert rc == 2
    assert "train.epochs should be an integer" in capsys.readouterr().err


def test_missing_catalog(tmp_path, capsys):
    assert main(["build", "--catalog", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "catalog file not found" in capsys.readouterr().err


def test_python_dash_m_entry_point(catalog_files):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "semantic_ids", "build", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--catalog" in proc.stdout


def _run(args, **kw):
    import subprocess
    import sys

    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, **kw)


def test_start_up_imports_neither_torch_nor_sentence_transformers(tmp_path):
    """--help, a bad-input failure and an exact lookup stay light (issue 16: start-up)."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['semantic-ids', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('semantic_ids', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'faiss') if m in sys.modules)\n"
        "print('HEAVY', heavy, 'CODE', code, file=sys.stderr)\n"
    )
    (tmp_path / "bad.csv").write_text("item_id,title\n1,a\n1,b\n")
    for args, code in [(["--help"], 0), (["build", "--catalog", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")], 2),
                       (["build", "--catalog", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")], 2)]:
        proc = _run(["-c", probe, *args])
        assert f"HEAVY [] CODE {code}" in proc.stderr, proc.stderr
    assert "duplicate" in _run(["-m", "semantic_ids", "build", "--catalog", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")]).stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_exact_lookup_without_torch(tmp_path):
    from semantic_ids import BuildConfig, SemanticIDs

    n = 200
    df = pd.DataFrame({"item_id": list(range(100, 100 + n)), "title": ["t"] * n})
    cfg = BuildConfig().replace(model={"codebook_sizes": [8, 8], "hidden_dims": [16]}, train={"epochs": 2}, embedding={"use_cache": False})
    sid = SemanticIDs(cfg, show_progress=False).fit(clustered_embeddings(n, dim=16), ids=df["item_id"].to_numpy())
    out = sid.save(tmp_path / "e")
    script = (
        "import sys\n"
        "from semantic_ids.lookup import SemanticIDLookup\n"
        f"lk = SemanticIDLookup.load({str(out)!r})\n"
        "print(lk.item_to_sid(['100', 101, 'x', 99999], missing='null'), lk.prefix_count((0,)), lk.sid_to_item(lk.item_to_sid(150)))\n"
        "assert not {'torch', 'sentence_transformers', 'faiss'} & set(sys.modules), sorted(sys.modules)\n"
        "lk.similar_items([100], k=2)  # the model loads on first need\n"
        "print('torch' in sys.modules)\n"
    )
    proc = _run(["-c", script])
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    sids = sid.semantic_ids_
    assert first == f"{[sids[0], sids[1], None, None]} {int((sid.codes_[:, 0] == 0).sum())} 150"
    assert second == "True"


# -- which errors are the user's (issue 23) and a closed stdout (issue 24) ---------------------

def _plant(monkeypatch, exc: BaseException) -> None:
    """Make ``semantic-ids diff`` raise ``exc`` (the parser binds the handler when main runs)."""
    from semantic_ids.cli import commands

    def handler(args):
        raise exc

    monkeypatch.setattr(commands, "cmd_diff", handler)


@pytest.mark.parametrize("exc", [KeyError("codes"), ValueError("operands could not be broadcast"), FileNotFoundError(2, "x")])
def test_an_internal_error_is_not_caught_as_bad_input(monkeypatch, capsys, exc):
    _plant(monkeypatch, exc)
    with pytest.raises(type(exc)) as info:
        main(["diff", "a", "b"])
    assert info.value is exc
    assert "error" not in capsys.readouterr().err


def test_a_user_error_exits_2_with_its_message(monkeypatch, capsys):
    from semantic_ids.errors import CatalogError, UnknownIDError

    _plant(monkeypatch, CatalogError("cat.csv: id column 'sku' not found"))
    assert main(["diff", "a", "b"]) == 2
    assert capsys.readouterr().err == "semantic-ids: error: cat.csv: id column 'sku' not found\n"
    _plant(monkeypatch, UnknownIDError("item 'x' not found"))  # a KeyError: shown without KeyError's quotes
    assert main(["diff", "a", "b"]) == 2
    assert capsys.readouterr().err == "semantic-ids: error: item 'x' not found\n"


def test_interrupt_exits_130(monkeypatch, capsys):
    _plant(monkeypatch, KeyboardInterrupt())
    assert main(["diff", "a", "b"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_broken_pipe_that_is_not_stdout_propagates(monkeypatch):
    err = BrokenPipeError(32, "Broken pipe")  # e.g. a worker's pipe: a bug, not the reader leaving
    _plant(monkeypatch, err)
    with pytest.raises(BrokenPipeError):
        main(["diff", "a", "b"])


def test_tracebacks_for_bugs_one_line_for_user_errors(tmp_path):
    """In a real process: a planted internal KeyError ends in its traceback (status 1), a missing
    export in one line and status 2."""
    planted = (
        "import sys\n"
        "from semantic_ids.cli import commands, main\n"
        "def boom(args):\n    raise KeyError('codes')\n"
        "commands.cmd_diff = boom\n"
        "sys.exit(main.main(['diff', 'a', 'b']))\n"
    )
    proc = _run(["-c", planted])
    assert proc.returncode == 1, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr and "KeyError: 'codes'" in proc.stderr
    assert "semantic-ids: error" not in proc.stderr
    proc = _run(["-m", "semantic_ids", "diff", str(tmp_path / "nowhere"), str(tmp_path / "other")])
    assert proc.returncode == 2
    assert proc.stderr == f"semantic-ids: error: {tmp_path / 'nowhere'}: export directory not found\n"


def test_lookup_into_a_reader_that_leaves_early(tmp_path):
    """``semantic-ids lookup ... | head -1``: the lookup gets EPIPE and ends quietly (status 141)."""
    import subprocess
    import sys

    from semantic_ids import BuildConfig
    from semantic_ids.export.io import write_export
    from semantic_ids.model.rqvae import RQVAE

    cfg = BuildConfig().replace(model={"codebook_sizes": [4, 4], "hidden_dims": [8]})
    ids = np.array([f"item{i:02d}" for i in range(16)], dtype=object)
    codes = np.array([[i // 4, i % 4, 0] for i in range(16)], dtype=np.int64)
    out = write_export(tmp_path / "e", config=cfg, model=RQVAE(input_dim=6, config=cfg.model), metrics={}, ids=ids, codes=codes)
    argv = [sys.executable, "-m", "semantic_ids", "lookup", str(out), "--item", *ids.tolist() * 1500]
    with open(tmp_path / "all.txt", "wb") as fh:  # the whole output, read to the end
        assert subprocess.run(argv, stdout=fh, timeout=120).returncode == 0
    lines = (tmp_path / "all.txt").read_bytes().splitlines()
    assert len(lines) == 24000 and (tmp_path / "all.txt").stat().st_size > 16 * 65536  # far beyond a pipe's buffer

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader leaves, as head -1 does: the writer's next write gets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err  # 141 comes only from the BrokenPipeError handler
    assert first == lines[0] + b"\n"
    assert err == ""  # no traceback, no "Exception ignored" at exit
def test_summary_rows_read_plainly():
    """Issue 24: "codes used 64/64 / 64/64 / 64/64" was hard to read; given embeddings printed
    "items with empty text 10,000"; a build with sequences never said what went in."""
    from pathlib import Path

    from semantic_ids.cli.commands import summary_rows

    m = {"n_items": 10_000, "n_empty_text": 10_000, "embedding": {"source": "given", "dim": 8}, "codebook_sizes": [64, 64, 64],
         "collision_level_size": 2, "codes_used": [64, 64, 64], "perplexity": [60.0, 50.0, 40.0], "collision_rate": 0.01,
         "n_collided_items": 3, "largest_group": 2, "reconstruction_mse": 0.1, "unique_after_resolution": True, "stages": {}}
    rows = dict(summary_rows(m, Path("ids")))
    assert rows["codes used per level"] == "all used (64, 64, 64)"
    assert "items with empty text" not in rows and "sequences: users / interactions used" not in rows
    m = {**m, "codes_used": [64, 60, 64], "embedding": {"source": "all-MiniLM-L6-v2", "dim": 384},
         "collab": {"users": 943, "interactions": 98_114, "interactions_held_out": 1_886, "items_with_interactions": 1_680}}
    rows = dict(summary_rows(m, Path("ids")))
    assert rows["codes used per level"] == "level 1: 64 of 64, level 2: 60 of 64, level 3: 64 of 64"
    assert rows["items with empty text"] == "10,000"
    assert rows["sequences: users / interactions used"].startswith("943 / 98,114 (1,886 held out")
    assert rows["items with interactions"].startswith("1,680")
