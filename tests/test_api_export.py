import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from semantic_ids import NotFittedError, SemanticIDs, __version__, build
from semantic_ids.export.io import ExportError, read_export, verify_export
from semantic_ids.export.tokens import parse_sid


@pytest.fixture
def fitted(tiny_fitted):
    """The session's fitted ``small_catalog`` (``tiny_config``); tests only read it and save it."""
    return tiny_fitted


def test_fit_gives_unique_ids_for_every_item(fitted, small_catalog):
    assert list(fitted.ids_) == small_catalog["item_id"].tolist()
    assert fitted.codes_.shape == (len(small_catalog), 4)
    assert len(np.unique(fitted.codes_, axis=0)) == len(small_catalog)
    assert fitted.metrics_["unique_after_resolution"]
    # the raw codes are the first levels of the resolved ones
    assert np.array_equal(fitted.codes_[:, :3], fitted.raw_codes_)


def test_metrics_are_complete(fitted):
    m = fitted.metrics_
    for key in ["reconstruction_mse", "codes_used", "perplexity", "collision_rate", "largest_group", "stages", "n_empty_text"]:
        assert key in m
    assert set(m["stages"]) >= {"train", "encode", "resolve"}
    for s in m["stages"].values():
        assert s["seconds"] >= 0 and s["peak_rss_mb"] > 0
    assert 0 <= m["collision_rate"] < 1


def test_export_schema_and_metadata(fitted, tmp_path):
    out = fitted.save(tmp_path / "export")
    for name in ["semantic_ids.parquet", "model.safetensors", "config.json", "metrics.json", "manifest.json"]:
        assert (out / name).exists(), name
    table = pq.read_table(out / "semantic_ids.parquet")
    assert table.column_names == ["item_id", "codes", "level_0", "level_1", "level_2", "level_3", "semantic_id"]
    df = table.to_pandas()
    assert df["item_id"].tolist() == list(fitted.ids_)
    codes = np.stack(df["codes"].to_numpy())
    assert np.array_equal(codes, fitted.codes_)
    for i in range(4):
        assert np.array_equal(df[f"level_{i}"].to_numpy(), codes[:, i])
    assert [parse_sid(s) for s in df["semantic_id"]] == [tuple(c) for c in codes.tolist()]
    assert df["semantic_id"].is_unique
    meta = json.loads(table.schema.metadata[b"semantic_ids"])
    assert meta["library_version"] == __version__
    assert meta["config"]["model"]["codebook_sizes"] == [16, 16, 16] and "codebook_sizes" not in meta
    assert meta["embedding_model"] == "all-MiniLM-L6-v2"
    assert meta["config"]["model"]["latent_dim"] == 8
    metrics = json.loads((out / "metrics.json").read_text())
    assert "export" in metrics["stages"]


def test_save_load_round_trip_gives_identical_codes(fitted, small_embeddings, tmp_path):
    out = fitted.save(tmp_path / "e")
    loaded = SemanticIDs.load(out)
    assert np.array_equal(loaded.codes_, fitted.codes_)
    assert list(loaded.ids_) == list(fitted.ids_)
    assert np.array_equal(loaded.transform(small_embeddings), fitted.raw_codes_)
    assert loaded.config_ == fitted.config_


def test_same_seed_gives_byte_identical_parquet(small_catalog, small_embeddings, tiny_config, tmp_path):
    a = SemanticIDs(tiny_config, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy()).save(tmp_path / "a")
    b = SemanticIDs(tiny_config, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy()).save(tmp_path / "b")
    assert (a / "semantic_ids.parquet").read_bytes() == (b / "semantic_ids.parquet").read_bytes()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_failed_run_leaves_previous_export_untouched(fitted, small_catalog, small_embeddings, tiny_config, tmp_path, monkeypatch):
    out = fitted.save(tmp_path / "e")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save", boom)  # the model's file, halfway through the export
    other = SemanticIDs(tiny_config.replace(seed=5), show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy())
    with pytest.raises(OSError, match="disk full"):
        other.save(out)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]


def test_corrupted_export_is_detected(fitted, tmp_path):
    out = fitted.save(tmp_path / "e")
    p = out / "semantic_ids.parquet"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="semantic_ids.parquet.*checksum"):
        read_export(out)


