"""Builds with user sequences: collaborative vectors, fusion, cold start, no leakage, persistence."""

import json

import numpy as np
import pandas as pd
import pytest

from semantic_ids import BuildConfig, SemanticIDs
from semantic_ids.runners.assign import assign_new_items
from semantic_ids.cli.main import main
from semantic_ids.model.collab import cooccurrence, fit_fusion, fuse_vectors, model_inputs, ppmi, randomized_svd
from semantic_ids.config import CollabConfig, ConfigError
from semantic_ids.stages.sequences import SequenceError
from semantic_ids.quality.evaluate import purity

from .conftest import clustered_embeddings

N, GROUPS, COLD = 400, 8, 40  # items, behaviour groups, items no user touches


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Text clusters and behaviour groups that are independent of each other.

    Each user's sequence draws items from one behaviour group only; the last COLD
    items appear in no sequence.
    """
    rng = np.random.default_rng(0)
    text = clustered_embeddings(N, dim=32, clusters=20, noise=1.0, seed=1)
    group = rng.integers(0, GROUPS, N)
    warm = np.arange(N - COLD)
    ids = np.array([f"i{i:04d}" for i in range(N)])
    lines = []
    for u in range(1500):
        g = u % GROUPS
        pool = warm[group[warm] == g]
        lines.append({"user_id": f"u{u}", "items": ids[rng.choice(pool, rng.integers(4, 10))].tolist()})
    path = tmp_path_factory.mktemp("seq") / "sequences.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    df = pd.DataFrame({"item_id": ids, "title": [f"t {i}" for i in range(N)]})
    return df, text, group, path


@pytest.fixture(scope="module")
def cfg():
    return BuildConfig().replace(
        model={"codebook_sizes": [8, 8, 8], "hidden_dims": [32]},
        train={"epochs": 8, "batch_size": 128, "restart_every": 4},
        embedding={"use_cache": False},
        collab={"dim": 16},
    )


@pytest.fixture(scope="module")
def fused(world, cfg, tmp_path_factory):
    df, text, _, path = world
    sid = SemanticIDs(cfg, show_progress=False).fit(text, ids=df["item_id"].to_numpy(), sequences=path)
    out = sid.save(tmp_path_factory.mktemp("exp") / "fused")
    return sid, out


def _rows(df, path):
    from semantic_ids.stages.sequences import read_sequences

    return read_sequences(path, df["item_id"].to_numpy(), min_length=1).items


# -- the pieces ------------------------------------------------------------------------------


def test_cooccurrence_counts_pairs_within_window_by_distance():
    c = cooccurrence([np.array([0, 1, 2, 3]), np.array([2, 2, 4])], 5, window=2).toarray()
    assert np.allclose(c, c.T)
    assert c[0, 1] == 1 and c[0, 2] == 0.5 and c[0, 3] == 0  # distance 1, 2, 3 (> window)
    assert c[2, 4] == 1.5  # 2 at distance 1 and 2 from 4
    assert np.all(np.diag(c) == 0)  # an item repeated is not its own neighbour


def test_ppmi_is_positive_and_sparse():
    c = cooccurrence([np.array([0, 1, 2, 0, 1, 3])], 4, window=3)
    p = ppmi(c)
    assert (p.data > 0).all() and p.shape == (4, 4)


def test_randomized_svd_matches_exact_top_singular_values():
    from scipy import sparse

    rng = np.random.default_rng(0)
    b = rng.normal(size=(200, 5)) * np.array([10, 8, 6, 4, 2])
    noise = sparse.random(200, 200, density=0.05, random_state=1).toarray()
    a = sparse.csr_matrix(b @ b.T + noise + noise.T)  # rank 5 plus noise, as PPMI's decaying spectrum
    u, s = randomized_svd(a, 5, seed=0)
    exact_u, exact_s, _ = np.linalg.svd(a.toarray())
    assert np.allclose(s, exact_s[:5], rtol=1e-6)
    assert np.allclose(np.abs(u.T @ exact_u[:, :5]), np.eye(5), atol=1e-4)
    u2, s2 = randomized_svd(a, 5, seed=0)
    assert np.array_equal(u, u2) and np.array_equal(s, s2)  # seeded, signs fixed


def test_fuse_vectors_weights_the_squared_norm():
    t, c = np.array([[3.0, 4.0]]), np.array([[0.0, 2.0, 0.0]])
    x = fuse_vectors(t, c, 0.25)
    assert x.shape == (1, 5) and np.isclose(np.linalg.norm(x), 1)
    assert np.isclose(np.sum(x[0, 2:] ** 2), 0.25)


# -- fitting -------------------------------------------------------------------------------


def test_cold_items_get_vectors_predicted_from_text(world):
    df, text, _, path = world
    f = fit_fusion(text, df["item_id"].to_numpy(), _rows(df, path), CollabConfig(dim=16), seed=0)
    assert (f.counts[-COLD:] == 0).all() and (f.counts[:-COLD] > 0).all()
    assert np.allclose(f.vectors[-COLD:], f.predict(text[-COLD:]), atol=1e-6)
    assert np.allclose(np.linalg.norm(f.vectors, axis=1), 1, atol=1e-5)


def test_holdout_last_keeps_the_held_out_items_out(world):
    """With holdout_last = 2, changing every user's last two items changes nothing."""
    df, text, _, path = world
    seqs = _rows(df, path)
    rng = np.random.default_rng(5)
    changed = [np.concatenate([s[:-2], rng.integers(0, N, 2)]) for s in seqs]
    cfg = CollabConfig(dim=16, holdout_last=2)
    a = fit_fusion(text, df["item_id"].to_numpy(), seqs, cfg, seed=0)
    b = fit_fusion(text, df["item_id"].to_numpy(), changed, cfg, seed=0)
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.counts, b.counts)
    c = fit_fusion(text, df["item_id"].to_numpy(), changed, CollabConfig(dim=16), seed=0)
    assert not np.array_equal(a.counts, c.counts)  # without the holdout they do count


