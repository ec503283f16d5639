"""Tests for semantic_ids.config: round trips, TOML, key/type/range validation."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from semantic_ids.config import (
    DEFAULT_MODEL,
    BuildConfig,
    CatalogConfig,
    CollisionConfig,
    ConfigError,
    EmbeddingConfig,
    ExperimentalConfig,
    ModelConfig,
    TrainConfig,
    machine_local_keys,
)


def _custom() -> BuildConfig:
    """A config whose every section differs from the defaults."""
    return BuildConfig(
        catalog=CatalogConfig(id_column="sku", text_columns=("title", "brand"), template="{title} / {brand}", list_separator="|"),
        embedding=EmbeddingConfig(model="some/model", batch_size=8, device="cuda", max_seq_length=128, cache_dir="/tmp/x", use_cache=False),
        model=ModelConfig(codebook_sizes=(8, 4), latent_dim=16, hidden_dims=(64,), beta=0.5, center_input=False),
        train=TrainConfig(epochs=3, batch_size=32, lr=0.01, weight_decay=1e-4, kmeans_init=False, kmeans_iters=5,
                          dead_code_restart=False, restart_every=2, max_train_items=100, checkpoint_every=3),
        collision=CollisionConfig(strategy="counter"),
        experimental=ExperimentalConfig(layer_norm_residuals=True, normalize_latent=True, uniformity_weight=0.1,
                                        uniformity_t=3.0, progressive=True),
        seed=7,
    )


# --------------------------------------------------------------------------- round trips


def test_defaults():
    cfg = BuildConfig()
    assert cfg.catalog.id_column == "item_id"
    assert cfg.catalog.text_columns is None
    assert cfg.embedding.model == DEFAULT_MODEL
    assert cfg.model.codebook_sizes is None  # sized from the catalog at build time (semantic_ids.model.sizing)
    assert cfg.collision.strategy == "counter"
    assert cfg.seed == 0


@pytest.mark.parametrize("cfg", [BuildConfig(), _custom()], ids=["default", "custom"])
def test_dict_round_trip(cfg):
    data = cfg.to_dict()
    back = BuildConfig.from_dict(data)
    assert back == cfg
    assert back.to_dict() == data  # machine-local fields too (equality ignores them)


@pytest.mark.parametrize("cfg", [BuildConfig(), _custom()], ids=["default", "custom"])
def test_json_round_trip(cfg):
    # Artifacts store the dict as JSON: tuples become lists and must come back as tuples.
    data = json.loads(json.dumps(cfg.to_dict()))
    back = BuildConfig.from_dict(data)
    assert back == cfg and hash(back) == hash(cfg)
    assert back.to_dict() == cfg.to_dict()


def test_lists_come_back_as_tuples():
    back = BuildConfig.from_dict(json.loads(json.dumps(_custom().to_dict())))
    assert back.model.codebook_sizes == (8, 4) and isinstance(back.model.codebook_sizes, tuple)
    assert back.catalog.text_columns == ("title", "brand") and isinstance(back.catalog.text_columns, tuple)
    assert isinstance(back.model.hidden_dims, tuple)
    # Built directly from lists too: normalised, so the config stays hashable.
    direct = ModelConfig(codebook_sizes=[8, 4], hidden_dims=[16])  # type: ignore[arg-type]
    assert direct.codebook_sizes == (8, 4) and isinstance(direct.hidden_dims, tuple)
    hash(direct)


def test_to_dict_is_plain():
    data = _custom().to_dict()
    assert set(data) == {"catalog", "embedding", "model", "train", "collision", "collab", "experimental", "seed"}
    assert data["model"]["codebook_sizes"] == [8, 4]
    assert data["catalog"]["text_columns"] == ["title", "brand"]
    assert data["train"]["max_train_items"] == 100
    # Everything is JSON-serialisable (no dataclasses, no tuples).
    json.dumps(data)


def test_partial_dict_fills_defaults():
    cfg = BuildConfig.from_dict({"train": {"epochs": 5}})
    assert cfg.train.epochs == 5
    assert cfg.train.batch_size == TrainConfig().batch_size
    assert cfg.model == ModelConfig()
    assert BuildConfig.from_dict({}) == BuildConfig()


def test_int_accepted_for_float_field():
    cfg = BuildConfig.from_dict({"train": {"lr": 1}, "model": {"beta": 0}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.beta == 0.0 and isinstance(cfg.model.beta, float)
    assert isinstance(TrainConfig(lr=1).lr, float)


def test_optional_fields_accept_none():
    cfg = BuildConfig.from_dict({"train": {"max_train_items": None}, "embedding": {"max_seq_length": None}})
    assert cfg.train.max_train_items is None
    assert cfg.embedding.max_seq_length is None


# --------------------------------------------------------------------------- TOML


def test_from_toml(tmp_path):
    path = tmp_path / "build.toml"
    path.write_text(
        'seed = 3\n'
        '[catalog]\nid_column = "sku"\ntext_columns = ["title", "brand"]\n'
        '[model]\ncodebook_sizes = [16, 16]\nbeta = 0.5\n'
        '[train]\nepochs = 4\nlr = 2e-3\n',
        encoding="utf-8",
    )
    cfg = BuildConfig.from_toml(path)
    assert cfg.seed == 3
    assert cfg.catalog.id_column == "sku"
    assert cfg.catalog.text_columns == ("title", "brand")
    assert cfg.model.codebook_sizes == (16, 16)
    assert cfg.train.epochs == 4
    assert cfg.train.lr == pytest.approx(2e-3)
    assert cfg.embedding == EmbeddingConfig()


def test_from_toml_accepts_str_path(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("seed = 1\n", encoding="utf-8")
    assert BuildConfig.from_toml(str(path)).seed == 1


def test_from_toml_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found.*nope.toml"):
        BuildConfig.from_toml(path)


def test_from_toml_invalid(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nepochs = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.toml.*not valid TOML"):
        BuildConfig.from_toml(path)


def test_from_toml_unknown_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepoch = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) in \[train\]: epoch"):
        BuildConfig.from_toml(path)


def test_from_toml_wrong_type(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[train]\nepochs = "ten"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"train\.epochs should be an integer, got 'ten'"):
        BuildConfig.from_toml(path)


# --------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): trian; known: .*train"):
        BuildConfig.from_dict({"trian": {"epochs": 3}})


def test_unknown_nested_key_names_section_and_key():
    with pytest.raises(ConfigError, match=r"in \[model\]: codebook_size\b"):
        BuildConfig.from_dict({"model": {"codebook_size": [4, 4]}})


def test_unknown_keys_all_listed_sorted():
    with pytest.raises(ConfigError, match=r"in \[train\]: aaa, zzz;"):
        BuildConfig.from_dict({"train": {"zzz": 1, "aaa": 2, "epochs": 3}})


# --------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"train": {"epochs": "10"}}, r"train\.epochs should be an integer, got '10'"),
        ({"train": {"epochs": 10.0}}, r"train\.epochs should be an integer, got 10\.0"),
        ({"train": {"epochs": True}}, r"train\.epochs should be an integer, got True"),
        ({"train": {"lr": "fast"}}, r"train\.lr should be a number, got 'fast'"),
        ({"train": {"lr": True}}, r"train\.lr should be a number, got True"),
        ({"train": {"kmeans_init": 1}}, r"train\.kmeans_init should be true or false, got 1"),
        ({"train": {"max_train_items": "all"}}, r"train\.max_train_items should be an integer, got 'all'"),
        ({"catalog": {"id_column": 3}}, r"catalog\.id_column should be a string, got 3"),
        ({"catalog": {"text_columns": "title"}}, r"catalog\.text_columns should be a list, got 'title'"),
        ({"catalog": {"text_columns": ["title", 2]}}, r"catalog\.text_columns\[1\] should be a string, got 2"),
        ({"model": {"codebook_sizes": [8, "8"]}}, r"model\.codebook_sizes\[1\] should be an integer, got '8'"),
        ({"model": {"codebook_sizes": 8}}, r"model\.codebook_sizes should be a list, got 8"),
        ({"embedding": {"use_cache": "yes"}}, r"embedding\.use_cache should be true or false, got 'yes'"),
        ({"seed": "0"}, r"^seed should be an integer, got '0'"),
        ({"train": 5}, r"^train should be a table/dict, got int"),
    ],
)
def test_wrong_type_names_dotted_field(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        BuildConfig.from_dict(data)


def test_from_dict_rejects_non_dict():
    with pytest.raises(ConfigError, match="config should be a table/dict, got list"):
        BuildConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"model": {"codebook_sizes": []}}, r"model\.codebook_sizes should list at least one level"),
        ({"model": {"codebook_sizes": [8, 1]}}, r"model\.codebook_sizes\[1\]=1 should be >= 2"),
        ({"model": {"latent_dim": 0}}, r"model\.latent_dim=0 should be >= 1"),
        ({"model": {"hidden_dims": [4, 0]}}, r"model\.hidden_dims\[1\]=0 should be >= 1"),
        ({"model": {"beta": -0.1}}, r"model\.beta=-0\.1 should be a finite number >= 0"),
        ({"train": {"epochs": -1}}, r"train\.epochs=-1 should be >= 0"),
        ({"train": {"batch_size": 0}}, r"train\.batch_size=0 should be >= 1"),
        ({"train": {"kmeans_iters": 0}}, r"train\.kmeans_iters=0 should be >= 1"),
        ({"train": {"restart_every": 0}}, r"train\.restart_every=0 should be >= 1"),
        ({"train": {"lr": 0}}, r"train\.lr=0\.0 should be a finite number > 0"),
        ({"train": {"max_train_items": 0}}, r"train\.max_train_items=0 should be >= 1"),
        ({"embedding": {"batch_size": 0}}, r"embedding\.batch_size=0 should be >= 1"),
        ({"collision": {"strategy": "suffix"}}, r"collision\.strategy='suffix' should be one of"),
        ({"seed": -1}, r"seed=-1 should be >= 0"),
        ({"model": {"first_level": "pca"}}, r"model\.first_level='pca' should be one of"),
        ({"model": {"first_level": "kmeans"}}, r'first_level="kmeans" was renamed "progressive"'),
        ({"model": {"codebook_sizes": [8]}}, r"first_level='bisecting' needs at least 2 levels"),
    ],
)
def test_range_validation(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        BuildConfig.from_dict(data)


def test_range_boundaries_accepted():
    cfg = BuildConfig.from_dict(
        {
            "model": {"codebook_sizes": [2], "first_level": "latent", "latent_dim": 1, "hidden_dims": [], "beta": 0.0},
            "train": {"epochs": 0, "batch_size": 1, "kmeans_iters": 1, "restart_every": 1, "max_train_items": 1},
            "embedding": {"batch_size": 1},
        }
    )
    assert cfg.model.codebook_sizes == (2,)
    assert cfg.train.epochs == 0


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match=r"train\.epochs=-5"):
        BuildConfig(train=TrainConfig(epochs=-5))


@pytest.mark.parametrize("field, value", [("lr", math.nan), ("lr", math.inf)])
def test_non_finite_lr_rejected(field, value):
    with pytest.raises(ConfigError, match=rf"train\.{field}"):
        BuildConfig.from_dict({"train": {field: value}})


# --------------------------------------------------------------------------- replace / frozen


def test_replace_section_dict_merges():
    base = _custom()
    new = base.replace(train={"epochs": 10})
    assert new.train.epochs == 10
    # Other fields of the section and other sections are kept.
    assert new.train.lr == base.train.lr
    assert new.model == base.model
    # The original is untouched.
    assert base.train.epochs == 3


def test_replace_scalar_and_dataclass():
    base = BuildConfig()
    assert base.replace(seed=5).seed == 5
    mc = ModelConfig(codebook_sizes=(4, 4))
    assert base.replace(model=mc).model == mc


def test_replace_validates():
    with pytest.raises(ConfigError, match=r"train\.epochs=-1"):
        BuildConfig().replace(train={"epochs": -1})
    with pytest.raises(ConfigError, match=r"in \[train\]: epoch\b"):
        BuildConfig().replace(train={"epoch": 1})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): bogus"):
        BuildConfig().replace(bogus=1)


@pytest.mark.parametrize(
    "obj, attr",
    [
        (BuildConfig(), "seed"),
        (CatalogConfig(), "id_column"),
        (EmbeddingConfig(), "model"),
        (ModelConfig(), "beta"),
        (TrainConfig(), "epochs"),
        (CollisionConfig(), "strategy"),
    ],
)
def test_frozen(obj, attr):
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attr, getattr(obj, attr))


def test_configs_hashable_and_equal_by_value():
    assert BuildConfig() == BuildConfig()
    assert hash(_custom()) == hash(_custom())
    assert BuildConfig() != BuildConfig(seed=1)


def test_rq_kmeans_config_checked_up_front():
    with pytest.raises(ConfigError, match=r"codebook_sizes\[0\]=100: rq-kmeans needs a power of two"):
        BuildConfig.from_dict({"model": {"method": "rq-kmeans", "codebook_sizes": [100, 256]}})
    with pytest.raises(ConfigError, match="do not apply to rq-kmeans"):
        BuildConfig.from_dict({"model": {"method": "rq-kmeans"}, "experimental": {"normalize_latent": True}})
    with pytest.raises(ConfigError, match="text_columns is empty"):
        BuildConfig.from_dict({"catalog": {"text_columns": []}})


# --------------------------------------------------------------------------- sections check themselves


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: TrainConfig(epochs=-1), r"^train\.epochs=-1 should be >= 0$"),
        (lambda: TrainConfig(lr="fast"), r"^train\.lr should be a number, got 'fast'$"),
        (lambda: ModelConfig(codebook_sizes=(8, 1)), r"^model\.codebook_sizes\[1\]=1 should be >= 2$"),
        (lambda: EmbeddingConfig(flush_every=0), r"^embedding\.flush_every=0 should be >= 1$"),
        (lambda: CatalogConfig(text_columns=()), r"^catalog\.text_columns is empty"),
        (lambda: CollisionConfig(strategy="x"), r"^collision\.strategy='x' should be one of"),
        (lambda: ExperimentalConfig(uniformity_weight=-1), r"^experimental\.uniformity_weight=-1\.0 should be a finite number >= 0$"),
        (lambda: ExperimentalConfig(uniformity_t=0), r"^experimental\.uniformity_t=0\.0 should be a finite number > 0$"),
    ],
)
def test_each_section_validates_itself(make, pattern):
    with pytest.raises(ConfigError, match=pattern):
        make()


def test_section_dict_round_trip_and_unknown_keys():
    t = TrainConfig(epochs=3, lr=2)
    assert TrainConfig.from_dict(t.to_dict()) == t
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) in \[experimental\]: bogus; known: layer_norm_residuals"):
        ExperimentalConfig.from_dict({"bogus": 1})


def test_dataclasses_replace_validates():
    with pytest.raises(ConfigError, match=r"train\.batch_size=0"):
        dataclasses.replace(TrainConfig(), batch_size=0)


def test_no_module_level_state():
    # Validation must not depend on a module-level flag (not thread-safe); nothing in the
    # config package is a mutable global.
    import semantic_ids.config as config_pkg
    from semantic_ids.config import build, section, sections

    for module in (config_pkg, build, section, sections):
        mutable = [k for k, v in vars(module).items() if not k.startswith("__") and isinstance(v, (bool, list, dict, set))]
        assert mutable == [], (module.__name__, mutable)


# --------------------------------------------------------------------------- experimental section


def test_experimental_defaults_off_and_from_toml(tmp_path):
    e = BuildConfig().experimental
    assert e == ExperimentalConfig()
    assert not (e.layer_norm_residuals or e.normalize_latent or e.progressive) and e.uniformity_weight == 0
    path = tmp_path / "c.toml"
    path.write_text("[experimental]\nlayer_norm_residuals = true\nuniformity_weight = 1\n", encoding="utf-8")
    cfg = BuildConfig.from_toml(path)
    assert cfg.experimental.layer_norm_residuals and cfg.experimental.uniformity_weight == 1.0


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("model", "layer_norm_residuals", True),
        ("model", "normalize_latent", False),
        ("train", "uniformity_weight", 0.1),
        ("train", "uniformity_t", 2.0),
        ("train", "progressive", True),
    ],
)
def test_moved_switch_in_old_place_says_where_it_went(section, key, value, tmp_path):
    pattern = rf"{section}\.{key} moved to experimental\.{key} \(TOML: \[experimental\]\)"
    with pytest.raises(ConfigError, match=pattern):
        BuildConfig.from_dict({section: {key: value}})
    with pytest.raises(ConfigError, match=pattern):
        BuildConfig().replace(**{section: {key: value}})
    path = tmp_path / "c.toml"
    path.write_text(f"[{section}]\n{key} = {json.dumps(value)}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=pattern):
        BuildConfig.from_toml(path)


# --------------------------------------------------------------------------- machine-local fields


def test_portable_dict_leaves_out_machine_local_fields():
    cfg = _custom()
    portable = cfg.portable_dict()
    assert machine_local_keys() == {"embedding": ("device", "cache_dir", "use_cache", "flush_every"), "train": ("checkpoint_every",)}
    for section, keys in machine_local_keys().items():
        for key in keys:
            assert key in cfg.to_dict()[section] and key not in portable[section]
    # Everything else is there, and it rebuilds the same build (machine-local fields take this machine's defaults).
    back = BuildConfig.from_dict(json.loads(json.dumps(portable)))
    assert back == cfg
    assert back.embedding.device == EmbeddingConfig().device and back.train.checkpoint_every == TrainConfig().checkpoint_every
    assert back.portable_dict() == portable


def test_machine_local_fields_take_no_part_in_equality():
    cfg = BuildConfig()
    local = cfg.replace(embedding={"device": "cuda", "cache_dir": "/x", "use_cache": False, "flush_every": 7},
                        train={"checkpoint_every": 0})
    assert local == cfg and hash(local) == hash(cfg)
    assert local.embedding.device == "cuda"
    assert cfg.replace(embedding={"batch_size": 8}) != cfg


def test_saved_configs_of_earlier_releases_are_upgraded():
    """What older exports hold: switches in [model]/[train], machine-local settings saved."""
    from semantic_ids.export.manifest import upgrade_config

    saved = {
        "model": {"first_level": "bisecting", "layer_norm_residuals": True, "normalize_latent": False},
        "train": {"epochs": 3, "progressive": True, "uniformity_weight": 0.5, "uniformity_t": 2.0, "checkpoint_every": 4},
        "embedding": {"model": "m", "device": "cuda", "cache_dir": "/c", "use_cache": False, "flush_every": 3},
    }
    before = json.dumps(saved, sort_keys=True)
    cfg = BuildConfig.from_dict(upgrade_config(saved))
    assert json.dumps(saved, sort_keys=True) == before  # the input is not changed
    assert cfg.experimental == ExperimentalConfig(layer_norm_residuals=True, progressive=True, uniformity_weight=0.5)
    assert cfg.train.epochs == 3 and cfg.embedding.model == "m"
    assert cfg.to_dict()["embedding"] == EmbeddingConfig(model="m").to_dict()
    assert cfg.train.checkpoint_every == TrainConfig().checkpoint_every
    # today's layout passes through unchanged
    assert upgrade_config(cfg.portable_dict()) == cfg.portable_dict()
