"""Warm-started rebuilds (``fit(..., previous=DIR)``, ``build --previous``): IDs survive retraining."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from semantic_ids import BuildConfig, ExportError, SemanticIDs
from semantic_ids.cli.main import main
from semantic_ids.stages.resolve import nth_free, resolve_counter
from semantic_ids.export.io import read_export
from semantic_ids.stages.encode import encode_all
from semantic_ids.stages.warm.algorithms import (
    align_levels, anchor_codes, carry_over_counter, common_rows, kept_shares, matching, sticky_codes,
)

N = 700
OLD_SHARE = 0.8


def hierarchical_embeddings(n, dim=32, branching=(8, 6, 4), scales=(1.0, 0.45, 0.2), noise=0.05, seed=0):
    """Unit vectors around a tree of centres (topic > subtopic > leaf), (n, dim) float32:
    codes at every level mean something, as in a real catalog."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim))
    parent = np.zeros(n, dtype=np.int64)
    for b, s in zip(branching, scales):
        centres = rng.normal(size=(parent.max() + 1, b, dim)) * s
        child = rng.integers(0, b, n)
        x += centres[parent, child]
        parent = parent * b + child
    x += noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


CFG = BuildConfig().replace(
    model={"codebook_sizes": [8, 8, 8], "hidden_dims": [32]},
    train={"epochs": 6, "batch_size": 128, "restart_every": 2, "checkpoint_every": 0},
    embedding={"use_cache": False},
)


@pytest.fixture(scope="module")
def growth(tmp_path_factory):
    """An export of a seeded random 80% of the catalog; the whole catalog and its embeddings."""
    emb = hierarchical_embeddings(N)
    df = pd.DataFrame({"item_id": [f"i{i:05d}" for i in range(N)], "title": ["t"] * N})
    old = np.sort(np.random.default_rng(0).permutation(N)[: int(OLD_SHARE * N)])
    out = SemanticIDs(CFG, show_progress=False).fit(emb[old], ids=df.iloc[old]["item_id"].to_numpy()).save(tmp_path_factory.mktemp("g") / "old")
    return out, df, emb, old


@pytest.fixture(scope="module")
def warm(growth):
    out, df, emb, _ = growth
    return SemanticIDs(CFG, show_progress=False).fit(emb, ids=df["item_id"].to_numpy(), previous=out)


def test_warm_rebuild_keeps_most_ids(growth, warm):
    out, df, emb, old = growth
    prev = read_export(out)
    fresh = SemanticIDs(CFG, show_progress=False).fit(emb, ids=df["item_id"].to_numpy())
    row = common_rows(df["item_id"].to_numpy(dtype=object), prev.ids)
    kept_warm = kept_shares(warm.codes_, row, prev.codes)
    kept_fresh = kept_shares(fresh.codes_, row, prev.codes)
    assert kept_warm["common_items"] == len(old)
    assert kept_warm["kept_prefix"][0] >= 0.97
    # a fresh build renumbers codes; the warm start keeps most of them (full IDs included)
    assert kept_warm["kept_full_id"] >= 0.9 and kept_fresh["kept_full_id"] <= 0.1
    assert all(w >= f for w, f in zip(kept_warm["kept_prefix"], kept_fresh["kept_prefix"]))
    assert warm.metrics_["warm_start"]["kept_full_id"] == kept_warm["kept_full_id"]
    assert warm.metrics_["warm_start"]["new_items"] == N - len(old)
    # still unique IDs, and quality no worse than a fresh build's by much
    assert len(np.unique(warm.codes_, axis=0)) == N
    assert warm.metrics_["collision_rate"] <= fresh.metrics_["collision_rate"] + 0.1


def test_saved_model_agrees_with_the_codes(growth, warm, tmp_path):
    """New items get the saved model's own codes; an old item's codes are the model's,
    or, level by level, its old code where that one is nearly as close (hysteresis)."""
    out, df, emb, old = growth
    prev = read_export(out)
    exp = read_export(warm.save(tmp_path / "w"))
    model_codes = encode_all(exp.model, torch.from_numpy(emb)).numpy()
    codes = exp.codes[:, :-1]
    is_old = np.zeros(N, dtype=bool)
    is_old[old] = True
    assert np.array_equal(codes[~is_old], model_codes[~is_old])
    differs = (codes != model_codes).any(1)
    assert warm.metrics_["warm_start"]["items_kept_off_nearest"] == int(differs.sum())
    # where an old item's codes are not the model's, they are (a prefix of) its old codes
    old_codes = prev.codes[:, :-1]
    first_off = np.argmax(codes[old] != model_codes[old], axis=1)
    for i in np.flatnonzero(differs[old]):
        assert codes[old][i, first_off[i]] == old_codes[i, first_off[i]]


