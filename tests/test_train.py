import dataclasses

import numpy as np
import pytest
import torch

from semantic_ids.config import ConfigError, ExperimentalConfig, ModelConfig, TrainConfig
from semantic_ids.stages.metrics import code_stats
from semantic_ids.model.rqvae import RQVAE
from semantic_ids.stages.encode import encode_all
from semantic_ids.stages.train import train_rqvae

from .conftest import ROOT, clustered_embeddings

MODEL = ModelConfig(codebook_sizes=(16, 16, 16), latent_dim=8, hidden_dims=(64, 32))
LATENT = dataclasses.replace(MODEL, first_level="latent")  # TIGER's all-latent model
PROGRESSIVE = dataclasses.replace(MODEL, first_level="progressive")  # the previous default
TRAIN = TrainConfig(epochs=12, batch_size=128, restart_every=4)
BOTH = pytest.mark.parametrize("model_cfg", [MODEL, PROGRESSIVE, LATENT], ids=["bisecting-first", "progressive-first", "latent"])


@BOTH
def test_training_is_deterministic(model_cfg):
    x = clustered_embeddings(300)
    a = train_rqvae(x, model_cfg, TRAIN, seed=3, show_progress=False)
    b = train_rqvae(x, model_cfg, TRAIN, seed=3, show_progress=False)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert a.history == b.history


def test_different_seed_gives_different_model():
    x = clustered_embeddings(300)
    a = train_rqvae(x, MODEL, TRAIN, seed=0, show_progress=False)
    b = train_rqvae(x, MODEL, TRAIN, seed=1, show_progress=False)
    assert not torch.equal(a.model.quantizer.codebooks[0], b.model.quantizer.codebooks[0])


@BOTH
def test_training_uses_codes_and_records_history(model_cfg):
    x = clustered_embeddings(600, clusters=40)
    res = train_rqvae(x, model_cfg, TRAIN, seed=0, show_progress=False)
    assert len(res.history) == TRAIN.epochs
    first, last = res.history[0], res.history[-1]
    assert set(first) >= {"epoch", "loss", "recon", "vq", "codes_used", "restarted"}
    assert "collision_rate" in last
    xt = torch.from_numpy(x)
    stats = code_stats(encode_all(res.model, xt).numpy(), MODEL.codebook_sizes)
    # k-means init + dead-code restarts + the final restart: every code of every level is used
    assert stats["codes_used"] == [16, 16, 16]
    assert stats["perplexity"][0] > 8
    # the final pass restarts a code that no item gets: kill one and it is some item's code again
    model, q = res.model, res.model.quantizer
    with torch.no_grad():
        z = model.encode_latent(xt, model.first_codes(xt) if model.kmeans_first else None)
        q.codebooks[-1].data[0] = 1e6  # nearest to nothing
        assert len(torch.unique(q.encode(z)[:, -1])) == q.codebook_sizes[-1] - 1
        restarted = q.restart_unused(z, generator=torch.Generator().manual_seed(0))
        assert restarted[:-1] == [0] * (len(restarted) - 1) and restarted[-1] >= 1
        assert [len(torch.unique(c)) for c in q.encode(z).T] == list(q.codebook_sizes)


def test_training_reduces_reconstruction_error():
    x = clustered_embeddings(500)
    res = train_rqvae(x, MODEL, TrainConfig(epochs=20, batch_size=128, restart_every=5), seed=0, show_progress=False)
    assert res.history[-1]["recon"] < res.history[0]["recon"]


def test_progressive_training_phases():
    x = clustered_embeddings(300)
    cfg = TrainConfig(epochs=9, batch_size=128)
    exp = ExperimentalConfig(progressive=True)
    res = train_rqvae(x, LATENT, cfg, seed=0, show_progress=False, experimental=exp)
    assert [h["levels"] for h in res.history] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert bool(res.model.quantizer.initialized.all())
    # the k-means first level is fitted before training: phases add the learned levels
    res = train_rqvae(x, MODEL, cfg, seed=0, show_progress=False, experimental=exp)
    assert [h["levels"] for h in res.history] == [2, 2, 2, 2, 3, 3, 3, 3, 3]
    assert bool(res.model.quantizer.initialized.all())


