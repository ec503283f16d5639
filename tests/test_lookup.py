import threading

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semantic_ids import BuildConfig, SemanticIDs
from semantic_ids.lookup.ann import CodeIndex
from semantic_ids.lookup import SemanticIDLookup
from semantic_ids.export.tokens import TokenError, format_sid

from .conftest import clustered_embeddings

N = 1200


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    emb = clustered_embeddings(N, clusters=30)
    df = pd.DataFrame({"item_id": [f"i{i:05d}" for i in range(N)], "title": [f"t{i}" for i in range(N)]})
    cfg = BuildConfig().replace(
        model={"codebook_sizes": [16, 16, 16], "hidden_dims": [64, 32]},
        train={"epochs": 10, "batch_size": 256, "restart_every": 3},
        embedding={"use_cache": False},
    )
    sid = SemanticIDs(cfg, show_progress=False).fit(emb[:1000], ids=df.iloc[:1000]["item_id"].to_numpy())
    out = sid.save(tmp_path_factory.mktemp("lk") / "export")
    return out, df, emb, sid


@pytest.fixture(scope="module")
def lk(export):
    return SemanticIDLookup.load(export[0])


def test_round_trip_every_item(lk, export):
    sid = export[3]
    assert lk.item_to_sid(sid.ids_.tolist()) == sid.semantic_ids_
    assert lk.sid_to_item(lk.item_to_sid(sid.ids_.tolist())) == sid.ids_.tolist()
    assert lk.sid_to_item([tuple(c) for c in sid.codes_.tolist()]) == sid.ids_.tolist()
    # single key in, single answer out
    assert lk.sid_to_item(lk.item_to_sid("i00007")) == "i00007"
    assert np.array_equal(lk.item_to_codes("i00007"), sid.codes_[7])


def test_prefix_equals_brute_force(lk):
    codes = lk.codes
    for prefix in [tuple(codes[0, :1]), tuple(codes[5, :2]), tuple(codes[9, :3]), tuple(codes[11]), (15, 15), (0,)]:
        d = len(prefix)
        brute = sorted(lk.ids[(codes[:, :d] == prefix).all(1)].tolist())
        assert sorted(lk.prefix_items(prefix).tolist()) == brute
        assert lk.prefix_count(format_sid(prefix)) == len(brute)


def test_unknown_and_malformed_inputs(lk):
    with pytest.raises(KeyError, match="unknown item id"):
        lk.item_to_sid(["i00001", "nope"])
    assert lk.item_to_sid(["nope"], missing="null") == [None]
    assert (lk.item_to_codes(["nope"], missing="null") == -1).all()
    with pytest.raises(TokenError, match="malformed"):
        lk.sid_to_item("<a_1><x_2>")
    with pytest.raises(TokenError, match="out of range"):
        lk.sid_to_item("<a_16><b_0><c_0><d_0>")
    with pytest.raises(TokenError, match="5 levels"):
        lk.prefix_items((1, 2, 3, 0, 0))
    with pytest.raises(TokenError, match="use a prefix lookup"):
        lk.sid_to_item("<a_1><b_2>")
    with pytest.raises(ValueError, match="embeddings have dim 5, the model expects 32"):  # collab.model_inputs' check
        lk.search_embeddings(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        lk.search_embeddings(np.full((1, 32), np.nan, dtype=np.float32))


def test_search_texts_embeds_with_the_exports_settings(export, fake_embedder):
    """A fresh lookup reads the export on the first text query and embeds with its embedding config."""
    out, _, emb, sid = export
    fake = fake_embedder(lambda texts: emb[[int(t[1:]) for t in texts]])
    fresh = SemanticIDLookup.load(out)
    nb = fresh.search_texts(["t3", "t7"], k=4)
    assert fake.calls == [(["t3", "t7"], sid.config_.embedding, False)]
    want = fresh.search_embeddings(emb[[3, 7]], k=4)
    assert np.array_equal(nb.rows, want.rows) and np.array_equal(nb.codes, sid.raw_codes_[[3, 7]])


def test_single_and_batch_id_lookups_agree(lk):
    ids = ["i00000", "i00500", "i00999", "nope"]
    batch = lk.item_to_codes(ids, missing="null")
    for i, item in enumerate(ids):
        assert np.array_equal(lk.item_to_codes(item, missing="null"), batch[i])
        assert lk.item_to_sid(item, missing="null") == lk.item_to_sid(ids, missing="null")[i]
    with pytest.raises(KeyError, match="unknown item id 'nope'"):
        lk.item_to_codes("nope")


def test_integer_ids_typed_as_strings():
    """Ids typed on a command line arrive as strings; with integer ids they are read as integers."""
    codes = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=np.int64)
    lk = SemanticIDLookup(np.array([100, 7, 2**62]), codes, [2, 2])
    assert lk.item_to_sid(["100", 7, str(2**62), "x", "1e3", None], missing="null") == [
        "<a_0><b_0><c_0>", "<a_0><b_1><c_0>", "<a_1><b_0><c_0>", None, None, None
    ]
    assert lk.item_to_sid("7") == "<a_0><b_1><c_0>"
    with pytest.raises(KeyError, match=r"1 unknown item id\(s\), e.g. \['x'\]"):
        lk.item_to_codes(["100", "x"])
    # string ids are matched as they are
    lk = SemanticIDLookup(np.array(["100", "7", "x"], dtype=object), codes, [2, 2])
    assert lk.item_to_sid([100, "7"], missing="null") == [None, "<a_0><b_1><c_0>"]


