"""SIDVocab: token layout, round trips, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semantic_ids.decoding.vocab import SIDVocab, VocabError
from semantic_ids.export.tokens import format_sid, parse_sid
from tests.conftest import clustered_embeddings


def make_tiny_export(path, n: int = 200):
    """The cheapest real export: 200 items, 3 levels x 8 codes, random clustered embeddings."""
    import pandas as pd

    from semantic_ids import BuildConfig, SemanticIDs

    config = BuildConfig().replace(
        model={"codebook_sizes": [8, 8, 8], "latent_dim": 8, "hidden_dims": [32]},
        train={"epochs": 4, "batch_size": 128, "restart_every": 2},
        embedding={"use_cache": False},
    )
    df = pd.DataFrame({"item_id": [f"item-{i:04d}" for i in range(n)], "title": [f"product {i}" for i in range(n)]})
    SemanticIDs(config, show_progress=False).fit(clustered_embeddings(n, clusters=6), ids=df["item_id"].to_numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.mktemp("export") / "export")


def random_codes(n: int = 300, sizes=(8, 5, 3, 2), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(0, k, n) for k in sizes]).astype(np.int64)


def test_layout_offsets_and_tokens():
    v = SIDVocab((3, 2, 4))
    assert v.offsets.tolist() == [0, 3, 5]
    assert v.size == 9
    assert v.tokens == ["<a_0>", "<a_1>", "<a_2>", "<b_0>", "<b_1>", "<c_0>", "<c_1>", "<c_2>", "<c_3>"]
    # the token string of a token id is the tokens.py spelling of that (level, code)
    for tid, tok in enumerate(v.tokens):
        lvl, code = v.level_code(tid)
        assert tok == format_sid([0] * lvl + [code])[-len(tok):]
        assert v.offsets[lvl] + code == tid


def test_token_ids_round_trip_and_match_token_strings():
    codes = random_codes()
    v = SIDVocab.from_codes(codes)
    assert v.level_sizes == tuple(int(m) + 1 for m in codes.max(axis=0))
    tid = v.token_ids(codes)
    assert tid.shape == codes.shape and tid.dtype == np.int64
    assert np.array_equal(v.codes_of(tid), codes)
    toks = v.tokens
    for row, ids in zip(codes[:20], tid[:20]):
        assert parse_sid("".join(toks[i] for i in ids)) == tuple(row.tolist())
    # prefixes work too
    assert np.array_equal(v.codes_of(v.token_ids(codes[:, :2])), codes[:, :2])
    levels, c = v.split(tid)
    assert np.array_equal(levels, np.broadcast_to(np.arange(codes.shape[1]), codes.shape))
    assert np.array_equal(c, codes)


def test_given_sizes_must_cover_codes_and_error_names_level_and_value():
    codes = random_codes(sizes=(8, 5, 3))
    v = SIDVocab.from_codes(codes, level_sizes=(16, 16, 16))
    assert v.size == 48
    with pytest.raises(VocabError, match=r"level 1 \(b\) value 4 .*\[0, 4\)"):
        SIDVocab.from_codes(codes, level_sizes=(8, 4, 3))
    with pytest.raises(VocabError, match="level 2"):
        v.token_ids(np.array([[0, 0, 16]]))
    with pytest.raises(VocabError, match="value -1"):
        v.token_ids(np.array([[0, -1, 0]]))
    with pytest.raises(VocabError, match="2 level sizes"):
        SIDVocab.from_codes(codes, level_sizes=(8, 5))


def test_codes_of_rejects_tokens_of_the_wrong_level():
    v = SIDVocab((4, 4))
    with pytest.raises(VocabError, match=r"position 0 needs level 0"):
        v.codes_of(np.array([[5, 6]]))
    with pytest.raises(VocabError, match="not an ID token"):
        v.codes_of(np.array([[0, 8]]))


def test_dict_json_round_trip():
    v = SIDVocab((256, 256, 256, 7))
    assert SIDVocab.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert SIDVocab.from_json(v.to_json()) == v
    with pytest.raises(VocabError):
        SIDVocab.from_dict({"level_sizes": "256"})
    with pytest.raises(VocabError, match="level_sizes\\[1\\]=0"):
        SIDVocab((4, 0))


def test_from_export_uses_codebook_sizes_and_collision_counter(tiny_export):
    from semantic_ids.export.io import read_export

    ex = read_export(tiny_export)
    v = SIDVocab.from_export(tiny_export)
    assert v.level_sizes[:-1] == tuple(ex.config.model.codebook_sizes)
    assert v.level_sizes[-1] == int(ex.codes[:, -1].max()) + 1
    assert np.array_equal(v.codes_of(v.token_ids(ex.codes)), ex.codes)