def test_too_few_items_with_interactions_is_a_clear_error(world):
    df, text, _, _ = world
    with pytest.raises(ValueError, match="too few to learn"):
        fit_fusion(text, df["item_id"].to_numpy(), [np.array([0, 1])], CollabConfig(dim=16), seed=0)


# -- builds ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_behaviour_moves_the_prefixes(world, cfg, fused):
    """Behaviour groups are invisible in the text; fused level-1 codes follow them."""
    df, text, group, _ = world
    sid, _ = fused
    text_only = SemanticIDs(cfg, show_progress=False).fit(text, ids=df["item_id"].to_numpy())
    warm = slice(0, N - COLD)
    p_text = purity(text_only.codes_[warm, 0], group[warm])
    p_fused = purity(sid.codes_[warm, 0], group[warm])
    assert p_fused > p_text + 0.3, (p_text, p_fused)
    assert sid.metrics_["collab"]["items_with_interactions"] == N - COLD
    assert len(np.unique(sid.codes_, axis=0)) == N


@pytest.mark.slow
def test_rerun_gives_identical_ids(world, cfg, fused):
    df, text, _, path = world
    again = SemanticIDs(cfg, show_progress=False).fit(text, ids=df["item_id"].to_numpy(), sequences=path)
    assert np.array_equal(again.codes_, fused[0].codes_)


@pytest.mark.slow
def test_export_round_trip_and_transform_contract(world, fused):
    df, text, _, _ = world
    sid, out = fused
    assert (out / "collab.safetensors").exists()
    loaded = SemanticIDs.load(out)
    assert loaded.embedding_dim_ == text.shape[1] and loaded.model_.input_dim == text.shape[1] + 16
    assert np.array_equal(loaded.fusion_.vectors, sid.fusion_.vectors)
    assert np.array_equal(loaded.fusion_.ridge, sid.fusion_.ridge)
    # fit's raw codes are transform of the same text embeddings with the items' ids
    assert np.array_equal(loaded.transform(text, ids=df["item_id"].to_numpy()), sid.raw_codes_)
    # model inputs pass through unchanged; any other width is refused
    x = loaded.features(text, df["item_id"].to_numpy())
    assert np.array_equal(loaded.transform(x), sid.raw_codes_)
    with pytest.raises(ValueError, match="expects 32 \\(text\\) or 48"):
        model_inputs(loaded.fusion_, np.zeros((2, 7), np.float32), loaded.model_.input_dim)