def test_incompatible_version_is_refused(fitted, tmp_path):
    out = fitted.save(tmp_path / "e")
    m = json.loads((out / "manifest.json").read_text())
    m["format_version"] = 999
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportError, match="format version 999"):
        verify_export(out)


def _as_older_release(out, edit) -> None:
    """Rewrite an export's saved config with ``edit(model_section)`` and re-sign it,
    as an earlier library version would have written it."""
    import hashlib

    info = json.loads((out / "config.json").read_text())
    edit(info["config"]["model"])
    (out / "config.json").write_text(json.dumps(info, indent=2))
    manifest = json.loads((out / "manifest.json").read_text())
    data = (out / "config.json").read_bytes()
    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "saved_as, written_as, loads_as",
    [
        ("latent", None, "latent"),  # before model.first_level existed: TIGER's all-latent model
        ("progressive", "kmeans", "progressive"),  # one release called progressive-dimension k-means "kmeans"
    ],
)
def test_exports_of_earlier_releases_load_as_the_model_they_hold(
    small_catalog, small_embeddings, tiny_config, tmp_path, saved_as, written_as, loads_as
):
    cfg = tiny_config.replace(model={"first_level": saved_as})
    sid = SemanticIDs(cfg, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy())
    out = sid.save(tmp_path / "old")

    def edit(model: dict) -> None:
        if written_as is None:
            del model["first_level"]
        else:
            model["first_level"] = written_as

    _as_older_release(out, edit)
    back = SemanticIDs.load(out)
    assert back.config.model.first_level == loads_as
    assert np.array_equal(back.transform(small_embeddings), sid.transform(small_embeddings))


def test_exports_record_no_machine_local_settings(small_catalog, small_embeddings, tiny_config, tmp_path):
    from semantic_ids.config import machine_local_keys

    cfg = tiny_config.replace(embedding={"device": "cpu", "flush_every": 99}, train={"checkpoint_every": 0})
    out = SemanticIDs(cfg, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy()).save(tmp_path / "e")
    saved = json.loads((out / "config.json").read_text())["config"]
    meta = json.loads(pq.read_schema(out / "semantic_ids.parquet").metadata[b"semantic_ids"])["config"]
    assert saved == meta == cfg.portable_dict()
    for section, keys in machine_local_keys().items():
        assert not set(keys) & set(saved[section])


def test_exports_with_experiment_switches_in_their_old_place_load(small_embeddings, tiny_config, tmp_path):
    """Before the [experimental] section, the switches lived in [model] / [train], and
    machine-local settings were saved: such an export loads as the model it holds."""
    import hashlib

    from semantic_ids.config import ExperimentalConfig
    from semantic_ids.export.io import write_export
    from semantic_ids.stages.encode import encode_all
    from semantic_ids.stages.train import train_rqvae

    exp = ExperimentalConfig(layer_norm_residuals=True, normalize_latent=True, progressive=True, uniformity_weight=0.05)
    cfg = tiny_config.replace(experimental=exp)
    model = train_rqvae(small_embeddings, cfg.model, cfg.train, seed=0, show_progress=False, experimental=exp).model
    codes = encode_all(model, torch.from_numpy(small_embeddings)).numpy()
    ids = np.array([f"i{i}" for i in range(len(codes))], dtype=object)
    codes = np.column_stack([codes, np.zeros(len(codes), dtype=np.int64)])
    out = write_export(tmp_path / "old", config=cfg, model=model, metrics={}, ids=ids, codes=codes)

    info = json.loads((out / "config.json").read_text())
    old = info["config"]
    switches = old.pop("experimental")
    old["model"].update(layer_norm_residuals=True, normalize_latent=True)
    old["train"].update({k: switches[k] for k in ("uniformity_weight", "uniformity_t", "progressive")}, checkpoint_every=10)
    old["embedding"].update(device="cuda:3", cache_dir="/elsewhere", use_cache=False, flush_every=5)
    (out / "config.json").write_text(json.dumps(info, indent=2))
    manifest = json.loads((out / "manifest.json").read_text())
    data = (out / "config.json").read_bytes()
    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (out / "manifest.json").write_text(json.dumps(manifest))

    back = read_export(out)
    assert back.config == cfg and back.config.experimental == exp
    assert back.config.embedding.device == "cpu" and back.config.embedding.use_cache  # this machine's, not the saved ones
    assert back.model.quantizer.layer_norm and back.model.experimental == exp
    assert np.array_equal(encode_all(back.model, torch.from_numpy(small_embeddings)).numpy(), codes[:, :-1])


