"""The Ray engine's counting pieces without Ray: spans of the sequences file, each read, checked
and counted alone, sum to the local engine's counts bit for bit (tests/test_distributed.py runs
them as Ray Data jobs)."""

import json

import numpy as np
import pytest

from semantic_ids.model.collab import used_interactions
from semantic_ids.model.cooccur import CountBlocks, count_sequences
from semantic_ids.model.keys import IdRows
from semantic_ids.runners.ray_behaviour import _sum_blocks, count_span, line_spans
from semantic_ids.stages.sequences import iter_sequences, read_sequences


def _write(path, lines, newline_at_end=True):
    text = "\n".join(json.dumps(r) for r in lines) + ("\n" if newline_at_end else "")
    path.write_text(text)
    return path


@pytest.mark.parametrize("newline_at_end", [True, False])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
def test_line_spans_cut_the_file_at_line_starts(tmp_path, n, newline_at_end):
    path = _write(tmp_path / "s.jsonl", [{"user_id": i, "items": list(range(i % 4 + 1))} for i in range(20)], newline_at_end)
    data = path.read_bytes()
    spans = line_spans(path, n)
    assert spans[0][0] == 0 and spans[-1][1] == len(data) and len(spans) <= n
    assert all(a < b for a, b in spans) and all(s[1] == t[0] for s, t in zip(spans, spans[1:]))
    assert all(data[a - 1: a] == b"\n" for a, _ in spans[1:])  # every span starts a line
    lines = [line for a, b in spans for line in data[a:b].splitlines()]
    assert lines == data.splitlines()


def test_line_spans_of_an_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    assert line_spans(tmp_path / "e.jsonl", 4) == []


def test_spans_read_alone_give_the_whole_file(tmp_path):
    ids = np.array([f"i{i}" for i in range(30)])
    rng = np.random.default_rng(0)
    path = _write(tmp_path / "s.jsonl", [{"user_id": f"u{u}", "items": ids[rng.integers(0, 30, 4)].tolist()} for u in range(40)])
    whole = read_sequences(path, ids, min_length=1)
    got = [c for span in line_spans(path, 6) for c in iter_sequences(path, ids, min_length=1, chunk_users=3, span=span)]
    assert [u for c in got for u in c.users] == whole.users
    assert all(np.array_equal(a, b) for a, b in zip([s for c in got for s in c.items], whole.items, strict=True))


@pytest.mark.parametrize("holdout_last", [0, 1])
def test_spans_counted_apart_sum_to_the_local_counts(tmp_path, holdout_last):
    n, window, block_rows = 300, 5, 64
    ids = np.array([f"i{i:03d}" for i in range(n)])
    rng = np.random.default_rng(1)
    hot = rng.integers(0, 60, 5000)  # popular items: long sums whose order would show
    lines = [{"user_id": f"u{u}", "items": ids[np.r_[hot[rng.integers(0, 5000, 6)], rng.integers(0, n, 3)]].tolist()}
             for u in range(700)]
    path = _write(tmp_path / "s.jsonl", lines)
    seqs = read_sequences(path, ids, min_length=1).items
    cut = holdout_last
    ref = count_sequences([s[:-cut] if cut else s for s in seqs], n, window, block_rows=block_rows)
    spans = line_spans(path, 5)
    cooc = tmp_path / "cooc"
    parts = [count_span(path, IdRows(ids), span, CountBlocks(n, window, block_rows, cooc / f"part-{i:05d}"), holdout_last,
                        chunk_users=50) for i, span in enumerate(spans)]
    assert not any(p["failed"] for p in parts)
    used = {k: sum(p[k] for p in parts) for k in ("users", "interactions", "interactions_held_out")}
    assert used == used_interactions(seqs, holdout_last)
    assert max(p["longest"] for p in parts) == ref.longest
    assert len(np.concatenate([np.frombuffer(p["hashes"], np.uint64) for p in parts])) == 700
    out = _sum_blocks({"block": np.arange(len(ref.bounds))}, n_items=n, window=window, block_rows=block_rows,
                      directory=str(cooc), parts=len(spans))
    counts = CountBlocks(n, window, block_rows, cooc)
    counts.row_sums = np.concatenate([np.frombuffer(s, np.float64) for s in out["sums"]])
    counts.nnz = int(out["nnz"].sum())
    got, want = counts.to_csr(), ref.to_csr()
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data, want.data)  # bit for bit
    assert np.array_equal(counts.row_sums, ref.row_sums) and counts.nnz == ref.nnz
    assert not list(cooc.glob("part-*/*.bin"))  # each block's keys go once counted


def test_a_bad_span_says_so_and_leaves_the_message_to_the_whole_file(tmp_path):
    ids = np.array(["a", "b", "c"])
    path = _write(tmp_path / "s.jsonl", [{"user_id": "u1", "items": ["a", "b"]}, {"user_id": "u2", "items": ["a", "nope"]}])
    spans = line_spans(path, 10)
    assert len(spans) == 2
    first, second = (count_span(path, IdRows(ids), s, CountBlocks(3, 2, directory=tmp_path / f"p{i}")) for i, s in enumerate(spans))
    assert not first["failed"] and first["users"] == 1
    assert second["failed"] and second["hashes"] == b""
