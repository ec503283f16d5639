"""Tests for semantic_ids.stages.catalog: reading files, id validation, text building."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from semantic_ids.stages.catalog import (
    Catalog,
    CatalogError,
    default_template,
    load_catalog,
    parse_template,
    read_table,
    render_texts,
    text_like_columns,
    validate_ids,
)
from semantic_ids.config import CatalogConfig


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "title": ["Red Shoe", None, "Blue Hat"],
            "tags": [["sport", "red"], None, []],
            "price": [1.5, 2.0, None],
            "stock": [1, 2, 3],
        }
    )


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reading


def test_read_parquet_with_list_column(tmp_path):
    path = tmp_path / "c.parquet"
    _frame().to_parquet(path)
    cat = load_catalog(path)
    assert isinstance(cat, Catalog)
    assert cat.ids.tolist() == ["i1", "i2", "i3"]
    assert cat.ids.dtype == object
    assert len(cat) == 3
    # tags round-trips through Parquet as arrays of str and is still detected as text.
    assert cat.text_columns == ("title", "tags")
    assert cat.texts == ["title: Red Shoe; tags: sport, red", "", "title: Blue Hat"]


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_suffixes(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    pd.DataFrame({"item_id": [10, 20], "title": ["a", "b"]}).to_parquet(path)
    assert load_catalog(path).ids.tolist() == [10, 20]


def test_read_csv(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("item_id,title,brand\n3,Shoe,Acme\n1,Hat,\n2,,Zed\n", encoding="utf-8")
    cat = load_catalog(path, CatalogConfig(template="Title: {title}; Brand: {brand}"))
    assert cat.ids.dtype == np.int64
    assert cat.ids.tolist() == [3, 1, 2]  # file order, not sorted
    assert cat.texts == ["Title: Shoe; Brand: Acme", "Title: Hat", "Brand: Zed"]
    assert cat.frame["title"].tolist()[0] == "Shoe"


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".json"])
def test_read_jsonl_suffixes(tmp_path, suffix):
    path = _write_jsonl(tmp_path / f"c{suffix}", [{"item_id": "a", "title": "x"}, {"item_id": "b", "title": "y"}])
    cat = load_catalog(path)
    assert cat.ids.tolist() == ["a", "b"]
    assert cat.texts == ["title: x", "title: y"]


def test_read_jsonl_skips_blank_lines_and_keeps_lists(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"item_id": 1, "title": "x", "tags": ["a", "b"]}\n\n   \n{"item_id": 2, "title": "y", "tags": ["c"]}\n',
        encoding="utf-8",
    )
    cat = load_catalog(path, CatalogConfig(list_separator=" | "))
    assert cat.ids.tolist() == [1, 2]
    assert cat.texts == ["title: x; tags: a | b", "title: y; tags: c"]


def test_read_suffix_is_case_insensitive(tmp_path):
    path = _write_jsonl(tmp_path / "C.JSONL", [{"item_id": 1, "title": "x"}])
    assert load_catalog(path).ids.tolist() == [1]


def test_dataframe_source_resets_index():
    df = pd.DataFrame({"item_id": [1, 2], "title": ["a", "b"]}, index=[7, 9])
    cat = load_catalog(df)
    assert cat.frame.index.tolist() == [0, 1]
    assert cat.ids.tolist() == [1, 2]


# --------------------------------------------------------------------------- read errors


def test_unknown_suffix(tmp_path):
    path = tmp_path / "catalog.txt"
    path.write_text("item_id\n1\n")
    with pytest.raises(CatalogError, match=r"catalog\.txt: unknown catalog format '\.txt'.*\.parquet"):
        load_catalog(path)


def test_missing_file(tmp_path):
    with pytest.raises(CatalogError, match=r"nope\.csv: catalog file not found"):
        read_table(tmp_path / "nope.csv")


def test_invalid_json_line_names_line_number(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"item_id": 1, "title": "x"}\n\n{"item_id": 2, "title": \n', encoding="utf-8")
    # Line 3 counts the blank line 2.
    with pytest.raises(CatalogError, match=r"c\.jsonl:3: invalid JSON"):
        load_catalog(path)


def test_json_line_not_an_object(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"item_id": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"c\.jsonl:2: each line should be a JSON object, got list"):
        load_catalog(path)


def test_jsonl_non_utf8_names_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"item_id": 1, "title": "a"}\n{"item_id": 2, "title": "caf\xe9"}\n')
    with pytest.raises(CatalogError, match=r"c\.jsonl:2: not valid UTF-8"):
        load_catalog(path)


def test_csv_non_utf8(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(b"item_id,title\n1,caf\xe9 cr\xe8me\n")
    with pytest.raises(CatalogError, match=r"c\.csv: not valid UTF-8"):
        load_catalog(path)


def test_zero_byte_csv(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(b"")
    with pytest.raises(CatalogError, match=r"c\.csv: cannot read as csv"):
        load_catalog(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(CatalogError, match=r"c\.parquet: cannot read as parquet"):
        load_catalog(path)


@pytest.mark.parametrize(
    "name, content",
    [("c.csv", "item_id,title\n"), ("c.jsonl", ""), ("c.jsonl", "\n\n")],
)
def test_empty_catalog(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match="the catalog is empty"):
        load_catalog(path)


def test_empty_dataframe():
    with pytest.raises(CatalogError, match="catalog: the catalog is empty"):
        load_catalog(pd.DataFrame({"item_id": [], "title": []}))


# --------------------------------------------------------------------------- ids


def test_missing_id_column_names_it_and_lists_columns(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("sku,title\n1,a\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"id column 'item_id' not found; columns are \['sku', 'title'\]"):
        load_catalog(path)
    # ... and the configured id column is used.
    assert load_catalog(path, CatalogConfig(id_column="sku")).ids.tolist() == [1]


def test_null_ids_name_rows(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("item_id,title\n1,a\n,b\n3,c\n,d\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"2 row\(s\) have a null 'item_id', e\.g\. 0-based rows \[1, 3\]"):
        load_catalog(path)


def test_null_string_ids_in_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "c.jsonl", [{"item_id": "a", "t": "x"}, {"item_id": None, "t": "y"}])
    with pytest.raises(CatalogError, match=r"1 row\(s\) have a null 'item_id', e\.g\. 0-based rows \[1\]"):
        load_catalog(path)


def test_duplicate_ids_name_values_and_rows(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("item_id,title\na,x\nb,y\na,z\nc,w\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"1 duplicate 'item_id' value\(s\), e\.g\. \['a'\] \(0-based rows \[0, 2\]\)"):
        load_catalog(path)


def test_duplicate_int_ids():
    df = pd.DataFrame({"item_id": [5, 6, 5, 6, 7], "t": list("abcde")})
    with pytest.raises(CatalogError, match=r"2 duplicate 'item_id' value\(s\), e\.g\. \[5, 6\] \(0-based rows \[0, 1, 2, 3\]\)"):
        load_catalog(df)


def test_mixed_id_types_name_examples(tmp_path):
    path = _write_jsonl(
        tmp_path / "c.jsonl",
        [{"item_id": 1, "t": "x"}, {"item_id": 2, "t": "y"}, {"item_id": "abc", "t": "z"}],
    )
    with pytest.raises(CatalogError, match=r"mixes id types: int \(0-based row 0: 1\), str \(0-based row 2: 'abc'\)"):
        load_catalog(path)


def test_integer_valued_float_ids_become_int64():
    ids = validate_ids(pd.DataFrame({"item_id": [1.0, 2.0, 30.0]}), "item_id")
    assert ids.dtype == np.int64
    assert ids.tolist() == [1, 2, 30]


def test_non_integer_float_ids_rejected():
    with pytest.raises(CatalogError, match=r"'item_id' has non-integer float ids, e.g. 0-based row 1: 2.5"):
        validate_ids(pd.DataFrame({"item_id": [1.0, 2.5]}), "item_id")


def test_non_integer_float_id_named_in_error():
    with pytest.raises(CatalogError, match=r"row 1: 2\.5"):
        validate_ids(pd.DataFrame({"item_id": [1.0, 2.5]}), "item_id")


def test_bool_ids_rejected():
    with pytest.raises(CatalogError, match=r"bool \(0-based row 0: True\)"):
        validate_ids(pd.DataFrame({"item_id": [True, False]}), "item_id")


def test_validate_ids_source_in_message():
    with pytest.raises(CatalogError, match=r"^my.csv: id column 'x' not found"):
        validate_ids(pd.DataFrame({"item_id": [1]}), "x", source="my.csv")


def test_csv_zero_padded_string_ids_kept(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("item_id,title\n001,a\n002,b\n", encoding="utf-8")
    assert load_catalog(path).ids.tolist() == ["001", "002"]


# --------------------------------------------------------------------------- text columns


def test_text_like_columns_detection():
    df = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["x", None, "z"],
            "tags": [["p", "q"], [], None],
            "price": [1.0, 2.0, None],
            "stock": [1, 2, 3],
            "flag": [True, False, True],
            "mixed": ["x", 3, "y"],
            "numlist": [[1, 2], [3], []],
            "allnull": [None, None, None],
        }
    )
    assert text_like_columns(df, exclude="item_id") == ("title", "tags")


def test_id_column_excluded_from_text_columns():
    df = pd.DataFrame({"sku": ["a", "b"], "title": ["x", "y"]})
    assert text_like_columns(df, exclude="sku") == ("title",)
    assert load_catalog(df, CatalogConfig(id_column="sku")).text_columns == ("title",)


def test_no_text_columns_is_an_error():
    df = pd.DataFrame({"item_id": [1, 2], "price": [1.0, 2.0], "stock": [3, 4]})
    with pytest.raises(CatalogError, match=r"no text columns found besides 'item_id'.*\['item_id', 'price', 'stock'\]"):
        load_catalog(df)


def test_explicit_text_columns_may_be_numeric():
    cat = load_catalog(_frame(), CatalogConfig(text_columns=("title", "price", "stock")))
    assert cat.text_columns == ("title", "price", "stock")
    # Integer-valued floats print without ".0"; missing values drop their label.
    assert cat.texts == ["title: Red Shoe; price: 1.5; stock: 1", "price: 2; stock: 2", "title: Blue Hat; stock: 3"]


def test_explicit_text_column_missing():
    with pytest.raises(CatalogError, match=r"text column\(s\) \['brand'\] not found"):
        load_catalog(_frame(), CatalogConfig(text_columns=("title", "brand")))


def test_default_template():
    assert default_template(["title", "brand"]) == [("title: ", "title", ""), ("; brand: ", "brand", "")]


def test_text_column_name_with_colon():
    df = pd.DataFrame({"item_id": [1, 2], "size:cm": ["10", "12"]})
    assert load_catalog(df).texts == ["size:cm: 10", "size:cm: 12"]


def test_text_column_name_all_digits():
    df = pd.DataFrame({"item_id": [1, 2], "2024": ["a", "b"]})
    assert load_catalog(df).texts == ["2024: a", "2024: b"]


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    "title, brand, expected",
    [
        ("Shoe", "Acme", "Title: Shoe; Brand: Acme"),
        ("Shoe", None, "Title: Shoe"),
        (None, "Acme", "Brand: Acme"),
        (None, None, ""),
        ("  Shoe  ", "   ", "Title: Shoe"),  # values are stripped; blank counts as missing
    ],
)
def test_template_missing_values_drop_their_label(title, brand, expected):
    df = pd.DataFrame({"title": [title], "brand": [brand]}, dtype=object)
    assert render_texts(df, "Title: {title}; Brand: {brand}") == [expected]


def test_template_nan_and_pd_na_are_missing():
    df = pd.DataFrame({"title": ["x", "y"], "brand": [float("nan"), pd.NA]}, dtype=object)
    assert render_texts(df, "Title: {title}; Brand: {brand}") == ["Title: x", "Title: y"]


def test_template_list_values_joined():
    df = pd.DataFrame({"tags": [["a", " b ", None, ""], [], None]})
    assert render_texts(df, "Tags: {tags}", list_sep=" / ") == ["Tags: a / b", "", ""]


def test_template_literal_without_fields_and_format_spec():
    df = pd.DataFrame({"price": [1.5, 2.0]})
    assert render_texts(df, "Price {price:.2f} USD") == ["Price 1.50 USD", "Price 2.00 USD"]


def test_template_via_config_sets_text_columns_in_order():
    df = pd.DataFrame({"item_id": [1], "title": ["x"], "brand": ["y"], "other": ["z"]})
    cat = load_catalog(df, CatalogConfig(template="{brand} - {title} ({brand})"))
    assert cat.text_columns == ("brand", "title")
    assert cat.texts == ["y - x (y)"]


def test_template_missing_column_is_named():
    with pytest.raises(CatalogError, match=r"template uses column\(s\) \['brand'\] that the catalog lacks"):
        load_catalog(_frame(), CatalogConfig(template="Title: {title}; Brand: {brand}"))


@pytest.mark.parametrize("template", ["{0}", "{}", "Title: {}"])
def test_template_positional_fields_rejected(template):
    with pytest.raises(CatalogError, match="fields must name columns"):
        parse_template(template)


def test_template_malformed():
    with pytest.raises(CatalogError, match=r"template '\{title' is malformed"):
        parse_template("{title")


def test_parse_template_pieces():
    assert parse_template("A: {a}; B: {b:>3}!") == [("A: ", "a", ""), ("; B: ", "b", ">3"), ("!", None, "")]


def test_template_all_missing_gives_empty_text_with_trailing_literal():
    df = pd.DataFrame({"item_id": [1, 2], "title": ["Shoe", None], "brand": ["Acme", None]})
    cat = load_catalog(df, CatalogConfig(template="{title} (by {brand})"))
    assert cat.texts == ["Shoe (by Acme)", ""]
    assert cat.n_empty_text == 1


def test_template_bad_format_spec_is_catalog_error():
    df = pd.DataFrame({"item_id": [1], "price": ["cheap"]})
    with pytest.raises(CatalogError, match="price"):
        load_catalog(df, CatalogConfig(template="{price:.2f}"))


# --------------------------------------------------------------------------- empty texts


def test_n_empty_text_and_warning(caplog):
    df = pd.DataFrame({"item_id": [1, 2, 3, 4], "title": ["a", None, "", "  "]})
    with caplog.at_level(logging.WARNING, logger="semantic_ids.stages.catalog"):
        cat = load_catalog(df)
    assert cat.texts == ["title: a", "", "", ""]
    assert cat.n_empty_text == 3
    assert any("3 item(s) have empty text" in r.getMessage() for r in caplog.records)


def test_no_empty_text_no_warning(caplog):
    df = pd.DataFrame({"item_id": [1, 2], "title": ["a", "b"]})
    with caplog.at_level(logging.WARNING, logger="semantic_ids.stages.catalog"):
        cat = load_catalog(df)
    assert cat.n_empty_text == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_catalog_is_frozen():
    cat = load_catalog(pd.DataFrame({"item_id": [1], "title": ["a"]}))
    with pytest.raises(AttributeError):
        cat.texts = []  # type: ignore[misc]


def test_csv_na_strings_are_values(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("item_id,title\nNA,None\nnull,N/A\nx,\n")
    cat = load_catalog(p)
    assert cat.ids.tolist() == ["NA", "null", "x"]
    assert cat.texts == ["title: None", "title: N/A", ""]


def test_huge_unsigned_ids_rejected():
    df = pd.DataFrame({"item_id": np.array([1, 2**64 - 1], dtype=np.uint64), "title": ["a", "b"]})
    with pytest.raises(CatalogError, match="does not fit in a signed 64-bit"):
        load_catalog(df)
