"""Tests for semantic_ids.stages.metrics on hand-computed inputs, plus invariants."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semantic_ids.stages.metrics import code_stats, collision_rate, group_sizes, perplexity

# Four items; (0, 0) is shared by two of them.
CODES = np.array([[0, 0], [0, 0], [0, 1], [1, 1]])


def test_group_sizes_hand_made():
    assert sorted(group_sizes(CODES).tolist()) == [1, 1, 2]
    assert sorted(group_sizes(np.array([[5, 5, 5]] * 3 + [[5, 5, 4]])).tolist()) == [1, 3]


def test_group_sizes_distinguishes_levels():
    # Same multiset of codes in different positions are different tuples.
    assert sorted(group_sizes(np.array([[1, 2], [2, 1]])).tolist()) == [1, 1]


def test_group_sizes_dtypes_and_negatives():
    assert group_sizes(np.array([[1, 2], [1, 2]], dtype=np.int32)).tolist() == [2]
    assert sorted(group_sizes(np.array([[-1, 2], [-1, 2], [1, 2]])).tolist()) == [1, 2]
    # A non-contiguous view gives the same groups as a copy.
    wide = np.array([[0, 9, 0], [0, 8, 0], [1, 7, 1]])
    assert sorted(group_sizes(wide[:, ::2]).tolist()) == [1, 2]


def test_group_sizes_empty():
    out = group_sizes(np.zeros((0, 3), dtype=np.int64))
    assert out.shape == (0,)


def test_collision_rate_hand_made():
    assert collision_rate(CODES) == pytest.approx(1 - 3 / 4)
    assert collision_rate(CODES[:, :1]) == pytest.approx(1 - 2 / 4)
    assert collision_rate(np.array([[0], [1], [2]])) == 0.0
    assert collision_rate(np.zeros((5, 2), dtype=np.int64)) == pytest.approx(1 - 1 / 5)
    assert collision_rate(np.zeros((0, 2), dtype=np.int64)) == 0.0


def test_perplexity_hand_made():
    # Uniform over k codes -> k.
    assert perplexity(np.array([0, 1, 2, 3]), 4) == pytest.approx(4.0)
    # One code used -> 1.
    assert perplexity(np.array([2, 2, 2]), 4) == pytest.approx(1.0)
    # p = (3/4, 1/4): exp(-(0.75 ln 0.75 + 0.25 ln 0.25)).
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert perplexity(np.array([0, 0, 0, 1]), 2) == pytest.approx(expected)
    assert expected == pytest.approx(1.7547653506)
    # Unused codes do not change it.
    assert perplexity(np.array([0, 0, 0, 1]), 256) == pytest.approx(expected)


def test_perplexity_empty_is_one():
    assert perplexity(np.array([], dtype=np.int64), 8) == pytest.approx(1.0)


def test_code_stats_hand_made():
    stats = code_stats(CODES, (4, 4))
    assert stats["n_items"] == 4
    assert stats["codes_used"] == [2, 2]
    assert stats["codebook_sizes"] == [4, 4]
    assert stats["perplexity"] == pytest.approx([1.7547653506, 2.0])
    assert stats["collision_rate"] == pytest.approx(0.25)
    assert stats["n_collided_items"] == 2
    assert stats["largest_group"] == 2
    assert stats["collision_rate_by_depth"] == pytest.approx([0.5, 0.25])


def test_code_stats_no_collisions():
    stats = code_stats(np.array([[0, 1], [1, 0], [2, 2]]), (3, 3))
    assert stats["collision_rate"] == 0.0
    assert stats["n_collided_items"] == 0
    assert stats["largest_group"] == 1
    assert stats["perplexity"] == pytest.approx([3.0, 3.0])


def test_code_stats_empty():
    stats = code_stats(np.zeros((0, 2), dtype=np.int64), (4, 4))
    assert stats["n_items"] == 0
    assert stats["codes_used"] == [0, 0]
    assert stats["collision_rate"] == 0.0
    assert stats["n_collided_items"] == 0
    assert stats["largest_group"] == 0


def test_code_stats_plain_python_types():
    stats = code_stats(CODES, (4, 4))
    json.dumps(stats)  # serialisable as-is: no numpy scalars
    assert all(type(v) is int for v in stats["codes_used"])
    assert type(stats["largest_group"]) is int


# --------------------------------------------------------------------------- invariants


@st.composite
def code_arrays(draw):
    n = draw(st.integers(min_value=1, max_value=40))
    n_levels = draw(st.integers(min_value=1, max_value=4))
    k = draw(st.integers(min_value=2, max_value=5))
    rows = draw(
        st.lists(st.lists(st.integers(0, k - 1), min_size=n_levels, max_size=n_levels), min_size=n, max_size=n)
    )
    return np.array(rows, dtype=np.int64), k


@settings(max_examples=100, deadline=None)
@given(code_arrays())
def test_metrics_invariants(data):
    codes, k = data
    n, n_levels = codes.shape
    sizes = group_sizes(codes)
    assert sizes.sum() == n
    assert len(sizes) == len({tuple(r) for r in codes.tolist()})
    assert collision_rate(codes) == pytest.approx(1 - len(sizes) / n)

    stats = code_stats(codes, (k,) * n_levels)
    by_depth = stats["collision_rate_by_depth"]
    # Adding a level can only split groups.
    assert all(a >= b - 1e-12 for a, b in zip(by_depth, by_depth[1:]))
    assert by_depth[-1] == pytest.approx(stats["collision_rate"])
    for i, p in enumerate(stats["perplexity"]):
        used = stats["codes_used"][i]
        assert 1.0 - 1e-9 <= p <= used + 1e-9 <= k + 1e-9

    # Row order does not matter.
    perm = np.random.default_rng(0).permutation(n)
    shuffled = code_stats(codes[perm], (k,) * n_levels)
    for key in ("n_items", "codes_used", "collision_rate", "n_collided_items", "largest_group"):
        assert shuffled[key] == pytest.approx(stats[key])
    assert shuffled["perplexity"] == pytest.approx(stats["perplexity"])
