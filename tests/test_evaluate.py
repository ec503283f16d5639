import json

import numpy as np
import pandas as pd
import pytest

from semantic_ids.cli.main import main
from semantic_ids.quality.evaluate import (
    category_labels,
    co_interaction,
    evaluate_codes,
    neighbour_share,
    nmi,
    prefix_groups,
    purity,
    sequence_pairs,
)


def test_prefix_groups():
    codes = np.array([[1, 2], [1, 3], [2, 2], [1, 2]])
    g1, g2 = prefix_groups(codes, 1), prefix_groups(codes, 2)
    assert g1[0] == g1[1] == g1[3] != g1[2]
    assert g2[0] == g2[3] and len(set(g2.tolist())) == 3


def test_purity_hand_computed():
    groups = np.array([0, 0, 0, 1, 1])
    labels = np.array(["a", "a", "b", "c", "c"])
    assert purity(groups, labels) == pytest.approx(4 / 5)


def test_nmi_bounds():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert nmi(y, y) == pytest.approx(1.0)
    assert nmi(np.array([5, 5, 7, 7, 9, 9]), y) == pytest.approx(1.0)  # relabelling does not matter
    assert nmi(np.zeros(6), y) == pytest.approx(0.0)


def test_co_interaction_share_and_lift():
    codes = np.array([[0], [0], [1], [1]])
    pairs = np.array([[0, 1], [1, 2], [2, 3]])
    out = co_interaction(codes, pairs, depths=(1,))
    assert out[1]["share"] == pytest.approx(2 / 3)
    # chance = 0.5² + 0.5² = 0.5
    assert out[1]["lift"] == pytest.approx((2 / 3) / 0.5)


def test_neighbour_share():
    emb = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], dtype=np.float32)
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    out = neighbour_share(codes, emb, depths=(1, 2), k=1)
    assert out[1] == 1.0 and out[2] == 0.0


def test_sequence_pairs_skips_unknown(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"user_id": "u", "items": ["a", "x", "b", "c"]}) + "\n")
    pairs, unknown = sequence_pairs(p, np.array(["a", "b", "c"], dtype=object))
    assert pairs.tolist() == [[1, 2]] and unknown == 1  # (a, b) are not consecutive: x sits between


def test_category_labels_joins_paths():
    df = pd.DataFrame({"categories": [["Beauty", "Makeup"], ["Beauty"]]})
    col, labels = category_labels(df)
    assert col == "categories" and labels.tolist() == ["Beauty > Makeup", "Beauty"]
    assert category_labels(pd.DataFrame({"x": [1]})) is None
    with pytest.raises(ValueError, match="'nope' not in the catalog"):
        category_labels(df, "nope")


def test_random_codes_are_the_floor():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 2000).astype(str)
    good = np.column_stack([labels.astype(int), rng.integers(0, 16, 2000)])
    rand = rng.integers(0, 16, (2000, 2))
    m_good = evaluate_codes(good, (16, 16), labels=labels)
    m_rand = evaluate_codes(rand, (16, 16), labels=labels)
    assert m_good["purity@1"] == 1.0 and m_good["nmi@1"] > 0.99
    assert m_rand["purity@1"] < 0.5 and m_rand["nmi@1"] < 0.05