def test_export_refuses_a_model_built_without_the_configs_switches(small_embeddings, tiny_config, tmp_path):
    from semantic_ids.export.io import export_info
    from semantic_ids.stages.train import train_rqvae

    model = train_rqvae(small_embeddings, tiny_config.model, tiny_config.train, seed=0, show_progress=False).model
    cfg = tiny_config.replace(experimental={"normalize_latent": True})
    with pytest.raises(ValueError, match="pass config.experimental"):
        export_info(cfg, model, len(small_embeddings), model.n_levels + 1)


def test_missing_export_dir(tmp_path):
    with pytest.raises(ExportError, match="not found"):
        SemanticIDs.load(tmp_path / "nope")


def test_not_fitted_errors():
    with pytest.raises(NotFittedError, match="fit"):
        SemanticIDs().transform(np.zeros((1, 4), dtype=np.float32))


def test_transform_rejects_wrong_dimension(fitted):
    with pytest.raises(ValueError, match="dim 5"):
        fitted.transform(np.zeros((2, 5), dtype=np.float32))


def test_embeddings_shape_mismatch(small_catalog, tiny_config):
    with pytest.raises(ValueError, match="n_items=400"):
        SemanticIDs(tiny_config, show_progress=False).fit(np.zeros((3, 8), dtype=np.float32), ids=small_catalog["item_id"].to_numpy())


def test_nan_embeddings_name_the_items(small_catalog, small_embeddings, tiny_config):
    emb = small_embeddings.copy()
    emb[7, 0] = np.nan
    with pytest.raises(ValueError, match="item-0007"):
        SemanticIDs(tiny_config, show_progress=False).fit(emb, ids=small_catalog["item_id"].to_numpy())


def test_embeddings_from_parquet_keyed_by_id(small_catalog, small_embeddings, tiny_config, tmp_path):
    shuffled = np.random.default_rng(0).permutation(len(small_catalog))
    pd.DataFrame(
        {"item_id": small_catalog["item_id"].to_numpy()[shuffled], "embedding": list(small_embeddings[shuffled])}
    ).to_parquet(tmp_path / "emb.parquet")
    a = build(tmp_path / "a", catalog=small_catalog, embeddings=tmp_path / "emb.parquet", config=tiny_config, show_progress=False).estimator
    b = SemanticIDs(tiny_config, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy())
    assert np.array_equal(a.codes_, b.codes_)


def test_collision_ids_do_not_depend_on_catalog_order(small_catalog, small_embeddings, tiny_config):
    a = SemanticIDs(tiny_config, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy())
    # Same model applied to a reversed catalog: the counter level follows item id order.
    from semantic_ids.stages.resolve import resolve

    rev = resolve(a.raw_codes_[::-1], a.ids_[::-1]).codes
    assert np.array_equal(rev[::-1], a.codes_)


def test_rq_kmeans_method_exports_and_loads(small_catalog, small_embeddings, tmp_path):
    from semantic_ids import BuildConfig
    from semantic_ids.lookup import SemanticIDLookup

    cfg = BuildConfig().replace(model={"method": "rq-kmeans", "codebook_sizes": [16, 16, 16]}, embedding={"use_cache": False})
    sid = SemanticIDs(cfg, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy())
    out = sid.save(tmp_path / "rqk")
    loaded = SemanticIDs.load(out)
    assert np.array_equal(loaded.transform(small_embeddings), sid.raw_codes_)
    lk = SemanticIDLookup.load(out)
    nb = lk.search_embeddings(small_embeddings[:3], k=2)
    assert np.array_equal(nb.codes, sid.raw_codes_[:3])
    assert sid.metrics_["training"]["epochs"] == 0


@pytest.mark.parametrize("n", [1, 5])
def test_catalog_smaller_than_codebook(n, tmp_path):
    from semantic_ids import BuildConfig

    emb = np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)
    df = pd.DataFrame({"item_id": list(range(n)), "title": [f"t{i}" for i in range(n)]})
    cfg = BuildConfig().replace(train={"epochs": 3}, embedding={"use_cache": False})
    sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=df["item_id"].to_numpy())
    assert len(np.unique(sid.codes_, axis=0)) == n
    out = sid.save(tmp_path / "e")
    assert SemanticIDs.load(out).codes_.shape == (n, 4)