@pytest.mark.slow
def test_assign_adds_items_without_sequences_and_old_ids_stay(world, cfg, fused, tmp_path):
    df, text, _, path = world
    half = N // 2
    sid = SemanticIDs(cfg, show_progress=False).fit(text[:half], ids=df.iloc[:half]["item_id"].to_numpy(), sequences=None)
    assert sid.fusion_ is None  # text only without sequences
    # a build with sequences on the first items (sequences naming later items are refused, so filter them)
    seq = tmp_path / "seq.jsonl"
    keep = set(df["item_id"].iloc[:half])
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines = [{"user_id": r["user_id"], "items": [i for i in r["items"] if i in keep]} for r in lines]
    seq.write_text("".join(json.dumps(r) + "\n" for r in lines if r["items"]))
    base = SemanticIDs(cfg.replace(collab={"dim": 8}), show_progress=False).fit(text[:half], ids=df.iloc[:half]["item_id"].to_numpy(), sequences=seq)
    out = base.save(tmp_path / "exp")
    before = SemanticIDs.load(out)
    res = assign_new_items(out, catalog=df, embeddings=text)
    after = SemanticIDs.load(out)
    assert res.n_new == N - half
    assert np.array_equal(after.codes_[:half], before.codes_)
    assert np.array_equal(after.fusion_.vectors, before.fusion_.vectors)
    assert len(np.unique(after.codes_, axis=0)) == N
    # new items are encoded from text with predicted behaviour, as transform does without ids
    assert np.array_equal(after.codes_[half:, :-1], before.transform(text[half:]))