def test_valid_but_unused_id_maps_to_nothing(lk):
    taken = {tuple(c) for c in lk.codes.tolist()}
    free = next((a, b, c, 0) for a in range(16) for b in range(16) for c in range(16) if (a, b, c, 0) not in taken)
    with pytest.raises(KeyError, match="belong to no item"):
        lk.sid_to_item([free])
    assert lk.sid_to_item([free], missing="null") == [None]


def test_invalid_generated_code_maps_to_brute_force_nearest(lk):
    index = lk.code_index
    vectors = index.decode(lk.codes[:, :3])
    rng = np.random.default_rng(0)
    taken = {tuple(c) for c in lk.codes[:, :3].tolist()}
    queries = [tuple(int(x) for x in rng.integers(0, 16, 3)) for _ in range(40)]
    queries = [q for q in queries if q not in taken][:20]
    nb = lk.search_codes([list(q) for q in queries], k=1, prefer_prefix=False)
    for q, row, dist in zip(queries, nb.rows[:, 0], nb.distances[:, 0]):
        d = ((vectors - index.decode(np.array([q]))) ** 2).sum(1)
        assert dist == pytest.approx(d.min(), rel=1e-4, abs=1e-6)
        assert d[row] == pytest.approx(d.min(), rel=1e-4, abs=1e-6)


def test_prefer_prefix_rule(lk):
    # a generated code whose first two levels exist but whose third does not
    codes = lk.codes
    taken = {tuple(c) for c in codes[:, :3].tolist()}
    a, b = codes[0, :2]
    c = next(c for c in range(16) if (a, b, c) not in taken)
    nb = lk.search_codes([[a, b, c]], k=3)
    under = set(lk.prefix_items((a, b)).tolist())
    got = [i for i in nb.ids[0] if i is not None]
    assert got[: min(3, len(under))] and all(i in under for i in got[: min(3, len(under))])
    # exact match first at distance 0
    nb = lk.search_codes([lk.item_to_sid("i00003")], k=2)
    assert nb.distances[0, 0] == 0 and tuple(lk.codes[nb.rows[0, 0], :3]) == tuple(lk.codes[3, :3])


def test_search_embeddings_codes_match_model(lk, export):
    _, _, emb, sid = export
    nb = lk.search_embeddings(emb[:50], k=5, prefer_prefix=False)
    assert np.array_equal(nb.codes, sid.raw_codes_[:50])
    assert (np.diff(nb.distances, axis=1) >= -1e-6).all()


def _shared_depth(lk, nb):
    """(Q, k) how many leading model codes each hit shares with its query's codes."""
    hit = lk.codes[nb.rows][:, :, : lk.n_levels]
    return np.cumprod(hit == nb.codes[:, None, :], axis=2).sum(2)


def test_embedding_hits_agree_with_the_query_codes(lk, export):
    """Issue 24: a query printed codes=[38, 25, 45] while its top hits sat under other level-1
    codes. By default hits now share the most leading codes with the query first, each tier
    by distance; the same candidates by distance alone are still a keyword away."""
    _, _, emb, _ = export
    queries = emb[1000:1200]  # items the export does not hold
    nb = lk.search_embeddings(queries, k=8)
    depth = _shared_depth(lk, nb)
    assert (np.diff(depth, axis=1) <= 0).all()  # never a deeper shared prefix after a shallower one
    has_group = np.array([lk.prefix_count(tuple(c[:1])) > 0 for c in nb.codes])
    assert (depth[has_group, 0] >= 1).all()  # the first hit is under the query's level-1 code
    same = depth[:, :-1] == depth[:, 1:]
    assert (np.diff(nb.distances, axis=1)[same] >= -1e-6).all()  # by distance within a tier
    by_distance = lk.search_embeddings(queries, k=8, prefer_prefix=False)
    assert (_shared_depth(lk, by_distance)[:, 0] <= depth[:, 0]).all()
    assert (nb.distances[:, 0] >= by_distance.distances[:, 0] - 1e-6).all()


def test_similar_items_excludes_itself(lk):
    nb = lk.similar_items(["i00001", "i00002"], k=4)
    assert nb.rows.shape == (2, 4)
    assert "i00001" not in nb.ids[0].tolist() and "i00002" not in nb.ids[1].tolist()