def test_sticky_codes_without_margin_are_the_model_codes(growth):
    out, df, emb, old = growth
    prev = read_export(out)
    x = torch.from_numpy(emb)
    anchor = anchor_codes(df["item_id"].to_numpy(dtype=object), prev)
    assert np.array_equal(sticky_codes(prev.model, x, anchor, 0.0), encode_all(prev.model, x).numpy())
    # the old model and old codes: every old item keeps its codes at any margin
    assert np.array_equal(sticky_codes(prev.model, x[old], anchor[old], 1.0), prev.codes[:, :-1])


def test_warm_rebuild_is_deterministic(growth, warm, tmp_path):
    out, df, emb, _ = growth
    a = warm.save(tmp_path / "a")
    b = SemanticIDs(CFG, show_progress=False).fit(emb, ids=df["item_id"].to_numpy(), previous=out).save(tmp_path / "b")
    for name in ("semantic_ids.parquet", "model.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_rebuild_of_the_same_catalog_keeps_every_id(growth, tmp_path):
    """Nothing new, nothing changed: every ID survives (codes aligned, counters carried over)."""
    out, df, emb, old = growth
    prev = read_export(out)
    again = SemanticIDs(CFG, show_progress=False).fit(emb[old], ids=df.iloc[old]["item_id"].to_numpy(), previous=out)
    assert again.metrics_["warm_start"]["kept_prefix"][0] >= 0.97
    assert again.metrics_["warm_start"]["kept_full_id"] >= 0.95
    assert np.array_equal(again.ids_, prev.ids)


def test_cli_rebuild_in_place_then_diff(growth, tmp_path, capsys):
    import json
    import shutil

    out, df, emb, old = growth
    d = tmp_path / "ids"
    shutil.copytree(out, d)
    df.to_csv(tmp_path / "all.csv", index=False)
    np.save(tmp_path / "all.npy", emb)
    shutil.copytree(out, tmp_path / "before")
    args = ["build", "--catalog", str(tmp_path / "all.csv"), "--embeddings", str(tmp_path / "all.npy"), "--out", str(d),
            "--previous", str(d), "--epochs", "6", "--no-progress"]
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[model]\ncodebook_sizes = [8, 8, 8]\nhidden_dims = [32]\n[train]\nbatch_size = 128\n'
                        'restart_every = 2\ncheckpoint_every = 0\n')
    assert main([*args, "--config", str(cfg_file)]) == 0
    capsys.readouterr()
    assert main(["diff", str(tmp_path / "before"), str(d), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n_common"] == len(old) and rep["n_added"] == N - len(old) and rep["n_removed"] == 0
    assert rep["prefix_changed"][0] <= 0.03
    assert rep["full_id_changed"] <= 0.1


def test_previous_errors_name_the_path_before_training(growth, tmp_path, monkeypatch):
    import semantic_ids.runners.estimator as api

    out, df, emb, _ = growth

    def no_training(*a, **k):
        raise AssertionError("trained despite a bad previous export")

    monkeypatch.setattr(api, "train_rqvae", no_training)
    missing = tmp_path / "nowhere"
    with pytest.raises(ExportError, match="nowhere"):
        SemanticIDs(CFG, show_progress=False).fit(emb, ids=df["item_id"].to_numpy(), previous=missing)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(ExportError, match="foreign.*not a semantic-ids export"):
        SemanticIDs(CFG, show_progress=False).fit(emb, ids=df["item_id"].to_numpy(), previous=foreign)
    with pytest.raises(ValueError, match=f"{out}.*dim 32.*dim 16"):
        SemanticIDs(CFG, show_progress=False).fit(emb[:, :16].copy(), ids=df["item_id"].to_numpy(), previous=out)
    other = CFG.replace(model={"codebook_sizes": [8, 8, 4]})
    with pytest.raises(ValueError, match="codebook_sizes"):
        SemanticIDs(other, show_progress=False).fit(emb, ids=df["item_id"].to_numpy(), previous=out)


def test_cli_previous_errors(growth, tmp_path, capsys):
    out, df, emb, _ = growth
    df.to_csv(tmp_path / "all.csv", index=False)
    base = ["build", "--catalog", str(tmp_path / "all.csv"), "--out", str(tmp_path / "new")]
    assert main([*base, "--previous", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main([*base, "--previous", str(out), "--engine", "ray"]) == 2
    assert "(--previous) works with the local engine only" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


# -- the pieces, on hand-made inputs -------------------------------------------------------


def test_carry_over_keeps_numbers_of_unchanged_items():
    old_ids = np.array(["a", "b", "c", "d"], dtype=object)
    old = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [1, 1, 0]])  # a, b, c collided on (0, 0)
    ids = np.array(["a", "c", "d", "e", "f"], dtype=object)  # b removed; e, f new
    raw = np.array([[0, 0], [0, 0], [0, 0], [0, 0], [1, 1]])  # d moved into (0, 0)
    res = carry_over_counter(raw, ids, old_ids, old)
    # a and c keep 0 and 2; d (moved) and e (new) take the free 1 and 3 in id order; f takes 0
    assert res.codes[:, -1].tolist() == [0, 2, 1, 3, 0]
    assert res.n_collided_items == 4 and res.largest_group == 4
    assert len(np.unique(res.codes, axis=0)) == len(ids)


def test_carry_over_without_previous_items_is_the_counter_level():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 3, (200, 2))
    ids = np.array([f"x{i}" for i in rng.permutation(200)], dtype=object)
    res = carry_over_counter(raw, ids, np.array(["zz"], dtype=object), np.array([[0, 0, 0]]))
    ref = resolve_counter(raw, ids)
    assert np.array_equal(res.codes, ref.codes)
    assert (res.n_collided_items, res.largest_group) == (ref.n_collided_items, ref.largest_group)


def test_nth_free():
    assert [nth_free(np.array([0, 2, 5]), j) for j in range(4)] == [1, 3, 4, 6]
    assert nth_free(np.array([], dtype=np.int64), 3) == 3


def test_matching_recovers_a_permutation():
    rng = np.random.default_rng(0)
    old = rng.integers(0, 6, 300)
    perm = rng.permutation(6)  # old code -> new code
    new = perm[old]
    new[:20] = rng.integers(0, 6, 20)  # some noise
    back = matching(old, new, 6)
    assert np.array_equal(back[perm], np.arange(6))


def test_align_levels_undoes_a_renumbering(growth):
    out, df, emb, old = growth
    prev = read_export(out)
    x = torch.from_numpy(emb[old])
    model = copy.deepcopy(prev.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.first_codebook.copy_(model.first_codebook[torch.randperm(8, generator=g)])
        for book in model.quantizer.codebooks:
            book.data.copy_(book.data[torch.randperm(8, generator=g)])
    assert not np.array_equal(encode_all(model, x).numpy(), prev.codes[:, :-1])
    align_levels(model, prev.model, x, prev.codes[:, :-1])
    assert np.array_equal(encode_all(model, x).numpy(), prev.codes[:, :-1])


def test_train_from_a_previous_model_without_epochs_keeps_it(growth):
    """init_from alone (no anchors, no epochs): the previous model's weights, centroids and codes."""
    from semantic_ids.stages.train import train_rqvae

    out, df, emb, old = growth
    prev = read_export(out)
    cfg = prev.config
    res = train_rqvae(emb, cfg.model, cfg.train.__class__(epochs=0), init_from=prev.model, show_progress=False)
    for name, value in prev.model.state_dict().items():
        if name != "latent_weight":  # refitted on the new items after training
            assert torch.equal(res.model.state_dict()[name], value), name
    assert np.array_equal(encode_all(res.model, torch.from_numpy(emb[old])).numpy(), prev.codes[:, :-1])


@pytest.mark.parametrize("sample", [None, 300])
def test_streaming_warm_start_gives_the_in_memory_ids(growth, warm, tmp_path, sample):
    """The streaming build warm-starts with the same stage functions: on the same
    embeddings, config and seed it gives the in-memory warm start's IDs (its training
    sample and alignment sample both hold every old item when ``max_train_items`` is
    unset). With a smaller sample it still keeps most IDs."""
    from semantic_ids.stages.shards import write_embedding_shards
    from semantic_ids.runners.streaming import build_streaming

    out, df, emb, old = growth
    ids = df["item_id"].to_numpy(dtype=object)
    write_embedding_shards(tmp_path / "emb", ids, emb, rows_per_shard=256)
    cfg = CFG.replace(train={"max_train_items": sample})
    res = build_streaming(tmp_path / "new", embeddings=tmp_path / "emb", config=cfg, previous=out, batch_rows=200,
                          partitions=3, work_dir=tmp_path / "w", show_progress=False)
    got = read_export(res.export_dir)
    order = pd.Index(got.ids).get_indexer(ids)
    ws = res.metrics["warm_start"]
    assert ws["new_items"] == N - len(old) and ws["common_items"] == len(old)
    if sample is None:
        ref = warm  # trained on every item too: CFG's sample size exceeds N
        assert np.array_equal(got.codes[order], ref.codes_)
        assert ws["kept_full_id"] == ref.metrics_["warm_start"]["kept_full_id"]
        assert ws["items_kept_off_nearest"] == ref.metrics_["warm_start"]["items_kept_off_nearest"]
        assert res.metrics["collision_level_size"] == ref.metrics_["collision_level_size"]
    else:
        assert ws["kept_prefix"][0] >= 0.97 and ws["kept_full_id"] >= 0.8
    assert len(np.unique(got.codes, axis=0)) == N


def test_warm_start_refuses_other_experiment_switches(growth):
    """The model-shaping switches of [experimental] belong to the model: a warm start keeps them."""
    from semantic_ids.config import ExperimentalConfig
    from semantic_ids.stages.train import train_rqvae

    out, df, emb, old = growth
    prev = read_export(out)
    with pytest.raises(ValueError, match=r"experimental\.layer_norm_residuals=True \(previous False\)"):
        train_rqvae(emb, prev.config.model, prev.config.train.__class__(epochs=0), init_from=prev.model, show_progress=False,
                    experimental=ExperimentalConfig(layer_norm_residuals=True))