def test_train_on_sample():
    """``max_train_items=100`` trains on a seeded sample of 100 items: a dataset is asked for those
    rows alone, and an array gives the model exactly those rows (their mean, not all 500's)."""
    x = clustered_embeddings(500)
    cfg = TrainConfig(epochs=2, batch_size=64, max_train_items=100)

    class Rows:  # a dataset that reads only the rows it is asked for, as EmbeddingShards does
        taken = None

        def __len__(self):
            return len(x)

        def take(self, rows):
            Rows.taken = np.asarray(rows)
            return x[rows]

    from_rows = train_rqvae(Rows(), MODEL, cfg, seed=0, show_progress=False).model
    taken = Rows.taken
    assert len(taken) == 100 and len(np.unique(taken)) == 100 and np.all(np.diff(taken) > 0)
    res = train_rqvae(x, MODEL, cfg, seed=0, show_progress=False)
    assert torch.allclose(res.model.input_mean, torch.from_numpy(x[taken].mean(0)), atol=1e-6)
    assert not torch.allclose(res.model.input_mean, torch.from_numpy(x.mean(0)), atol=1e-4)
    assert torch.equal(from_rows.first_codebook, res.model.first_codebook)  # the same sample either way
    assert len(res.history) == 2
    assert encode_all(res.model, torch.from_numpy(x)).shape == (500, 3)


@BOTH
def test_encode_all_is_batch_size_independent(model_cfg):
    x = torch.from_numpy(clustered_embeddings(333))
    model = train_rqvae(x.numpy(), model_cfg, TrainConfig(epochs=3, batch_size=64), seed=0, show_progress=False).model
    assert torch.equal(encode_all(model, x), encode_all(model, x, batch_size=17))


@BOTH
def test_rqvae_state_dict_round_trip(model_cfg):
    x = torch.from_numpy(clustered_embeddings(100))
    m = train_rqvae(x.numpy(), model_cfg, TrainConfig(epochs=2, batch_size=64), seed=0, show_progress=False).model
    m2 = RQVAE(input_dim=x.shape[1], config=model_cfg)
    m2.load_state_dict(m.state_dict())
    m2.eval()
    assert torch.equal(m.encode(x), m2.encode(x))
    assert np.allclose(m.decode_codes(m.encode(x)).numpy(), m2.decode_codes(m2.encode(x)).numpy())


def test_rq_kmeans_matches_faiss_compute_codes():
    import faiss

    x = clustered_embeddings(2000, dim=16, clusters=30)
    cfg = ModelConfig(method="rq-kmeans", codebook_sizes=(16, 16, 16))
    res = train_rqvae(x, cfg, TrainConfig(), seed=3, show_progress=False)
    ours = encode_all(res.model, torch.from_numpy(x)).numpy()
    rq = faiss.ResidualQuantizer(16, 3, 4)
    rq.max_beam_size = 1
    rq.cp.seed = 3
    rq.train(x)
    packed = rq.compute_codes(x)  # 3 x 4 bits per row
    unpacked = np.zeros((len(x), 3), dtype=np.int64)
    for i, row in enumerate(packed):
        bs = faiss.BitstringReader(faiss.swig_ptr(row), len(row))
        unpacked[i] = [bs.read(4) for _ in range(3)]
    assert np.array_equal(ours, unpacked)
    assert len(res.history) == 0


def test_rq_kmeans_rejects_non_power_of_two():
    from semantic_ids.stages.train import residual_codebooks

    with pytest.raises(ConfigError, match="power of two"):  # the config refuses it up front
        ModelConfig(method="rq-kmeans", codebook_sizes=(10, 16))
    with pytest.raises(ValueError, match="power-of-two"):
        residual_codebooks(clustered_embeddings(100), (10, 16))


def test_experimental_switches_reach_the_model():
    x = clustered_embeddings(300)
    exp = ExperimentalConfig(layer_norm_residuals=True, normalize_latent=True, uniformity_weight=0.1)
    res = train_rqvae(x, MODEL, TrainConfig(epochs=2, batch_size=128), seed=0, show_progress=False, experimental=exp)
    assert res.model.quantizer.layer_norm and res.model.experimental == exp
    # omitted: the switches are off, as in a default build
    off = train_rqvae(x, MODEL, TrainConfig(epochs=2, batch_size=128), seed=0, show_progress=False)
    assert not off.model.quantizer.layer_norm and off.model.experimental == ExperimentalConfig()
    assert not torch.equal(res.model.quantizer.codebooks[0], off.model.quantizer.codebooks[0])
    with pytest.raises(ConfigError, match="do not apply to rq-kmeans"):
        train_rqvae(x, ModelConfig(method="rq-kmeans", codebook_sizes=(16, 16)), TrainConfig(), show_progress=False,
                    experimental=ExperimentalConfig(normalize_latent=True))


