"""Decoding files: written from an export, read back, and never over a foreign file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semantic_ids.decoding.formats import (
    MANIFEST,
    DecodingFilesError,
    verify_decoding_files,
    write_decoding_files,
)
from semantic_ids.decoding.trie import PrefixTrie
from semantic_ids.decoding.vocab import SIDVocab
from semantic_ids.export.manifest import ExportError
from semantic_ids.export.io import read_export
from semantic_ids.export.tokens import format_sid


@pytest.fixture(scope="module")
def export(tiny_export):
    return tiny_export, read_export(tiny_export)


def test_all_formats_round_trip(export, tmp_path):
    path, ex = export
    out = tmp_path / "dec"
    written = write_decoding_files(path, out)
    names = {"sid2pid.json", "codes.npy", "item_ids.json", "vocab.json", "trie.safetensors", MANIFEST}
    assert set(written) == names and sorted(p.name for p in out.iterdir()) == sorted(names)
    ids = list(ex.ids)
    # sid2pid: every full ID (collision level included) -> its one item
    sid2pid = json.loads((out / "sid2pid.json").read_text())
    assert len(sid2pid) == len(ids)
    for row, item in zip(ex.codes.tolist(), ids):
        assert sid2pid[",".join(map(str, row))] == [item]
    # codes.npy: (levels, items) in the order of item_ids.json
    codes = np.load(out / "codes.npy", allow_pickle=False)
    assert codes.dtype == np.int64 and codes.shape == (ex.codes.shape[1], len(ids))
    assert np.array_equal(codes.T, ex.codes)
    assert json.loads((out / "item_ids.json").read_text()) == ids
    # vocab.json and trie.safetensors describe the same IDs
    vdata = json.loads((out / "vocab.json").read_text())
    vocab = SIDVocab.from_dict(vdata)
    assert vocab == SIDVocab.from_export(path)
    assert vdata["tokens"] == vocab.tokens
    assert format_sid(ex.codes[0]) == "".join(vocab.tokens[i] for i in vocab.token_ids(ex.codes[:1])[0])
    trie = PrefixTrie.load(out / "trie.safetensors")
    assert trie.level_sizes == vocab.level_sizes
    assert np.array_equal(trie.rows_of(ex.codes), np.arange(len(ids)))
    manifest = verify_decoding_files(out)
    assert manifest["n_items"] == len(ids) and manifest["formats"] == ["sid2pid", "codes", "vocab", "trie"]


def test_rewrite_replaces_an_earlier_output_with_the_chosen_formats(export, tmp_path):
    path, _ = export
    out = tmp_path / "dec"
    write_decoding_files(path, out)
    written = write_decoding_files(path, out, formats=["codes"])
    assert sorted(p.name for p in out.iterdir()) == sorted(["codes.npy", "item_ids.json", MANIFEST])
    assert set(written) == {"codes.npy", "item_ids.json", MANIFEST}
    verify_decoding_files(out)


def test_refuses_foreign_files_and_touches_nothing(export, tmp_path):
    path, _ = export
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(DecodingFilesError, match=r"mine.*not an earlier semantic-ids decoding-files directory.*notes.txt"):
        write_decoding_files(path, mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    # an earlier output with a file added by someone else
    out = tmp_path / "dec"
    write_decoding_files(path, out, formats=["vocab"])
    (out / "sid2pid.json").write_text("{}")  # not listed in the manifest: not ours
    with pytest.raises(DecodingFilesError, match="sid2pid.json"):
        write_decoding_files(path, out)
    assert (out / "sid2pid.json").read_text() == "{}"
    # a file where the directory should go
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DecodingFilesError, match="not a directory"):
        write_decoding_files(path, f)
    assert f.read_text() == "x"
    # inside the export
    with pytest.raises(DecodingFilesError, match="export"):
        write_decoding_files(path, path / "dec")
    assert not (path / "dec").exists()
    # nothing staged is left behind (a lock file beside the output may be)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["dec", "file", "mine"]


def test_bad_requests_fail_before_any_write(export, tmp_path):
    path, _ = export
    with pytest.raises(DecodingFilesError, match="unknown formats \\['pt'\\]"):
        write_decoding_files(path, tmp_path / "a", formats=["codes", "pt"])
    with pytest.raises(ExportError, match="not found"):
        write_decoding_files(tmp_path / "nope", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_damaged_export_or_edited_output_is_reported(export, tmp_path):
    import shutil

    path, _ = export
    bad = tmp_path / "export"
    shutil.copytree(path, bad)
    with open(bad / "semantic_ids.parquet", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ExportError, match="checksum"):
        write_decoding_files(bad, tmp_path / "dec")
    assert not (tmp_path / "dec").exists()
    out = write_decoding_files(path, tmp_path / "dec2")["codes.npy"]
    out.write_bytes(out.read_bytes()[:-8])
    with pytest.raises(DecodingFilesError, match="codes.npy: checksum"):
        verify_decoding_files(tmp_path / "dec2")
