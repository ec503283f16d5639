"""The one sequences reader (stages/sequences.py): strict for builds, skipping unknown
items only when evaluation asks; every bad value named with its user and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semantic_ids.cli.main import main
from semantic_ids.config import CollabConfig
from semantic_ids.model.collab import fit_fusion
from semantic_ids.quality.evaluate import sequence_pairs
from semantic_ids.stages.sequences import SequenceError, read_sequences

STR_IDS = np.array(["a", "b", "c"], dtype=object)


def _write(path, *records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.mark.parametrize("bad, shown", [([[1, 2]], "[1, 2]"), ([True], "true"), ([168.5], "168.5"), ([None], "null")])
def test_an_item_id_that_is_no_id_is_named_with_its_user_and_line(tmp_path, bad, shown):
    p = _write(tmp_path / "s.jsonl", {"user_id": "u1", "items": [1, 2]}, {"user_id": "u2", "items": [1, *bad]})
    with pytest.raises(SequenceError) as e:
        read_sequences(p, np.array([1, 2, 3]), min_length=1)
    msg = str(e.value)
    assert "not an integer or a string" in msg and "'u2' (line 2)" in msg and shown in msg


def test_true_is_not_the_item_1(tmp_path):
    # a dict lookup finds True under the key 1: it must not be read as item 1
    p = _write(tmp_path / "s.jsonl", {"user_id": 1, "items": [1, True, 2]})
    with pytest.raises(SequenceError, match="true"):
        read_sequences(p, np.array([1, 2]), min_length=1)


@pytest.mark.parametrize("user, shown", [(None, "null"), (True, "true"), ([1], "[1]"), (2.5, "2.5")])
def test_a_user_id_that_is_no_id_is_named_with_its_line(tmp_path, user, shown):
    p = _write(tmp_path / "s.jsonl", {"user_id": "ok", "items": ["a"]}, {"user_id": user, "items": ["a", "b"]})
    with pytest.raises(SequenceError) as e:
        read_sequences(p, STR_IDS, min_length=1)
    assert "1 user id(s) are not an integer or a string (line 2: " + shown + ")" in str(e.value)


def test_ids_match_across_kinds_only_when_written_the_same(tmp_path):
    p = _write(tmp_path / "s.jsonl", {"user_id": 1, "items": ["3003", 7, "7"]})
    assert read_sequences(p, np.array([7, 3003]), min_length=1).items[0].tolist() == [1, 0, 0]
    p = _write(tmp_path / "s.jsonl", {"user_id": 1, "items": [3003, "7"]})
    assert read_sequences(p, np.array(["7", "3003"], dtype=object), min_length=1).items[0].tolist() == [1, 0]
    p = _write(tmp_path / "s.jsonl", {"user_id": 1, "items": ["03003", "x", 2**70]})
    with pytest.raises(SequenceError, match=r"3 item id\(s\) not in the catalog.*'03003', 'x', 1180591620717411303424"):
        read_sequences(p, np.array([3003]), min_length=1)


def test_skip_unknown_counts_them_and_marks_the_gap(tmp_path):
    p = _write(tmp_path / "s.jsonl", {"user_id": "u", "items": ["a", "x", "b", "c"]}, {"user_id": "v", "items": ["zz"]})
    seqs = read_sequences(p, STR_IDS, min_length=1, unknown="skip")
    assert [s.tolist() for s in seqs.items] == [[0, -1, 1, 2], [-1]] and seqs.n_unknown == 2
    with pytest.raises(SequenceError, match=r"2 item id\(s\) not in the catalog"):
        read_sequences(p, STR_IDS, min_length=1)
    with pytest.raises(ValueError, match="unknown='drop'"):
        read_sequences(p, STR_IDS, unknown="drop")


@pytest.mark.parametrize("records, match", [
    ([{"user_id": "u", "items": ["a", "b"]}, {"user_id": "u", "items": ["b", "c"]}], r"1 duplicate user id\(s\): 'u'"),
    ([{"user_id": "u", "items": [0, 168.5]}], r"'u' \(line 1\): 168.5"),
    ([{"items": ["a", "b"]}], r"not JSON objects with 'user_id' and a list 'items' \(line 1\)"),
])
def test_evaluation_reads_sequences_as_strictly_as_a_build(tmp_path, records, match):
    """evaluate's sequence_pairs once dropped a duplicate user's line silently and read
    168.5 as item 168; it now uses the build's reader."""
    p = _write(tmp_path / "s.jsonl", *records)
    ids = np.arange(200) if records[0].get("items", [""])[0] == 0 else STR_IDS
    with pytest.raises(SequenceError, match=match):
        sequence_pairs(p, ids)


def test_one_item_sequences_say_why_there_are_no_interactions():
    text = np.random.default_rng(0).standard_normal((50, 8))
    with pytest.raises(ValueError) as e:
        fit_fusion(text, np.arange(50), [np.array([i]) for i in range(50)], CollabConfig(dim=4), seed=0)
    msg = str(e.value)
    assert "interactions for 0 of 50 items" in msg and "no two different items co-occur" in msg
    assert "the longest sequence holds 1 item(s)" in msg


def test_cli_build_refuses_a_list_as_an_item_id_with_exit_2(tmp_path, capsys):
    import pandas as pd

    n = 40
    pd.DataFrame({"item_id": np.arange(n), "title": [f"t{i}" for i in range(n)]}).to_parquet(tmp_path / "cat.parquet")
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32))
    seq = _write(tmp_path / "s.jsonl", {"user_id": 5, "items": [[1, 2]]})
    rc = main(["build", "--catalog", str(tmp_path / "cat.parquet"), "--embeddings", str(tmp_path / "emb.npy"),
               "--sequences", str(seq), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "user 5 (line 1): [[1, 2]]" not in err and "user 5 (line 1): [1, 2]" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
