"""The public surface is predictable (issue 23): one result type for both runners, the
export directory first and named ``export_dir`` everywhere, ``catalog`` keyword-only,
``show_progress`` on by default, one export reader, a build's options and export
directory checked once, and a keyword-only RQVAE whose forward returns a named tuple.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from semantic_ids.config import BuildConfig, ModelConfig

from .conftest import clustered_embeddings

N = 120


@pytest.fixture
def cfg() -> BuildConfig:
    return BuildConfig().replace(
        model={"codebook_sizes": [8, 8], "latent_dim": 4, "hidden_dims": [16]},
        train={"epochs": 2, "batch_size": 64, "checkpoint_every": 0},
        embedding={"use_cache": False},
    )


def _public():
    from semantic_ids.decoding.formats import write_decoding_files
    from semantic_ids.decoding.trie import PrefixTrie
    from semantic_ids.decoding.vocab import SIDVocab
    from semantic_ids.export.io import read_export, write_export
    from semantic_ids.export.manifest import verify_export
    from semantic_ids.lookup import SemanticIDLookup
    from semantic_ids.quality.evaluate import evaluate_export
    from semantic_ids.quality.report import write_report
    from semantic_ids.runners.assign import assign_new_items
    from semantic_ids.runners.build import build
    from semantic_ids.runners.estimator import SemanticIDs
    from semantic_ids.runners.streaming import build_streaming

    return {
        "build": build, "build_streaming": build_streaming, "assign_new_items": assign_new_items,
        "evaluate_export": evaluate_export, "write_report": write_report, "read_export": read_export,
        "write_export": write_export, "verify_export": verify_export, "write_decoding_files": write_decoding_files,
        "SemanticIDs.load": SemanticIDs.load, "SemanticIDs.save": SemanticIDs.save,
        "SemanticIDLookup.load": SemanticIDLookup.load, "PrefixTrie.from_export": PrefixTrie.from_export,
    }


def test_export_dir_first_catalog_keyword_only_progress_on():
    bad = []
    for name, fn in _public().items():
        params = [p for p in inspect.signature(fn).parameters.values() if p.name not in ("self", "cls")]
        if params[0].name != "export_dir" or params[0].kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            bad.append(f"{name}: first parameter {params[0].name}")
        for p in params:
            if p.name == "catalog" and p.kind is not inspect.Parameter.KEYWORD_ONLY:
                bad.append(f"{name}: catalog is not keyword-only")
            if p.name == "show_progress" and p.default is not True:
                bad.append(f"{name}: show_progress defaults to {p.default!r}")
    assert not bad, bad


def test_both_runners_return_one_result_type(tmp_path, cfg):
    from semantic_ids.runners.build import BuildResult, build
    from semantic_ids.runners.streaming import build_streaming
    from semantic_ids.stages.shards import write_embedding_shards

    ids = np.array([f"i{i:03d}" for i in range(N)], dtype=object)
    emb = clustered_embeddings(N, dim=16)
    write_embedding_shards(tmp_path / "shards", ids, emb)
    catalog = pd.DataFrame({"item_id": ids, "title": ["t"] * N})
    mem = build(tmp_path / "mem", catalog=catalog, embeddings=emb, config=cfg, show_progress=False)
    stream = build_streaming(tmp_path / "stream", embeddings=tmp_path / "shards", config=cfg, work_dir=tmp_path / "w",
                             show_progress=False)
    assert type(mem) is type(stream) is BuildResult
    assert mem.export_dir == (tmp_path / "mem").resolve() and stream.export_dir == (tmp_path / "stream").resolve()
    assert mem.estimator is not None and stream.estimator is None
    assert mem.metrics["n_items"] == stream.metrics["n_items"] == N


@pytest.mark.parametrize("streaming", [False, True], ids=["memory", "streaming"])
def test_a_build_checks_its_export_directory_once(tmp_path, cfg, monkeypatch, streaming):
    """One up-front check (with the inputs) per build; the export writer's own guard is the only other."""
    import semantic_ids.export.io as export_io
    import semantic_ids.runners.build as runner
    from semantic_ids.stages.shards import write_embedding_shards

    calls = []
    for mod in (runner, export_io):
        real = mod.check_out_dir
        monkeypatch.setattr(mod, "check_out_dir", lambda *a, _real=real, _m=mod.__name__, **k: calls.append(_m) or _real(*a, **k))
    ids = np.arange(N)
    emb = clustered_embeddings(N, dim=16)
    if streaming:
        write_embedding_shards(tmp_path / "shards", ids, emb)
        runner.build(tmp_path / "out", embeddings=tmp_path / "shards", streaming=True, config=cfg, work_dir=tmp_path / "w",
                     show_progress=False)
    else:
        runner.build(tmp_path / "out", catalog=pd.DataFrame({"item_id": ids}), embeddings=emb, config=cfg, show_progress=False)
    assert calls == ["semantic_ids.runners.build", "semantic_ids.export.io"]


