"""Writers never remove or move a file they did not write (semantic_ids.export.outdir).

Every refusal must happen before any heavy work (embedding, training), name the
path, and leave the user's files byte-identical.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from semantic_ids.cli.main import main
from semantic_ids.export.outdir import OutputPathError, check_out_dir

from .conftest import clustered_embeddings


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Relative path -> bytes of every file under root (directories as None)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def fitted(tiny_fitted):
    """The session's fitted estimator: these tests only save it."""
    return tiny_fitted


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Fail the test if embedding or training starts."""

    def boom(*a, **k):
        raise AssertionError("heavy work started before the output path was checked")

    import semantic_ids.runners.estimator as api
    import semantic_ids.stages.embed as embed
    import semantic_ids.runners.streaming as stream

    monkeypatch.setattr(api, "train_rqvae", boom)
    monkeypatch.setattr(embed, "embed_texts", boom)
    monkeypatch.setattr(stream, "embed_catalog", boom)
    monkeypatch.setattr(stream, "train_rqvae", boom, raising=False)


@pytest.fixture
def user_project(tmp_path):
    """A user's folder: the catalog, its embeddings and an unrelated file."""
    proj = tmp_path / "proj"
    proj.mkdir()
    n = 40
    (proj / "cat.csv").write_text("item_id,title\n" + "".join(f"i{i},product {i}\n" for i in range(n)))
    np.save(proj / "emb.npy", clustered_embeddings(n, dim=16))
    (proj / "notes.txt").write_text("my notes, not a copy anywhere else")
    return proj


# -- the shared check ----------------------------------------------------------------


def test_new_path_and_empty_dir_are_fine(tmp_path):
    assert check_out_dir(tmp_path / "new" / "deeper") == (tmp_path / "new" / "deeper").resolve()
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty") == (tmp_path / "empty").resolve()
    # a trailing slash names the same directory
    assert check_out_dir(f"{tmp_path / 'empty'}/") == (tmp_path / "empty").resolve()


@pytest.mark.parametrize("case", ["file", "nonempty_dir", "symlink_to_file", "symlink_to_dir", "catalog_inside", "file_parent"])
def test_refusals_name_the_path_and_touch_nothing(tmp_path, case):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.csv").write_text("id\n1\n")
    (tmp_path / "a_file").write_bytes(b"\x00user bytes")
    out, inputs = {
        "file": (tmp_path / "a_file", []),
        "nonempty_dir": (tmp_path / "data", []),
        "symlink_to_file": (tmp_path / "link", []),
        "symlink_to_dir": (tmp_path / "dlink", []),
        "catalog_inside": (tmp_path / "data", [tmp_path / "data" / "precious.csv"]),
        "file_parent": (tmp_path / "a_file" / "sub", []),
    }[case]
    (tmp_path / "link").symlink_to(tmp_path / "a_file")
    (tmp_path / "dlink").symlink_to(tmp_path / "data")
    before = snapshot(tmp_path)
    with pytest.raises(OutputPathError, match=str(out.name)):
        check_out_dir(out, inputs=inputs)
    assert snapshot(tmp_path) == before


def test_current_directory_and_root_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in (".", "./", str(tmp_path.parent)):
        with pytest.raises(OutputPathError, match="current directory"):
            check_out_dir(out)
    with pytest.raises(OutputPathError, match="root"):
        check_out_dir("/")
    assert check_out_dir("out/") == tmp_path / "out"  # relative names resolve against the cwd


def test_earlier_export_is_replaceable_but_not_with_user_files(fitted, tmp_path):
    out = fitted.save(tmp_path / "exp")
    assert check_out_dir(out) == out.resolve()
    (out / "mine.txt").write_text("do not delete")
    before = snapshot(tmp_path)
    with pytest.raises(OutputPathError, match="mine.txt"):
        fitted.save(out)
    assert snapshot(tmp_path) == before
    # a report written inside an export is ours
    (out / "mine.txt").unlink()
    (out / "report").mkdir()
    (out / "report" / "index.html").write_text('<meta name="generator" content="semantic-ids report">')
    assert check_out_dir(out) == out.resolve()
    (out / "report" / "thesis.docx").write_text("x")
    with pytest.raises(OutputPathError, match="report"):
        check_out_dir(out)


# -- each writer ------------------------------------------------------------------------


def test_save_refuses_and_keeps_everything(fitted, user_project, tmp_path):
    before = snapshot(tmp_path)
    for out in (user_project, user_project / "notes.txt"):
        with pytest.raises(OutputPathError, match=str(out.name)):
            fitted.save(out)
    assert snapshot(tmp_path) == before


def test_save_leaves_no_lock_and_model_mode_follows_umask(fitted, tmp_path):
    out = fitted.save(tmp_path / "exp")
    fitted.save(out)  # replacing an earlier export works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert len(set(modes.values())) == 1, modes
    umask = os.umask(0)
    os.umask(umask)
    assert modes["model.safetensors"] == 0o666 & ~umask


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("target", ["project_dir", "file", "cwd"])
def test_cli_build_refuses_before_heavy_work(user_project, tmp_path, monkeypatch, capsys, no_heavy_work, streaming, target):
    monkeypatch.chdir(user_project)
    out = {"project_dir": str(user_project), "file": "notes.txt", "cwd": "."}[target]
    before = snapshot(tmp_path)
    args = ["build", "--catalog", "cat.csv", "--embeddings", "emb.npy", "--out", out, "--no-progress"]
    if streaming:
        args = ["build", "--streaming", "--catalog", "cat.csv", "--out", out, "--no-progress", "--work-dir", str(tmp_path / "w")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "semantic-ids: error:" in err and out.rstrip("/") in err
    assert snapshot(tmp_path) == before


def test_cli_build_into_new_subdir_of_project(user_project, monkeypatch, tmp_path, capsys):
    """`--out proj/out/` beside the catalog works and leaves the user's files alone."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[model]\ncodebook_sizes = [4, 4]\nlatent_dim = 4\nhidden_dims = [16]\n[train]\nepochs = 2\nbatch_size = 16\n")
    before = snapshot(user_project)
    monkeypatch.chdir(tmp_path)
    code = main(["build", "--catalog", "proj/cat.csv", "--embeddings", "proj/emb.npy", "--out", "proj/out/",
                 "--config", str(cfg), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    after = snapshot(user_project)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before
    assert (user_project / "out" / "manifest.json").is_file()
    assert sorted(p.name for p in user_project.iterdir()) == ["cat.csv", "emb.npy", "notes.txt", "out"]


def test_assign_refuses_export_with_user_files(fitted, tmp_path, monkeypatch):
    from semantic_ids.runners.assign import assign_new_items
    import semantic_ids.runners.assign as assign_mod

    out = fitted.save(tmp_path / "exp")
    (out / "new_items.csv").write_text("item_id,title\nz1,new product\n")
    before = snapshot(tmp_path)

    def boom(*a, **k):
        raise AssertionError("assign embedded or encoded before checking the directory")

    monkeypatch.setattr(assign_mod, "encode_all", boom)
    monkeypatch.setattr("semantic_ids.stages.embed.embed_texts", boom)
    with pytest.raises(OutputPathError, match="new_items.csv"):
        assign_new_items(out, catalog=out / "new_items.csv", show_progress=False)
    assert snapshot(tmp_path) == before