def test_evaluate_cli(tmp_path, capsys):
    from semantic_ids import BuildConfig, SemanticIDs

    from .conftest import clustered_embeddings

    n = 300
    emb = clustered_embeddings(n, clusters=6)
    df = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "title": ["t"] * n, "category": [f"c{i % 6}" for i in range(n)]})
    df.to_parquet(tmp_path / "cat.parquet")
    np.save(tmp_path / "emb.npy", emb)
    (tmp_path / "seq.jsonl").write_text("".join(json.dumps({"user_id": i, "items": [f"i{j}" for j in range(i, i + 5)]}) + "\n" for i in range(0, 200, 5)))
    cfg = BuildConfig().replace(model={"codebook_sizes": [8, 8, 8], "hidden_dims": [32]}, train={"epochs": 4, "batch_size": 64})
    SemanticIDs(cfg, show_progress=False).fit(emb, ids=df["item_id"].to_numpy()).save(tmp_path / "e")
    rc = main(["evaluate", str(tmp_path / "e"), "--catalog", str(tmp_path / "cat.parquet"), "--sequences", str(tmp_path / "seq.jsonl"),
               "--embeddings", str(tmp_path / "emb.npy"), "--json", "--no-progress"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    for key in ["purity@1", "nmi@1", "neighbour_share@1", "lift@1", "co_share@2", "perplexity", "collision_rate"]:
        assert key in m
    assert m["category_column"] == "category" and m["sequence_pairs"] == 160


def test_neighbour_share_with_duplicates_and_tiny_catalogs():
    emb = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    codes = np.array([[0], [1], [2], [3]])
    assert neighbour_share(codes, emb, depths=(1,), k=2)[1] == 0.0
    assert neighbour_share(np.array([[0], [0], [1]]), np.eye(3, dtype=np.float32), depths=(1,), k=10)[1] == pytest.approx((0.5 + 0.5 + 0) / 3)


def test_sequence_pairs_do_not_bridge_unknown_items(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"user_id": 1, "items": ["a", "zz", "b", "c"]}) + "\n")
    pairs, unknown = sequence_pairs(p, np.array(["a", "b", "c"], dtype=object))
    assert pairs.tolist() == [[1, 2]] and unknown == 1
    p.write_text('{"user": 1}\n')
    with pytest.raises(ValueError, match=r"s.jsonl: 1 line.*'items' \(line 1\)"):
        sequence_pairs(p, np.array(["a"], dtype=object))


def test_missing_labels_are_left_out():
    df = pd.DataFrame({"categories": [["A"], [], None, ["B"]]})
    _, labels = category_labels(df)
    assert labels.tolist() == ["A", None, None, "B"]
    m = evaluate_codes(np.array([[0], [0], [0], [1]]), (2,), labels=labels)
    assert m["n_labelled"] == 2 and m["purity@1"] == 1.0


def test_chance_purity_agrees_with_exhaustive_enumeration():
    """Reference: the exact mean purity over every distinct arrangement of the labels."""
    from itertools import permutations

    from semantic_ids.quality.evaluate import chance_purity, purity

    groups = np.array([0, 0, 0, 1, 1, 2])
    labels = np.array(["a", "a", "b", "b", "c", "c"], dtype=object)
    arrangements = set(permutations(labels.tolist()))
    exact = np.mean([purity(groups, np.array(p, dtype=object)) for p in arrangements])
    assert chance_purity(groups, labels, rounds=4000) == pytest.approx(exact, abs=0.01)
    # groups of one item are pure by construction, and so is chance
    singles = np.arange(6)
    assert chance_purity(singles, labels) == purity(singles, labels) == 1.0
    # one group: purity is the majority share, whatever the arrangement
    assert chance_purity(np.zeros(6, int), labels) == pytest.approx(2 / 6)
    # deterministic for a seed
    assert chance_purity(groups, labels, seed=3) == chance_purity(groups, labels, seed=3)


def test_evaluate_reports_chance_purity_and_partial_catalogs(tmp_path, capsys):
    from semantic_ids import BuildConfig, SemanticIDs

    from .conftest import clustered_embeddings

    n = 200
    emb = clustered_embeddings(n, clusters=4)
    df = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "title": ["t"] * n, "category": [f"c{i % 4}" for i in range(n)]})
    cfg = BuildConfig().replace(model={"codebook_sizes": [8, 8], "hidden_dims": [32]}, train={"epochs": 3, "batch_size": 64})
    SemanticIDs(cfg, show_progress=False).fit(emb, ids=df["item_id"].to_numpy()).save(tmp_path / "e")
    df.iloc[:150].to_parquet(tmp_path / "part.parquet")
    np.save(tmp_path / "part.npy", emb[:150])
    args = ["evaluate", str(tmp_path / "e"), "--catalog", str(tmp_path / "part.parquet"), "--embeddings", str(tmp_path / "part.npy"), "--no-progress"]
    assert main([*args, "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert (m["n_scored"], m["n_export_items"]) == (150, 200)
    assert 0 < m["chance_purity@1"] <= m["purity@1"] <= 1
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "150 of 200 in the export" in out and "purity (chance)" in out
