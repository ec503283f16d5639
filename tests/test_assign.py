import json
import shutil

import numpy as np
import pandas as pd
import pytest

from semantic_ids import BuildConfig, build
import semantic_ids.runners.assign as assign_mod
from semantic_ids.runners.assign import assign_new_items, resolve_against
from semantic_ids.cli.main import main
from semantic_ids.lookup import SemanticIDLookup

from .conftest import clustered_embeddings

N_OLD, N_NEW = 600, 300


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    emb = clustered_embeddings(N_OLD + N_NEW, clusters=15, noise=0.1)
    df = pd.DataFrame({"item_id": [f"i{i:05d}" for i in range(N_OLD + N_NEW)], "title": ["t"] * (N_OLD + N_NEW)})
    cfg = BuildConfig().replace(
        model={"codebook_sizes": [8, 8, 8], "hidden_dims": [32]},
        train={"epochs": 6, "batch_size": 128, "restart_every": 2},
        embedding={"use_cache": False},
    )
    # through the build, so the export records the catalog's text columns (assign builds new text from them)
    out = build(tmp_path_factory.mktemp("a") / "base", catalog=df.iloc[:N_OLD], embeddings=emb[:N_OLD], config=cfg,
                show_progress=False).export_dir
    return out, df, emb


def copy(base_dir, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(base_dir, dst)
    return dst


def test_existing_ids_never_change(base, tmp_path):
    out, df, emb = base
    d = copy(out, tmp_path, "e")
    before = pd.read_parquet(d / "semantic_ids.parquet")
    res = assign_new_items(d, catalog=df, embeddings=emb, show_progress=False)
    assert res.n_new == N_NEW and res.n_already_present == N_OLD
    after = pd.read_parquet(d / "semantic_ids.parquet")
    assert len(after) == N_OLD + N_NEW
    pd.testing.assert_frame_equal(after.iloc[:N_OLD].reset_index(drop=True), before)
    assert after["semantic_id"].is_unique
    # collisions with old items got numbers after the old group's largest
    assert res.n_collided > 0
    lk = SemanticIDLookup.load(d)
    assert lk.sid_to_item(lk.item_to_sid(df["item_id"].tolist())) == df["item_id"].tolist()
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["assignments"][-1]["n_new"] == N_NEW


def test_assign_is_order_and_batch_size_independent(base, tmp_path):
    out, df, emb = base
    a, b = copy(out, tmp_path, "a"), copy(out, tmp_path, "b")
    new = df.iloc[N_OLD:]
    perm = np.random.default_rng(1).permutation(N_NEW)
    assign_new_items(a, catalog=new, embeddings=emb[N_OLD:], batch_size=7, show_progress=False)
    assign_new_items(b, catalog=new.iloc[perm], embeddings=emb[N_OLD:][perm], batch_size=100_000, show_progress=False)
    ida = pd.read_parquet(a / "semantic_ids.parquet").set_index("item_id")["semantic_id"]
    idb = pd.read_parquet(b / "semantic_ids.parquet").set_index("item_id")["semantic_id"]
    assert ida.sort_index().equals(idb.sort_index())


def test_rerun_adds_nothing(base, tmp_path):
    out, df, emb = base
    d = copy(out, tmp_path, "r")
    assign_new_items(d, catalog=df, embeddings=emb, show_progress=False)
    first = (d / "semantic_ids.parquet").read_bytes()
    res = assign_new_items(d, catalog=df, embeddings=emb, show_progress=False)
    assert res.n_new == 0 and (d / "semantic_ids.parquet").read_bytes() == first


def test_interrupted_assign_leaves_export_intact(base, tmp_path, monkeypatch):
    out, df, emb = base
    d = copy(out, tmp_path, "i")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    import safetensors.torch

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save", boom)  # the model's file, halfway through the export
    with pytest.raises(KeyboardInterrupt):
        assign_new_items(d, catalog=df, embeddings=emb, show_progress=False)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert len(SemanticIDLookup.load(d)) == N_OLD


def test_resolve_against_hand_made():
    existing = np.array([[1, 1, 0], [1, 1, 1], [2, 2, 0]])
    new_raw = np.array([[1, 1], [3, 3], [1, 1], [3, 3]])
    got = resolve_against(existing, new_raw, np.array(["b", "x", "a", "c"], dtype=object))
    # group (1,1): a < b -> a gets 2, b gets 3 (after existing 0, 1); group (3,3) is new: c < x
    assert got.tolist() == [[1, 1, 3], [3, 3, 1], [1, 1, 2], [3, 3, 0]]


def test_assign_cli(base, tmp_path, capsys):
    out, df, emb = base
    d = copy(out, tmp_path, "c")
    df.to_parquet(tmp_path / "new.parquet")
    np.save(tmp_path / "new.npy", emb)
    assert main(["assign", str(d), "--catalog", str(tmp_path / "new.parquet"), "--embeddings", str(tmp_path / "new.npy"), "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["new_items"] == N_NEW and summary["already_present"] == N_OLD
    # issue 24: the new items' IDs are printed, and they are the export's
    lk = SemanticIDLookup.load(d)
    got = {r["item_id"]: r["semantic_id"] for r in summary["assigned"]}
    assert sorted(got) == df["item_id"].iloc[N_OLD:].tolist() and lk.item_to_sid(list(got)) == list(got.values())
    e = copy(out, tmp_path, "t")
    assert main(["assign", str(e), "--catalog", str(tmp_path / "new.parquet"), "--embeddings", str(tmp_path / "new.npy"),
                 "--no-progress", "--limit", "3"]) == 0
    text = capsys.readouterr().out
    first = summary["assigned"][0]
    assert "new items' IDs:" in text and f"{first['item_id']:<20} {first['semantic_id']}" in text
    assert f"... and {N_NEW - 3:,} more" in text


def test_assign_reads_integer_ids_given_as_strings(tmp_path, capsys):
    """An export with integer ids refused a catalog whose ids were "3003"-style strings, which
    lookup and the sequences reader accept; other strings are refused, named."""
    emb = clustered_embeddings(90, clusters=5, noise=0.1)
    cfg = BuildConfig().replace(model={"codebook_sizes": [4, 4, 4], "hidden_dims": [16]},
                                train={"epochs": 2, "batch_size": 32}, embedding={"use_cache": False})
    df = pd.DataFrame({"item_id": np.arange(1000, 1090), "title": ["t"] * 90})
    out = build(tmp_path / "ints", catalog=df.iloc[:60], embeddings=emb[:60], config=cfg, show_progress=False).export_dir
    new = pd.DataFrame({"item_id": [str(i) for i in range(1000, 1090)], "title": ["t"] * 90})
    res = assign_new_items(out, catalog=new, embeddings=emb, show_progress=False)
    assert res.n_new == 30 and res.n_already_present == 60 and res.new_ids.dtype.kind == "i"
    assert SemanticIDLookup.load(out).item_to_sid([1089, "1060"])[0] is not None
    bad = pd.DataFrame({"item_id": ["1000", "x-1", "y"], "title": ["t"] * 3})
    with pytest.raises(ValueError, match=r"2 new catalog id\(s\) are not: \['x-1', 'y'\]"):
        assign_new_items(out, catalog=bad, embeddings=emb[:3], show_progress=False)


def test_lookup_cli(base, capsys):
    out, df, emb = base
    lk = SemanticIDLookup.load(out)
    sid = lk.item_to_sid("i00003")
    assert main(["lookup", str(out), "--item", "i00003", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"item_id": "i00003", "semantic_id": sid, "found": True}
    assert main(["lookup", str(out), "--sid", sid, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["item_id"] == "i00003"
    prefix = sid[: sid.index(">") + 1]
    assert main(["lookup", str(out), "--prefix", prefix, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == lk.prefix_count(prefix)
    assert main(["lookup", str(out), "--sid", sid, "--k", "3", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["neighbors"][0]["distance"] == 0.0 and len(rec["neighbors"]) == 3
    # every id is reported, misses marked, and any miss exits 1 (bad input stays 2)
    assert main(["lookup", str(out), "--item", "i00003", "missing", "i00004", "--json"]) == 1
    captured = capsys.readouterr()
    recs = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["item_id"] for r in recs] == ["i00003", "missing", "i00004"]
    assert [r["found"] for r in recs] == [True, False, True] and recs[1]["semantic_id"] is None
    assert "1 of 3 queries matched no item" in captured.err
    assert main(["lookup", str(out), "--item", "missing"]) == 1
    assert "item_id=missing  semantic_id=-  NOT FOUND" in capsys.readouterr().out
    assert main(["lookup", str(out), "--item", "i00003", "missing", "--k", "2", "--json"]) == 1
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(recs[0]["neighbors"]) == 2 and recs[1] == {"item_id": "missing", "neighbors": [], "semantic_id": None, "found": False}
    unused = sid[: sid.rindex("<")] + "<d_999>"  # well-formed, no item has it
    assert main(["lookup", str(out), "--sid", sid, unused, "--json"]) == 1
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["found"] for r in recs] == [True, False] and recs[1]["item_id"] is None
    assert main(["lookup", str(out), "--sid", "<a_1><b_x>"]) == 2
    assert "malformed" in capsys.readouterr().err
    # issue 24: an empty --prefix exits 1, like a missed --sid (it was 0)
    empty = next(f"<a_{a}><b_{b}>" for a in range(8) for b in range(8) if lk.prefix_count(f"<a_{a}><b_{b}>") == 0)
    assert main(["lookup", str(out), "--prefix", empty, "--json"]) == 1
    rec = json.loads(capsys.readouterr().out)
    assert rec == {"prefix": empty, "count": 0, "items": [], "found": False}
    assert main(["lookup", str(out), "--prefix", prefix]) == 0
    assert "NOT FOUND" not in capsys.readouterr().out


def test_lookup_shows_catalog_texts(base, tmp_path, capsys):
    """Issue 24: results showed ids alone; with --catalog each id gets its catalog text."""
    out, df, _ = base
    cat = df.iloc[:N_OLD].assign(title=[f"title {i}" for i in range(N_OLD)])
    cat.to_parquet(tmp_path / "cat.parquet")
    lk = SemanticIDLookup.load(out)
    sid = lk.item_to_sid("i00003")
    assert main(["lookup", str(out), "--item", "i00003", "nope", "--catalog", str(tmp_path / "cat.parquet"), "--json"]) == 1
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert recs[0]["text"] == "title: title 3" and recs[1]["text"] is None  # the text as the build made it
    assert main(["lookup", str(out), "--sid", sid, "--k", "2", "--catalog", str(tmp_path / "cat.parquet")]) == 0
    text = capsys.readouterr().out
    assert "title 3" in text  # the exact match, first, with its text
    prefix = sid[: sid.index(">") + 1]
    assert main(["lookup", str(out), "--prefix", prefix, "--catalog", str(tmp_path / "cat.parquet"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["texts"] == [f"title: title {int(i[1:])}" for i in rec["items"]]


def test_deprecated_error_name_still_works():
    from semantic_ids import UnknownIDError
    from semantic_ids.lookup import LookupError_

    assert LookupError_ is UnknownIDError and issubclass(UnknownIDError, KeyError)


def _no_embedding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("embedded before the catalog's text was checked")

    monkeypatch.setattr("semantic_ids.stages.embed.embed_texts", boom)


def test_assign_refuses_catalog_without_the_exports_text_columns(base, tmp_path, monkeypatch):
    from semantic_ids.stages.catalog import CatalogError

    out, df, emb = base
    d = copy(out, tmp_path, "t")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    _no_embedding(monkeypatch)
    renamed = df.rename(columns={"title": "name"})
    with pytest.raises(CatalogError, match=r"\['title'\] not found.*export's item text comes from columns \['title'\]"):
        assign_new_items(d, catalog=renamed, show_progress=False)
    from semantic_ids.stages.catalog import load_catalog

    other = load_catalog(renamed)  # a ready Catalog whose text comes from other columns
    with pytest.raises(CatalogError, match=r"from columns \['name'\], the export's from \['title'\]"):
        assign_new_items(d, catalog=other, show_progress=False)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_assign_builds_new_text_from_the_exports_columns(base, tmp_path, fake_embedder):
    out, df, emb = base
    d = copy(out, tmp_path, "x")
    fake = fake_embedder(lambda texts: emb[N_OLD : N_OLD + len(texts)])
    extra = df.assign(description="a long description")  # auto-detection alone would add this column
    res = assign_new_items(d, catalog=extra, show_progress=False)
    seen = fake.texts
    assert res.n_new == N_NEW and seen and all("description" not in t for t in seen)
    assert seen[0] == "title: t"


def test_ids_only_catalog_with_embeddings_in_memory(tmp_path):
    """With embeddings given, a catalog of ids alone is enough, in memory as in streaming."""
    n = 120
    (tmp_path / "ids.csv").write_text("item_id\n" + "".join(f"i{i}\n" for i in range(n)))
    np.save(tmp_path / "e.npy", clustered_embeddings(n, dim=16))
    (tmp_path / "c.toml").write_text("[model]\ncodebook_sizes = [4, 4]\nhidden_dims = [16]\n[train]\nepochs = 2\n")
    args = ["build", "--catalog", str(tmp_path / "ids.csv"), "--out", str(tmp_path / "out"), "--config", str(tmp_path / "c.toml"), "--no-progress"]
    assert main([*args, "--embeddings", str(tmp_path / "e.npy")]) == 0
    assert len(pd.read_parquet(tmp_path / "out" / "semantic_ids.parquet")) == n
    from semantic_ids.stages.catalog import CatalogError, load_catalog

    with pytest.raises(CatalogError, match="no text columns"):  # without embeddings the text is needed
        load_catalog(tmp_path / "ids.csv")
    assert main(args) == 2
