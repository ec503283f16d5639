import json
import re
import sys

import numpy as np
import pandas as pd
import pytest

from semantic_ids import BuildConfig, SemanticIDs
from semantic_ids.cli.main import main
from semantic_ids.export.io import ExportError, read_export
from semantic_ids.stages.metrics import group_sizes
from semantic_ids.quality.report import ReportError, write_report
from semantic_ids.quality.report import evaluation, plots

from .conftest import clustered_embeddings

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

N = 300
TEMPLATE = "Title <b>&amp; {title}"  # shown in the config section: must come out escaped


def _config(**collision) -> BuildConfig:
    return BuildConfig().replace(
        catalog={"template": TEMPLATE},
        model={"codebook_sizes": [8, 8, 8], "latent_dim": 8, "hidden_dims": [32]},
        train={"epochs": 6, "batch_size": 64, "restart_every": 2},
        embedding={"use_cache": False},
        collision=collision or {"strategy": "counter"},
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    t = tmp_path_factory.mktemp("report")
    emb = clustered_embeddings(N, clusters=6, seed=3)
    df = pd.DataFrame({"item_id": [f"i{i}" for i in range(N)], "title": [f"t{i}" for i in range(N)],
                       "category": [f"c{i % 6}" for i in range(N)]})
    df.to_parquet(t / "cat.parquet")
    np.save(t / "emb.npy", emb)
    (t / "seq.jsonl").write_text("".join(json.dumps({"user_id": i, "items": [f"i{j}" for j in range(i, i + 5)]}) + "\n" for i in range(0, 200, 5)))
    SemanticIDs(_config(), show_progress=False).fit(emb, ids=df["item_id"].to_numpy()).save(t / "tiny-export")
    return t


@pytest.fixture
def export(data, tmp_path):
    """A fresh copy of the module's export, so each test may write its report inside."""
    import shutil

    dst = tmp_path / "tiny-export"
    shutil.copytree(data / "tiny-export", dst)
    return dst


def _report_dir(export):
    """Where ``write_report(export)`` writes by default: beside the export."""
    return export.parent / f"{export.name}-report"


def _links(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def _check_pngs(index):
    page = index.read_text(encoding="utf-8")
    links = _links(page)
    assert {"training.png", "usage.png", "collisions.png"} <= set(links)
    for name in links:
        assert "/" not in name  # relative, beside the page
        path = index.parent / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.size[0] >= 600 and im.size[1] >= 200
    return page


def test_report_writes_html_and_valid_pngs(export):
    index = write_report(export)
    assert index == _report_dir(export) / "index.html"
    page = _check_pngs(index)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # the export itself still verifies: the report lives beside it
    SemanticIDs.load(export)


def test_quality_table_and_header_facts(export):
    m = json.loads((export / "metrics.json").read_text())
    page = write_report(export).read_text(encoding="utf-8")
    for key in ["n_items", "codes_used", "perplexity", "collision_rate", "largest_group", "reconstruction_mse"]:
        assert f"<code>{key}</code>" in page, key
    assert f"{m['collision_rate']:.2%}" in page
    assert f"{m['reconstruction_mse']:.4g}" in page
    assert ("all used (8, 8, 8)" if m["codes_used"] == [8, 8, 8] else ", ".join(f"level {i}: {u} of 8" for i, u in enumerate(m["codes_used"], 1))) in page
    assert "8 × 8 × 8" in page and f"{N:,}" in page
    assert "build time" in page and f"{m['total_seconds']:.1f} s" in page
    assert "[model]" in page and "[train]" in page  # the saved config


@pytest.mark.slow
def test_baselines_rows_every_column_and_catalog_filter(export, tmp_path):
    rows = [
        {"catalog": "alpha", "method": "RQ-VAE default", "seed": 0, "items": N, "collision_rate": 0.01234, "purity_l1": 0.5,
         "codes_used": [8, 8, 7], "stages": {"train": {"seconds": 1.5}}},
        {"catalog": "alpha", "method": "FAISS RQ", "seed": 1, "items": N, "collision_rate": 0.1, "brand_new_column": 42.5},
        {"catalog": "omega", "method": "should be filtered", "seed": 0, "items": 999, "collision_rate": 0.2},
    ]
    path = tmp_path / "quality.json"
    path.write_text(json.dumps({"env": {}, "rows": rows}))
    page = write_report(export, baselines=path).read_text(encoding="utf-8")
    assert "RQ-VAE default" in page and "FAISS RQ" in page and "should be filtered" not in page
    for col in ["collision_<wbr>rate", "purity_<wbr>l1", "brand_<wbr>new_<wbr>column", "stages", "codes_<wbr>used"]:
        assert f"<th>{col}</th>" in page, col
    assert "1.23%" in page and "42.5" in page and "8/8/7" in page
    assert "this export (tiny-export)" in page and "catalog &#x27;alpha&#x27;" in page
    # the export's own row takes its values from its metrics
    ours = re.search(r"<tr class=ours>(.*?)</tr>", page).group(1)
    m = json.loads((export / "metrics.json").read_text())
    assert f"{m['collision_rate']:.2%}" in ours and "/".join(map(str, m["codes_used"])) in ours

    # a plain list, nothing to infer the catalog from (no item counts, no name in the path): every row is shown
    for r in rows:
        r.pop("items")
    path.write_text(json.dumps(rows))
    page = write_report(export, baselines=path).read_text(encoding="utf-8")
    assert "should be filtered" in page and "all 3 baseline rows" in page
    # ...unless the catalog is named
    page = write_report(export, baselines=rows, baselines_catalog="omega").read_text(encoding="utf-8")
    assert "should be filtered" in page and "FAISS RQ" not in page


def test_baselines_catalog_by_item_count_only(export):
    rows = [{"catalog": "a", "items": 5}, {"catalog": "a", "n_items": 5.0}, {"catalog": "b", "items": 7},
            {"catalog": "c"}, {"catalog": "d", "items": True}]
    assert evaluation.catalog_by_items(rows, 5) == "a" and evaluation.catalog_by_items(rows, 7) == "b"
    assert evaluation.catalog_by_items(rows, 1) is None  # a bool is not a count
    assert evaluation.catalog_by_items(rows + [{"catalog": "e", "items": 5}], 5) is None  # ambiguous: no guess
    # a catalog's name in the export's path is no clue: the "tiny" rows of "tiny-export" are not picked
    page = write_report(export, baselines=[{"catalog": "tiny", "method": "m-tiny"}, {"catalog": "other", "method": "m-other"}])
    page = page.read_text(encoding="utf-8")
    assert "m-tiny" in page and "m-other" in page and "all 2 baseline rows" in page


def test_bad_baselines_file(export, tmp_path):
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        write_report(export, baselines=tmp_path / "b.json")
    (tmp_path / "b.json").write_text(json.dumps({"rows": 3}))
    with pytest.raises(ReportError, match="list of row objects"):
        write_report(export, baselines=tmp_path / "b.json")
    assert not (_report_dir(export)).exists()


def test_text_is_escaped(export):
    evil = "<script>alert('x')</script> & co"
    page = write_report(export, baselines=[{"catalog": "tiny", "method": evil, "seed": 0, "<th>": "<td>"}]).read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "<th><th></th>" not in page and "&lt;th&gt;" in page and "&lt;td&gt;" in page
    assert "<b>" not in page and html_escaped(json.dumps(TEMPLATE)) in page


def html_escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_catalog_evaluation_and_sequences(export, data):
    baselines = [{"catalog": "tiny", "method": "ref", "seed": 0, "items": N, "purity_l1": 0.111, "lift_l1": 2.0}]
    index = write_report(export, data / "rep", baselines=baselines, catalog=data / "cat.parquet",
                         sequences=data / "seq.jsonl", embeddings=data / "emb.npy")
    page = _check_pngs(index)
    for key in ["purity@1", "nmi@1", "neighbour_share@1", "co_share@1", "lift@1", "sequence_pairs"]:
        assert f"<code>{key}</code>" in page, key
    assert "purity @ depth 1 (category)" in page and "evaluated against" in page
    from semantic_ids.quality.evaluate import evaluate_export

    q = evaluate_export(export, catalog=data / "cat.parquet", sequences=data / "seq.jsonl", embeddings=data / "emb.npy")
    ours = re.search(r"<tr class=ours>(.*?)</tr>", page).group(1)
    assert f"{q['purity@1']:.4g}" in ours and f"{q['lift@1']:.4g}" in ours  # matched to purity_l1 / lift_l1
    with pytest.raises(ReportError, match="need a catalog"):
        write_report(export, data / "rep", sequences=data / "seq.jsonl")


@pytest.mark.slow
def test_balanced_export_recomputes_raw_collision_groups(data, tmp_path):
    df = pd.read_parquet(data / "cat.parquet")
    emb = np.load(data / "emb.npy")
    cfg = _config(strategy="balanced").replace(model={"codebook_sizes": [4, 4, 4]})
    sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=df["item_id"].to_numpy())
    sid.save(tmp_path / "bal")
    assert sid.metrics_["n_collided_items"] > 0  # 64 code tuples for 300 items
    raw, note = evaluation.raw_codes(read_export(tmp_path / "bal"), emb)
    sizes = group_sizes(raw)
    assert int(sizes[sizes > 1].sum()) == sid.metrics_["n_collided_items"] and "recomputed" in note
    page = write_report(tmp_path / "bal", embeddings=data / "emb.npy").read_text(encoding="utf-8")
    assert "recomputed with the export" in page and "after rebalancing" not in page.split("Collisions")[1].split("Codes:")[0]
    page = write_report(tmp_path / "bal").read_text(encoding="utf-8")
    assert "raw codes are not stored" in page


@pytest.mark.slow
def test_atomic_no_partial_report_on_failure(export, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(plots, "plot_collisions", boom)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(export)
    assert not (_report_dir(export)).exists()
    assert not list(export.parent.glob(".*staging*"))
    monkeypatch.undo()
    index = write_report(export)
    before = {p.name: p.read_bytes() for p in index.parent.iterdir()}
    monkeypatch.setattr(plots, "plot_collisions", boom)
    with pytest.raises(RuntimeError):
        write_report(export)
    assert {p.name: p.read_bytes() for p in index.parent.iterdir()} == before  # the earlier report is untouched
    assert not list(export.parent.glob(".*staging*"))


def test_not_an_export(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    with pytest.raises(ExportError, match="not a semantic-ids export"):
        write_report(tmp_path / "plain")
    with pytest.raises(ExportError, match="not found"):
        write_report(tmp_path / "missing")
    assert not _report_dir(tmp_path / "plain").exists()
    assert main(["report", str(tmp_path / "plain")]) == 2
    assert "not a semantic-ids export" in capsys.readouterr().err


@pytest.mark.slow
def test_refuses_to_replace_other_directories(export, tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    with pytest.raises(ReportError, match="not an earlier semantic-ids report"):
        write_report(export, other)
    assert (other / "thesis.txt").read_text() == "keep me"
    with pytest.raises(ReportError, match="would replace the input"):
        write_report(export, export)
    with pytest.raises(ReportError, match="would replace the input"):
        write_report(export, export.parent)
    # an empty directory and an earlier report are fine
    (tmp_path / "empty").mkdir()
    assert write_report(export, tmp_path / "empty").exists()
    assert write_report(export, tmp_path / "empty").exists()


@pytest.mark.slow
def test_cli_report(export, tmp_path, capsys):
    (tmp_path / "q.json").write_text(json.dumps([{"catalog": "tiny", "method": "ref-method", "seed": 0}]))
    rc = main(["report", str(export), "--out", str(tmp_path / "r"), "--baselines", str(tmp_path / "q.json"), "--json"])
    assert rc == 0
    index = json.loads(capsys.readouterr().out)["report"]
    assert index == str(tmp_path / "r" / "index.html")
    assert "ref-method" in _check_pngs(tmp_path / "r" / "index.html")
    assert main(["report", str(export)]) == 0
    assert "report written to" in capsys.readouterr().out and (_report_dir(export) / "index.html").exists()
    assert main(["report", str(export), "--sequences", str(tmp_path / "q.json")]) == 2
    assert "need a catalog" in capsys.readouterr().err


def test_missing_matplotlib_names_the_extra(export, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape("semantic-ids[report]")):
        write_report(export)
    assert main(["report", str(export)]) == 2
    assert "semantic-ids[report]" in capsys.readouterr().err
    assert not (_report_dir(export)).exists()


def test_report_leaves_no_lock_files_and_keeps_user_files(export, tmp_path):
    import shutil

    exp = tmp_path / "exp"
    shutil.copytree(export, exp)
    index = write_report(exp)
    assert index.parent == (_report_dir(exp)).resolve()
    hidden = [p.name for p in exp.rglob(".*")] + [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == []
    # a user's file dropped into an earlier report is not deleted by the next one
    (_report_dir(exp) / "my-notes.md").write_text("keep")
    with pytest.raises(ReportError, match="my-notes.md"):
        write_report(exp)
    assert (_report_dir(exp) / "my-notes.md").read_text() == "keep"


# -- churn since a previous export (issue 14) ---------------------------------------------------

CHURN = "<h2>Churn since the previous export</h2>"


@pytest.fixture(scope="module")
def rebuilt(data):
    """Two rebuilds of the module's export on a changed catalog (its first 20 items removed, 20 new
    ones added): ``warm`` warm-started from it (``build --previous``), ``fresh`` from scratch with
    another seed, so that IDs move."""
    df = pd.read_parquet(data / "cat.parquet")
    emb = np.load(data / "emb.npy")
    new = pd.DataFrame({"item_id": [f"n{i}" for i in range(20)], "title": [f"new {i}" for i in range(20)],
                        "category": [f"c{i % 6}" for i in range(20)]})
    df2 = pd.concat([df.iloc[20:], new], ignore_index=True)
    emb2 = np.concatenate([emb[20:], clustered_embeddings(20, clusters=6, seed=4)])
    SemanticIDs(_config(), show_progress=False).fit(emb2, ids=df2["item_id"].to_numpy(), previous=data / "tiny-export").save(data / "warm")
    SemanticIDs(_config().replace(seed=1), show_progress=False).fit(emb2, ids=df2["item_id"].to_numpy()).save(data / "fresh")
    return {"warm": data / "warm", "fresh": data / "fresh"}


def _churn_rows(page: str) -> dict[str, str]:
    section = page.split(CHURN)[1].split("<h2>")[0]
    return dict(re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", section))


def test_churn_section_matches_churn_py(data, rebuilt, tmp_path):
    from semantic_ids.quality.churn import churn

    old = data / "tiny-export"
    rep = churn(old, rebuilt["fresh"])
    assert (rep.n_common, rep.n_added, rep.n_removed) == (N - 20, 20, 20)
    assert rep.full_id_changed > 0 and len(rep.prefix_changed) == 4  # another seed: IDs moved
    page = write_report(rebuilt["fresh"], tmp_path / "r", previous=old).read_text(encoding="utf-8")
    rows = _churn_rows(page)
    assert rows["items old / new"] == f"{N:,} / {N:,}"
    assert rows["common / added / removed"] == f"{N - 20:,} / 20 / 20"
    assert rows["full ID changed (common items)"] == f"{rep.full_id_changed:.2%}"
    for d, v in enumerate(rep.prefix_changed, 1):
        assert rows[f"prefix changed at depth {d}"] == f"{v:.2%}"
    assert html_escaped(str(old)) in page.split(CHURN)[1].split("<h2>")[0]
    assert "<h3>Warm start</h3>" not in page  # a fresh build has no warm-start record
    # the command line passes --previous through: the same section
    from semantic_ids.cli.main import main

    assert main(["report", str(rebuilt["fresh"]), "--out", str(tmp_path / "cli"), "--previous", str(old), "--no-progress"]) == 0
    assert _churn_rows((tmp_path / "cli" / "index.html").read_text(encoding="utf-8")) == rows


def test_warm_start_record_beside_the_churn(data, rebuilt, tmp_path):
    from semantic_ids.quality.churn import churn

    old = data / "tiny-export"
    rep = churn(old, rebuilt["warm"])
    page = write_report(rebuilt["warm"], tmp_path / "r", previous=old).read_text(encoding="utf-8")
    rows = _churn_rows(page)
    assert rows["full ID changed (common items)"] == f"{rep.full_id_changed:.2%}"
    w = json.loads((rebuilt["warm"] / "metrics.json").read_text())["warm_start"]
    assert "<h3>Warm start</h3>" in page
    assert rows["items in the previous export"] == f"{w['previous_items']:,}" == f"{N:,}"
    assert rows["new items (not in the previous export)"] == f"{w['new_items']:,}" == "20"
    assert rows["items in both"] == f"{N - 20:,}"
    assert rows["kept their full ID"] == f"{w['kept_full_id']:.2%}"
    assert rows["items kept on their old codes, off the nearest ones (hysteresis)"] == f"{w['items_kept_off_nearest']:,}"
    for d, kept in enumerate(w["kept_prefix"], 1):
        assert rows[f"kept their prefix at depth {d}"] == f"{kept:.2%}"
    # two records of the same rebuild agree: kept at build time = 1 - churn measured from the files
    for kept, changed in zip(w["kept_prefix"], rep.prefix_changed):
        assert kept == pytest.approx(1.0 - changed, abs=1e-6)


def test_churn_section_absent_without_previous_or_warm_start(rebuilt, export, tmp_path):
    assert CHURN not in write_report(export).read_text(encoding="utf-8")
    # the warm-start record alone, without a previous export to diff against
    page = write_report(rebuilt["warm"], tmp_path / "warm").read_text(encoding="utf-8")
    rows = _churn_rows(page)
    assert "<h3>Warm start</h3>" in page and "items old / new" not in rows
    assert rows["new items (not in the previous export)"] == "20"


def test_bad_previous_export_fails_before_writing(export, tmp_path):
    with pytest.raises(ExportError, match="nowhere"):
        write_report(export, previous=tmp_path / "nowhere")
    assert not (_report_dir(export)).exists()


# -- issue 24 ------------------------------------------------------------------------------------

def test_default_report_survives_an_in_place_rebuild(data, export):
    """The report used to live in DIR/report, and the next in-place rebuild (or assign) of DIR
    deleted it silently; it now lives beside the export, which those never touch."""
    index = write_report(export)
    assert index.parent == _report_dir(export).resolve() and not (export / "report").exists()
    emb = np.load(data / "emb.npy")
    ids = pd.read_parquet(data / "cat.parquet")["item_id"].to_numpy()
    SemanticIDs(_config(), show_progress=False).fit(emb, ids=ids).save(export)  # rebuilt in place
    assert index.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_embedding_fact_gives_the_text_dimension_not_the_fused_input(data, tmp_path):
    """A build with sequences feeds the model text + behaviour side by side; the header said
    "<model> (dim 448)" for a 384-d text model. It now gives the text's and the input's widths."""
    emb = np.load(data / "emb.npy")
    ids = pd.read_parquet(data / "cat.parquet")["item_id"].to_numpy()
    cfg = _config().replace(collab={"dim": 16})
    seq = tmp_path / "users.jsonl"
    seq.write_text("".join(json.dumps({"user_id": u, "items": [f"i{(u * 7 + j) % N}" for j in range(6)]}) + "\n"
                           for u in range(120)))
    SemanticIDs(cfg, show_progress=False).fit(emb, ids=ids, sequences=seq).save(tmp_path / "seq")
    page = write_report(tmp_path / "seq").read_text(encoding="utf-8")
    assert "given embeddings (32-d); model input 48-d: text + 16-d behaviour" in page
    assert "(dim 48)" not in page
    page = write_report(data / "tiny-export", tmp_path / "r").read_text(encoding="utf-8")
    assert "given embeddings (32-d)<" in page and "model input" not in page
    assert "all used (8, 8, 8)" in page or "level 1:" in page  # codes used, written out