def test_bad_sequences_fail_before_any_work(world, cfg, tmp_path, monkeypatch):
    df, text, _, _ = world
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "a", "items": ["i0001", "nope", "gone"]}\n{"user_id": "a", "items": ["i0002"]}\n'
                   '{"user_id": "b", "items": []}\n')

    def boom(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr("semantic_ids.runners.estimator.train_rqvae", boom)
    with pytest.raises(SequenceError) as e:
        SemanticIDs(cfg, show_progress=False).fit(text, ids=df["item_id"].to_numpy(), sequences=bad)
    msg = str(e.value)
    assert "2 item id(s) not in the catalog" in msg and "'nope'" in msg
    assert "1 duplicate user id(s): 'a'" in msg and "1 empty sequence(s)" in msg


def test_collab_config_is_validated():
    with pytest.raises(ConfigError, match="collab.weight"):
        BuildConfig().replace(collab={"weight": 1.5})
    with pytest.raises(ConfigError, match="collab.holdout_last"):
        BuildConfig().replace(collab={"holdout_last": -1})
    assert BuildConfig.from_dict(BuildConfig().replace(collab={"weight": 0.3}).to_dict()).collab.weight == 0.3


def test_cli_build_with_sequences(world, tmp_path, capsys):
    df, text, _, path = world
    cat = tmp_path / "items.parquet"
    df.to_parquet(cat)
    emb = tmp_path / "emb.npy"
    np.save(emb, text)
    conf = tmp_path / "c.toml"
    conf.write_text('[model]\ncodebook_sizes = [8, 8, 8]\nhidden_dims = [32]\n[train]\nepochs = 4\n'
                    '[embedding]\nuse_cache = false\n[collab]\ndim = 16\n')
    out = tmp_path / "out"
    rc = main(["build", "--catalog", str(cat), "--embeddings", str(emb), "--sequences", str(path), "--holdout-last", "2",
               "--config", str(conf), "--out", str(out), "--no-progress", "--json"])
    assert rc == 0
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["collab"]["holdout_last"] == 2 and info["collab_items"] == N
    # issue 24: metrics count the interactions the vectors learnt from, not every one in the file
    lengths = [len(json.loads(line)["items"]) for line in path.read_text().splitlines()]
    collab = json.loads((out / "metrics.json").read_text())["collab"]
    assert collab["users"] == len(lengths) and collab["interactions"] == sum(n - 2 for n in lengths)
    assert collab["interactions_held_out"] == 2 * len(lengths) and collab["items_with_interactions"] == N - COLD
    # ... and the summary says what went in; with embeddings given, no "items with empty text"
    capsys.readouterr()
    rc = main(["build", "--catalog", str(cat), "--embeddings", str(emb), "--sequences", str(path), "--holdout-last", "2",
               "--config", str(conf), "--out", str(out), "--no-progress"])
    text_out = capsys.readouterr().out
    assert rc == 0 and "empty text" not in text_out
    assert f"{len(lengths):,} / {sum(n - 2 for n in lengths):,} ({2 * len(lengths):,} held out" in text_out
    assert f"items with interactions               {N - COLD:,}" in text_out or f"{N - COLD:,} (the others'" in text_out
    rc = main(["build", "--catalog", str(cat), "--sequences", str(tmp_path / "none.jsonl"), "--engine", "ray", "--out", str(tmp_path / "s")])
    assert rc == 2 and "none.jsonl' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_downstream_evaluation_refuses_ids_that_saw_the_test_items(world, fused, tmp_path, monkeypatch):
    """A build with holdout_last = 0 learned from the items a leave-one-out evaluation scores."""
    from semantic_ids.quality.downstream import evaluate_export_downstream

    _, _, _, path = world
    _, out = fused

    def boom(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr("semantic_ids.quality.downstream.evaluate_downstream", boom)
    with pytest.raises(ValueError, match="holdout_last=0: its IDs saw the validation and test items"):
        evaluate_export_downstream(out, path)


@pytest.mark.slow
def test_lookup_takes_text_embeddings_of_a_fused_export(world, fused):
    """Nearest-code search on a build with sequences: text embeddings get predicted behaviour."""
    from semantic_ids.lookup import SemanticIDLookup

    _, text, _, _ = world
    sid, out = fused
    lk = SemanticIDLookup.load(out)
    codes, _ = lk.encode(text[:7])
    assert np.array_equal(codes, SemanticIDs.load(out).transform(text[:7]))
    nb = lk.search_embeddings(text[:3], k=5)
    assert nb.rows.shape == (3, 5) and (nb.rows >= 0).all()
    assert np.array_equal(nb.codes, codes[:3])


def test_used_interactions_leave_out_the_held_out_items():
    from semantic_ids.model.collab import used_interactions

    seqs = [np.arange(5), np.arange(1), np.arange(3)]
    assert used_interactions(seqs) == {"users": 3, "interactions": 9, "interactions_held_out": 0}
    # a user with fewer items than the holdout keeps none (as fit_fusion cuts them)
    assert used_interactions(seqs, 2) == {"users": 3, "interactions": 4, "interactions_held_out": 5}


def test_text_query_on_a_fused_export_explains_itself(world, fused, tmp_path, monkeypatch, capsys):
    """Issue 24: on an export built with sequences, an item's exact catalog text did not return
    the item, and the printed codes disagreed with the hits. A text query is placed as a new item
    with that text would be (text + behaviour predicted from it, as assign places it); the output
    says so, names the catalog item that has this exact text, and its hits follow its codes."""
    import semantic_ids.stages.embed
    from semantic_ids.lookup import SemanticIDLookup

    df, text, _, _ = world
    _, out = fused
    df.to_parquet(tmp_path / "cat.parquet")
    lk = SemanticIDLookup.load(out)
    lk.read_catalog_texts(tmp_path / "cat.parquet")
    by_text = {t: i for i, t in enumerate(lk.texts)}
    monkeypatch.setattr(semantic_ids.stages.embed, "embed_texts",
                        lambda texts, config, show_progress=True: (text[[by_text[t] for t in texts]], {}))
    query = lk.texts[5]
    assert main(["lookup", str(out), "--text", query, "--k", "6", "--catalog", str(tmp_path / "cat.parquet"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["behaviour"] == "predicted from the text"
    assert rec["catalog_items"] == [{"item_id": "i0005", "semantic_id": lk.item_to_sid("i0005")}]
    # the query's codes are those a new item with this text gets: text with predicted behaviour
    assert rec["codes"] == SemanticIDs.load(out).transform(text[5:6])[0].tolist()
    hits = [lk.item_to_codes(n["item_id"])[: lk.n_levels] for n in rec["neighbors"]]
    depth = [int(np.cumprod(np.asarray(h) == rec["codes"]).sum()) for h in hits]
    assert depth[0] >= 1 and depth == sorted(depth, reverse=True)
    assert all(n["text"] == lk.texts[int(n["item_id"][1:])] for n in rec["neighbors"])
    assert main(["lookup", str(out), "--text", query, "--k", "3", "--catalog", str(tmp_path / "cat.parquet")]) == 0
    printed = capsys.readouterr().out
    assert "predicted from its text" in printed and "catalog item i0005 has exactly this text" in printed