def test_resume_from_checkpoint_gives_identical_weights(tmp_path, monkeypatch):
    from semantic_ids import faults
    from semantic_ids.stages.checkpoint import Checkpoint

    x = clustered_embeddings(300)
    cfg = TrainConfig(epochs=8, batch_size=64, restart_every=3, checkpoint_every=2)
    full = train_rqvae(x, MODEL, cfg, seed=1, show_progress=False, checkpoint_dir=tmp_path / "a")

    # interrupted right after the second checkpoint (epoch 4); the real SIGKILL is in test_faults.py
    faults.reset()
    monkeypatch.setenv(faults.FAULT_ENV, "checkpoint.saved@2")
    monkeypatch.setenv(faults.MODE_ENV, "raise")
    with pytest.raises(faults.Fault, match="checkpoint.saved@2"):
        train_rqvae(x, MODEL, cfg, seed=1, show_progress=False, checkpoint_dir=tmp_path / "b")
    monkeypatch.delenv(faults.FAULT_ENV)
    (ckpt_dir,) = (tmp_path / "b").iterdir()
    assert Checkpoint(tmp_path / "b", ckpt_dir.name).epochs_done() == 4
    resumed = train_rqvae(x, MODEL, cfg, seed=1, show_progress=False, checkpoint_dir=tmp_path / "b")
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert resumed.history == full.history
    # a different seed does not pick up this checkpoint
    other = train_rqvae(x, MODEL, cfg, seed=2, show_progress=False, checkpoint_dir=tmp_path / "b")
    assert not torch.equal(other.model.quantizer.codebooks[0], full.model.quantizer.codebooks[0])
    # nor do different experiment switches
    dirs = {p.name for p in (tmp_path / "b").iterdir()}
    train_rqvae(x, MODEL, cfg, seed=1, show_progress=False, checkpoint_dir=tmp_path / "b",
                experimental=ExperimentalConfig(uniformity_weight=0.1))
    assert len({p.name for p in (tmp_path / "b").iterdir()} - dirs) == 1


@BOTH
def test_single_item_gets_the_same_codes_as_in_a_batch(model_cfg):
    x = clustered_embeddings(500, dim=32)
    model = train_rqvae(x, model_cfg, TrainConfig(epochs=2, batch_size=64), seed=0, show_progress=False).model
    xt = torch.from_numpy(x)
    full = model.latent(xt)
    singles = torch.cat([model.latent(xt[i : i + 1]) for i in range(100)])
    assert torch.equal(full[:100], singles)  # bit-identical, not merely close
    assert torch.equal(encode_all(model, xt), torch.cat([model.encode(xt[i : i + 1]) for i in range(500)]))


@pytest.mark.slow  # two subprocesses; ACTIVE spin-waiting is slow on shared cores (68 s on 2 busy vCPUs)
def test_omp_wait_policy_changes_no_weight(tmp_path):
    """The command line sets OMP_WAIT_POLICY=PASSIVE for speed; the weights must not depend on it."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, torch\n"
        "from semantic_ids.config import ModelConfig, TrainConfig\n"
        "from semantic_ids.stages.train import train_rqvae\n"
        "torch.set_num_threads(2)\n"
        "x = np.random.default_rng(0).normal(size=(3000, 48)).astype(np.float32)\n"
        "r = train_rqvae(x, ModelConfig(codebook_sizes=(16, 16), latent_dim=4, hidden_dims=(64, 32)),\n"
        "                TrainConfig(epochs=3, batch_size=256, checkpoint_every=0), show_progress=False)\n"
        "torch.save(r.model.state_dict(), sys.argv[1])\n"
    )
    out = {}
    for policy in ("PASSIVE", "ACTIVE"):
        # the package under test, installed or not (the script runs in tmp_path)
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "OMP_WAIT_POLICY": policy, "PYTHONPATH": path}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / policy)], check=True, env=env, cwd=tmp_path)
        out[policy] = torch.load(tmp_path / policy)
    assert all(torch.equal(out["PASSIVE"][k], out["ACTIVE"][k]) for k in out["PASSIVE"])


def test_progress_bar_shows_last_measured_collision_rate():
    """The collision rate is measured every few epochs; the bar never shows nan."""
    from semantic_ids.stages.train import postfix_fields

    history = [{"epoch": 0, "loss": 1.0, "codes_used": [4, 4]}]
    assert "col" not in postfix_fields(history[0], history)  # nothing measured yet: no field
    history.append({"epoch": 1, "loss": 0.5, "codes_used": [4, 4], "collision_rate": 0.125})
    assert postfix_fields(history[1], history)["col"] == "0.1250"
    history.append({"epoch": 2, "loss": 0.4, "codes_used": [4, 3]})
    fields = postfix_fields(history[2], history)
    assert fields == {"loss": "0.4000", "used": "4/3", "col": "0.1250 (ep 2)"}
    assert "nan" not in str(fields)
