import json

import numpy as np
import pandas as pd
import pytest

from semantic_ids.cli import main

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