def test_zero_norm_embeddings_are_accepted(small_catalog, small_embeddings, tiny_config):
    # Documented outcome: a zero vector is a valid point (e.g. an empty text under
    # some models); it gets codes like any other item and a unique ID.
    emb = small_embeddings.copy()
    emb[:3] = 0.0
    sid = SemanticIDs(tiny_config, show_progress=False).fit(emb, ids=small_catalog["item_id"].to_numpy())
    assert len(np.unique(sid.codes_, axis=0)) == len(small_catalog)
    assert np.array_equal(sid.raw_codes_[0], sid.raw_codes_[1])  # identical inputs, identical codes


@pytest.mark.slow
def test_very_long_text_is_truncated_by_the_model(tmp_path):
    from semantic_ids.config import EmbeddingConfig
    from semantic_ids.stages.embed import embed_texts

    long = "lipstick " * 200_000  # ~1.8 MB of text
    emb, _ = embed_texts([long, "lipstick"], EmbeddingConfig(use_cache=False), show_progress=False)
    assert emb.shape == (2, 384) and np.isfinite(emb).all()


def test_balanced_strategy_reduces_collisions(small_catalog, small_embeddings, tiny_config):
    cfg = tiny_config.replace(collision={"strategy": "balanced"})
    base = SemanticIDs(tiny_config, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy())
    bal = SemanticIDs(cfg, show_progress=False).fit(small_embeddings, ids=small_catalog["item_id"].to_numpy())
    m = bal.metrics_
    assert m["collision_rate_before_resolution"] == base.metrics_["collision_rate_before_resolution"] > 0
    assert m["collision_rate_after_rebalancing"] < m["collision_rate_before_resolution"]
    assert m["items_moved_by_rebalancing"] > 0
    assert len(np.unique(bal.codes_, axis=0)) == len(small_catalog)
    # only the last model level moves
    assert np.array_equal(bal.codes_[:, :2], base.codes_[:, :2])


def test_estimator_contract(small_catalog, small_embeddings, tiny_config):
    """fit, transform and fit_transform agree: fit_transform(X) is fit(X).transform(X), the
    model's nearest codes, which are the exported codes before the collision level."""
    ids = small_catalog["item_id"].to_numpy()
    est = SemanticIDs(tiny_config, show_progress=False)
    codes = est.fit_transform(small_embeddings, ids=ids)
    again = SemanticIDs(tiny_config, show_progress=False).fit(small_embeddings, ids=ids)
    assert codes.shape == (len(ids), len(est.model_.codebook_sizes))
    assert np.array_equal(codes, again.transform(small_embeddings))
    assert np.array_equal(codes, est.raw_codes_) and np.array_equal(codes, est.codes_[:, :-1])
    assert len(np.unique(est.codes_, axis=0)) == len(ids)  # the resolved IDs are unique
    # ids default to row numbers; y is ignored (scikit-learn convention)
    plain = SemanticIDs(tiny_config, show_progress=False).fit(small_embeddings, None)
    assert np.array_equal(plain.ids_, np.arange(len(ids))) and np.array_equal(plain.raw_codes_, codes)
    with pytest.raises(TypeError, match=r"semantic_ids.build\(export_dir, catalog=...\)"):  # a catalog is the step in front
        SemanticIDs(tiny_config).fit(small_catalog)


def test_every_public_entry_point_imports_from_the_package():
    import semantic_ids

    import importlib

    for name in semantic_ids.__all__:  # each name is the object its module defines, not a stand-in
        if name == "__version__":
            assert semantic_ids.__version__ == importlib.import_module("semantic_ids.version").__version__
            continue
        home = importlib.import_module(f"semantic_ids.{semantic_ids._LAZY[name]}")
        assert getattr(semantic_ids, name) is getattr(home, name), name
        assert callable(getattr(semantic_ids, name)), name
    for name in ("build", "SemanticIDs", "SemanticIDLookup", "build_streaming", "assign_new_items", "churn", "read_export"):
        assert name in semantic_ids.__all__, name