@pytest.mark.parametrize("options, message", [
    ({"engine": "ray", "sequences": "missing.jsonl"}, "missing.jsonl.* does not exist"),
    ({"streaming": True, "sequences": "missing.jsonl"}, "missing.jsonl.* does not exist"),
    ({"engine": "ray", "previous": "old"}, "local engine only"),
    ({"engine": "spark"}, "engine='spark'"),
    ({"streaming": True, "config": BuildConfig().replace(collision={"strategy": "balanced"})}, "balanced"),
    ({"catalog": None}, "needs a catalog"),
])
def test_bad_options_fail_before_the_catalog_is_read(tmp_path, options, message):
    from semantic_ids.runners.build import build

    def fetch():
        raise AssertionError("the catalog was fetched before the options were checked")

    with pytest.raises(ValueError, match=message):
        build(tmp_path / "out", **{"catalog": fetch, **options})
    assert not (tmp_path / "out").exists()


def test_batch_job_refused_before_a_builtin_catalog_is_fetched(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
    try:
        import build as job  # pipelines/build.py
    finally:
        sys.path.pop(0)
    from semantic_ids.export.outdir import OutputPathError

    monkeypatch.setitem(job.BUILTIN, "movielens-100k", lambda: pytest.fail("fetched a catalog for a refused build"))
    (tmp_path / "taken").write_text("a file, not an export")
    (tmp_path / "job.toml").write_text(f'[job]\ncatalog = "movielens-100k"\nout = "{tmp_path / "taken"}"\n')
    with pytest.raises(OutputPathError, match="not a directory"):
        job.run(str(tmp_path / "job.toml"), show_progress=False)
    assert (tmp_path / "taken").read_text() == "a file, not an export"


def test_rqvae_is_keyword_only_and_forward_returns_named_fields():
    from semantic_ids.model.rqvae import RQVAE, RQVAEOutput

    mc = ModelConfig(codebook_sizes=(8, 8), latent_dim=4, hidden_dims=(16,))
    with pytest.raises(TypeError):
        RQVAE(16, mc)
    model = RQVAE(input_dim=16, config=mc)
    x = torch.from_numpy(clustered_embeddings(10, dim=16))
    model.input_mean.copy_(x.mean(0))
    model.fit_first_level(x, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert isinstance(out, RQVAEOutput)
    assert out.codes.shape == (10, 2) and out.z.shape == (10, 4)
    assert torch.allclose(out.loss, out.recon + out.vq)
    # latent() under given level-1 codes equals the nearest centroids' when they are those codes
    assert torch.equal(model.latent(x, model.first_codes(x)), model.latent(x))


def test_cheap_read_is_torch_free_and_agrees_with_the_full_read(tmp_path, cfg):
    from semantic_ids.export.io import read_export
    from semantic_ids.runners.estimator import SemanticIDs

    ids = np.array([f"i{i:03d}" for i in range(N)], dtype=object)
    out = SemanticIDs(cfg, show_progress=False).fit(clustered_embeddings(N, dim=16), ids=ids).save(tmp_path / "e")
    full, cheap = read_export(out), read_export(out, model=False)
    assert cheap.model is None and full.model is not None
    assert np.array_equal(full.ids, cheap.ids) and np.array_equal(full.codes, cheap.codes)
    assert full.config == cheap.config and full.manifest_sha256 == cheap.manifest_sha256 != ""
    assert cheap.codebook_sizes == (8, 8)
    probe = (
        "import sys\n"
        "from semantic_ids.export.io import read_export\n"
        f"e = read_export({str(out)!r}, model=False)\n"
        "print(len(e.ids), e.codebook_sizes, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(N), "(8,", "8)", "False"]
