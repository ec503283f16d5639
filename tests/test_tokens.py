"""Tests for semantic_ids.export.tokens: codes <-> "<a_12><b_200>..." strings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semantic_ids.export.tokens import LETTERS, TokenError, format_sid, format_sids, parse_sid

codes_st = st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=len(LETTERS))


def test_format_sid():
    assert format_sid((12, 200, 7, 0)) == "<a_12><b_200><c_7><d_0>"
    assert format_sid([5]) == "<a_5>"
    assert format_sid(np.array([3, 1], dtype=np.int32)) == "<a_3><b_1>"


def test_format_sid_too_many_levels():
    with pytest.raises(TokenError, match="at most 26 levels, got 27"):
        format_sid([0] * 27)


def test_format_sid_26_levels_uses_z():
    s = format_sid(list(range(26)))
    assert s.endswith("<z_25>")
    assert parse_sid(s) == tuple(range(26))


def test_parse_sid():
    assert parse_sid("<a_12><b_200><c_7><d_0>") == (12, 200, 7, 0)
    assert parse_sid("  <a_1><b_2>\n") == (1, 2)  # outer whitespace is ignored


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_parse_prefixes(depth):
    full = (12, 200, 7)
    assert parse_sid(format_sid(full[:depth])) == full[:depth]


def test_format_sids_matches_format_sid():
    codes = np.array([[1, 2, 3], [0, 0, 0], [255, 17, 4]])
    assert format_sids(codes) == [format_sid(row) for row in codes]


def test_format_sids_edge_shapes():
    assert format_sids(np.zeros((0, 3), dtype=np.int64)) == []
    assert format_sids(np.zeros((2, 0), dtype=np.int64)) == ["", ""]


@pytest.mark.parametrize("shape", [(3,), (2, 2, 2)])
def test_format_sids_rejects_non_2d(shape):
    with pytest.raises(TokenError, match=r"should be 2-D .*got shape"):
        format_sids(np.zeros(shape, dtype=np.int64))


def test_format_sids_too_many_levels():
    with pytest.raises(TokenError, match="at most 26 levels"):
        format_sids(np.zeros((1, 27), dtype=np.int64))


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("", r"empty semantic ID ''"),
        ("   ", r"empty semantic ID"),
        ("<a_1><b_2", r"at position 5"),
        ("<a_1> <b_2>", r"at position 5"),
        ("a_1", r"at position 0"),
        ("<A_1>", r"at position 0"),
        ("<a_-1>", r"at position 0"),
        ("<a_x>", r"at position 0"),
        ("<a_1>junk", r"at position 5"),
        ("<b_1>", r"token 0 is <b_…>, expected <a_…>"),
        ("<a_1><c_2>", r"token 1 is <c_…>, expected <b_…>"),
        ("<a_1><a_2>", r"token 1 is <a_…>, expected <b_…>"),
    ],
)
def test_parse_malformed(text, pattern):
    with pytest.raises(TokenError, match=pattern):
        parse_sid(text)


def test_parse_malformed_quotes_input():
    with pytest.raises(TokenError, match=r"'<a_1>oops'"):
        parse_sid("<a_1>oops")


@pytest.mark.parametrize("value", [None, 12, (1, 2), b"<a_1>"])
def test_parse_non_string(value):
    with pytest.raises(TokenError, match=f"should be a string, got {type(value).__name__}"):
        parse_sid(value)


def test_parse_more_than_26_levels_rejected():
    # A 27th token cannot have a valid letter.
    text = format_sid(list(range(26))) + "<a_0>"
    with pytest.raises(TokenError, match=r"token 26 is <a_…>, expected <\?_…>"):
        parse_sid(text)


def test_token_error_is_value_error():
    assert issubclass(TokenError, ValueError)


def test_parse_rejects_non_ascii_digits():
    with pytest.raises(TokenError):
        parse_sid("<a_\u0661\u0662>")  # ARABIC-INDIC DIGITS ONE, TWO


# --------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(codes_st)
def test_round_trip(codes):
    s = format_sid(codes)
    assert parse_sid(s) == tuple(codes)
    # Canonical form: formatting what was parsed gives the same string.
    assert format_sid(parse_sid(s)) == s


@settings(max_examples=100, deadline=None)
@given(codes_st, st.data())
def test_prefix_property(codes, data):
    depth = data.draw(st.integers(min_value=1, max_value=len(codes)))
    full, prefix = format_sid(codes), format_sid(codes[:depth])
    assert full.startswith(prefix)
    assert parse_sid(prefix) == tuple(codes[:depth])


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=1, max_value=6).flatmap(
        lambda n_levels: st.lists(
            st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=n_levels, max_size=n_levels),
            min_size=1,
            max_size=20,
        )
    )
)
def test_format_sids_round_trip(rows):
    strings = format_sids(np.array(rows, dtype=np.int64))
    assert [parse_sid(s) for s in strings] == [tuple(r) for r in rows]
    assert strings == [format_sid(r) for r in rows]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>_abc0129 x", max_size=20))
def test_parse_never_crashes_unexpectedly(text):
    # Any string either parses to codes that format back to the same tokens, or raises TokenError.
    try:
        codes = parse_sid(text)
    except TokenError:
        return
    assert codes
    assert parse_sid(format_sid(codes)) == codes