def test_threads_share_one_lookup(lk, export):
    sid = export[3]
    want = sid.semantic_ids_
    errors = []

    def worker():
        for _ in range(20):
            if lk.item_to_sid(sid.ids_.tolist()) != want:
                errors.append("mismatch")
            lk.search_codes([want[0]], k=3)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_agree_with_flat(kind):
    rng = np.random.default_rng(0)
    books = [rng.normal(size=(16, 4)).astype(np.float32) for _ in range(3)]
    codes = np.unique(rng.integers(0, 16, (2000, 3)), axis=0)
    flat = CodeIndex(codes, books, kind="flat")
    approx = CodeIndex(codes, books, kind=kind)
    q = rng.normal(size=(200, 4)).astype(np.float32)
    r1, _ = flat.search(q, 10)
    r2, _ = approx.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(r1, r2)])
    assert recall >= 0.95
    assert approx.kind == kind and flat.kind == "flat"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=40, unique=True))
def test_prefix_property(rows):
    codes = np.array(rows, dtype=np.int64)
    ids = np.array([f"x{i}" for i in range(len(rows))], dtype=object)
    lk = SemanticIDLookup(ids, codes, [4, 4])
    for p in {r[:1] for r in rows} | {r[:2] for r in rows}:
        brute = sorted(ids[(codes[:, : len(p)] == p).all(1)].tolist())
        assert sorted(lk.prefix_items(p).tolist()) == brute
    for r, i in zip(rows, ids):
        assert lk.sid_to_item([r]) == [i]


def test_lookup_edge_inputs(lk):
    assert lk.sid_to_item([]) == []
    first = tuple(int(c) for c in lk.codes[0])
    beyond = first[:3] + (10_000,)
    assert lk.sid_to_item([beyond], missing="null") == [None]  # a collision number nobody has: no item
    with pytest.raises(KeyError, match="belong to no item"):
        lk.sid_to_item([beyond])
    with pytest.raises(TokenError, match="integers"):
        lk.sid_to_item([(0.5, 1, 1, 0)])
    nb = lk.search_codes(first[:2], k=2)  # one tuple of ints is one query
    assert nb.rows.shape == (1, 2)
    view = lk.item_to_codes("i00001")
    with pytest.raises(ValueError):
        view[0] = 99  # shared state is read-only


def test_grouped_search_is_exact():
    """With the k-means first level, the grouped search equals brute force over the full code vectors."""
    rng = np.random.default_rng(1)
    D, d = 24, 4
    first = np.concatenate([rng.normal(size=(16, D)), np.zeros((16, d))], 1).astype(np.float32)
    deeper = [np.concatenate([np.zeros((16, D)), rng.normal(size=(16, d)) * 0.5], 1).astype(np.float32) for _ in range(2)]
    books = [first, *deeper]
    codes = np.unique(rng.integers(0, 16, (1500, 3)), axis=0)
    codes = codes[codes[:, 0] != 3]  # one empty level-1 group
    grouped = CodeIndex(codes, books, split=D, kind="grouped")
    flat = CodeIndex(codes, books, kind="flat")
    assert grouped.kind == "grouped" and grouped.index is None
    # small enough for full vectors: "auto" picks the exact flat index
    assert CodeIndex(codes, books, split=D).kind == "flat"
    with pytest.raises(ValueError, match="does not apply to split"):
        CodeIndex(codes, books, split=D, kind="ivf")
    with pytest.raises(ValueError, match="needs split code vectors"):
        CodeIndex(codes, books, kind="grouped")
    assert grouped.vectors.shape == (len(codes), d)  # only the latent block is stored per tuple
    q = np.concatenate([rng.normal(size=(100, D)), rng.normal(size=(100, d))], 1).astype(np.float32)
    q[:20] = grouped.decode(codes[rng.integers(0, len(codes), 20)])  # exact hits too
    rg, dg = grouped.search(q, 10)
    rf, df = flat.search(q, 10)
    np.testing.assert_allclose(dg, df, rtol=1e-4, atol=1e-4)
    brute = ((flat.vectors[None, :, :] - q[:, None, :]) ** 2).sum(-1)
    np.testing.assert_allclose(dg[:, 0], brute.min(1), rtol=1e-4, atol=1e-4)
    assert (dg[:20, 0] < 1e-4).all()
    for i in range(len(q)):
        np.testing.assert_allclose(grouped.distances(q[i], rg[i]), dg[i], rtol=1e-4, atol=1e-4)
    # fewer tuples than k: -1 / inf past the end
    small = CodeIndex(codes[:3], books, split=D, kind="grouped")
    r, dd = small.search(q[:2], 5)
    assert (r[:, 3:] == -1).all() and np.isinf(dd[:, 3:]).all()
