"""Tests for semantic_ids.stages.resolve: the counter level that makes IDs unique."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semantic_ids.stages.resolve import Resolution, id_order, resolve, resolve_counter


def test_hand_made_int_ids():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    ids = np.array([30, 5, 10, 20, 7])
    res = resolve_counter(codes, ids)
    # Group (1, 2) holds ids 30, 10, 20 -> numbered 2, 0, 1 by ascending id.
    expected = np.array([[1, 2, 2], [0, 0, 0], [1, 2, 0], [1, 2, 1], [0, 1, 0]])
    np.testing.assert_array_equal(res.codes, expected)
    assert res.codes.dtype == np.int64
    assert res.n_collided_items == 3
    assert res.largest_group == 3


def test_hand_made_string_ids_sorted_lexicographically():
    codes = np.array([[4], [4], [4], [9]])
    ids = np.array(["b", "a", "c", "a0"], dtype=object)
    res = resolve_counter(codes, ids)
    assert res.codes[:, 1].tolist() == [1, 0, 2, 0]
    # "10" < "9" as strings: string ids sort as strings, not numbers.
    res = resolve_counter(np.array([[0], [0]]), np.array(["9", "10"], dtype=object))
    assert res.codes[:, 1].tolist() == [1, 0]


def test_counter_independent_of_input_order():
    codes = np.array([[1, 1], [1, 1], [1, 1], [2, 2]])
    ids = np.array([3, 1, 2, 4])
    a = resolve_counter(codes, ids)
    perm = np.array([2, 0, 3, 1])
    b = resolve_counter(codes[perm], ids[perm])
    np.testing.assert_array_equal(a.codes[perm], b.codes)
    assert a.codes[:, 2].tolist() == [2, 0, 1, 0]


def test_groups_differ_only_in_a_later_level():
    # (0, 1) and (0, 2) share level 0 only: no collision between them.
    codes = np.array([[0, 1], [0, 2], [0, 1]])
    res = resolve_counter(codes, np.array([1, 2, 3]))
    assert res.codes[:, 2].tolist() == [0, 0, 1]
    assert res.n_collided_items == 2
    assert res.largest_group == 2


def test_no_collisions():
    codes = np.array([[0, 0], [0, 1], [1, 0]])
    res = resolve_counter(codes, np.array([1, 2, 3]))
    np.testing.assert_array_equal(res.codes[:, :2], codes)
    assert res.codes[:, 2].tolist() == [0, 0, 0]
    assert res.n_collided_items == 0
    assert res.largest_group == 1


def test_all_collide():
    codes = np.zeros((5, 3), dtype=np.int64)
    ids = np.array([50, 40, 30, 20, 10])
    res = resolve_counter(codes, ids)
    assert res.codes[:, 3].tolist() == [4, 3, 2, 1, 0]
    assert res.n_collided_items == 5
    assert res.largest_group == 5


def test_single_item():
    res = resolve_counter(np.array([[7, 8]]), np.array(["x"], dtype=object))
    assert res.codes.tolist() == [[7, 8, 0]]
    assert (res.n_collided_items, res.largest_group) == (0, 1)


def test_empty():
    res = resolve_counter(np.zeros((0, 3), dtype=np.int64), np.array([], dtype=np.int64))
    assert res.codes.shape == (0, 4)
    assert res.codes.dtype == np.int64
    assert (res.n_collided_items, res.largest_group) == (0, 0)


def test_input_not_modified():
    codes = np.array([[1, 1], [1, 1]])
    before = codes.copy()
    resolve_counter(codes, np.array([2, 1]))
    np.testing.assert_array_equal(codes, before)


def test_id_order():
    assert id_order(np.array([30, 10, 20])).tolist() == [2, 0, 1]
    assert id_order(np.array(["b", "c", "a"], dtype=object)).tolist() == [1, 2, 0]


def test_resolve_dispatch():
    codes, ids = np.array([[0], [0]]), np.array([2, 1])
    res = resolve(codes, ids)
    assert isinstance(res, Resolution)
    np.testing.assert_array_equal(res.codes, resolve_counter(codes, ids).codes)
    with pytest.raises(ValueError, match="unknown collision strategy 'suffix'"):
        resolve(codes, ids, strategy="suffix")


def test_resolution_frozen():
    res = resolve_counter(np.array([[0]]), np.array([1]))
    with pytest.raises(AttributeError):
        res.largest_group = 9  # type: ignore[misc]


# --------------------------------------------------------------------------- properties


@st.composite
def catalogs(draw):
    n = draw(st.integers(min_value=1, max_value=30))
    n_levels = draw(st.integers(min_value=1, max_value=3))
    # A small code range forces collisions.
    codes = draw(
        st.lists(
            st.lists(st.integers(min_value=0, max_value=2), min_size=n_levels, max_size=n_levels),
            min_size=n,
            max_size=n,
        )
    )
    if draw(st.booleans()):
        ids = draw(st.lists(st.integers(min_value=-(10**9), max_value=10**9), min_size=n, max_size=n, unique=True))
        ids = np.array(ids, dtype=np.int64)
    else:
        ids = draw(st.lists(st.text(alphabet="abcxyz019", min_size=1, max_size=5), min_size=n, max_size=n, unique=True))
        ids = np.array(ids, dtype=object)
    perm = np.array(draw(st.permutations(range(n))), dtype=np.int64)
    return np.array(codes, dtype=np.int64), ids, perm


@settings(max_examples=150, deadline=None)
@given(catalogs())
def test_property_unique_and_permutation_invariant(data):
    codes, ids, perm = data
    res = resolve_counter(codes, ids)
    n, n_levels = codes.shape

    # Shape, and the model's codes are kept as they were.
    assert res.codes.shape == (n, n_levels + 1)
    np.testing.assert_array_equal(res.codes[:, :n_levels], codes)

    # Every resolved row is unique.
    assert len({tuple(r) for r in res.codes.tolist()}) == n

    # Within each group, the counter is 0..g-1 in ascending id order.
    groups: dict[tuple, list] = {}
    for row, item in zip(codes.tolist(), ids.tolist()):
        groups.setdefault(tuple(row), []).append(item)
    counter_of = dict(zip(ids.tolist(), res.codes[:, -1].tolist()))
    for members in groups.values():
        assert [counter_of[m] for m in sorted(members)] == list(range(len(members)))

    # Summary numbers.
    sizes = Counter(tuple(r) for r in codes.tolist()).values()
    assert res.n_collided_items == sum(s for s in sizes if s > 1)
    assert res.largest_group == max(sizes)

    # Per-item result does not depend on input order.
    res_p = resolve_counter(codes[perm], ids[perm])
    per_item = {i: tuple(r) for i, r in zip(ids.tolist(), res.codes.tolist())}
    per_item_p = {i: tuple(r) for i, r in zip(ids[perm].tolist(), res_p.codes.tolist())}
    assert per_item == per_item_p
    assert (res_p.n_collided_items, res_p.largest_group) == (res.n_collided_items, res.largest_group)


def test_balanced_moves_colliders_to_free_last_codes():
    from semantic_ids.stages.resolve import rebalance_last_level

    codes = np.array([[0, 1], [0, 1], [0, 1], [0, 2], [1, 1], [1, 1]])
    ids = np.array(["a", "b", "c", "d", "e", "f"], dtype=object)
    # cost: distance of each mover to codes 0..3; each mover prefers a different code
    table = {0: [0.0, 0.1, 5, 0.2], 1: [0.3, 0.0, 5, 0.5], 2: [9, 0.2, 5, 0.0], 4: [0.0, 0.1, 5, 5], 5: [0.0, 0.2, 5, 5]}

    def costs(rows):
        return np.array([table[int(r)] for r in rows])

    out = rebalance_last_level(codes, ids, costs, n_codes=4)
    assert len({tuple(r) for r in out.tolist()}) == 6  # no collisions left
    assert out[3].tolist() == [0, 2]  # a non-colliding item never moves
    assert set(out[:3, 1].tolist()) == {0, 1, 3}  # code 2 is taken by d within prefix 0
    assert sorted(out[4:, 1].tolist()) == [0, 1]


def test_balanced_falls_back_to_counter_when_codes_run_out():
    from semantic_ids.stages.resolve import rebalance_last_level, resolve

    codes = np.array([[0, 0]] * 3)
    ids = np.array([1, 2, 3])
    out = rebalance_last_level(codes, ids, lambda rows: np.zeros((len(rows), 2)), n_codes=2)
    res = resolve(out, ids, "balanced")
    assert len({tuple(r) for r in res.codes.tolist()}) == 3
    assert res.largest_group == 2


def _reference_numbers(codes, ids, keep, existing):
    """Brute force: per group, in id order, the smallest number at or above the group's
    start (one past ``existing``'s largest) that no keeper holds."""
    start = {}
    for row in existing:
        key = tuple(row[:-1])
        start[key] = max(start.get(key, 0), int(row[-1]) + 1)
    groups = {}
    for i, row in enumerate(codes):
        groups.setdefault(tuple(row), []).append(i)
    out = np.full(len(codes), -1)
    for key, members in groups.items():
        held = {int(keep[i]) for i in members if keep[i] >= 0}
        c = start.get(key, 0)
        for i in sorted(members, key=lambda i: ids[i]):
            if keep[i] >= 0:
                out[i] = keep[i]
                continue
            while c in held:
                c += 1
            out[i] = c
            c += 1
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_number_collisions_options_match_a_brute_force_reference(seed):
    from semantic_ids.stages.resolve import number_collisions

    rng = np.random.default_rng(seed)
    n = 300
    codes = rng.integers(0, 3, (n, 2))
    ids = np.array([f"x{i:04d}" for i in rng.permutation(n)], dtype=object)
    keep = np.full(n, -1)
    keepers = rng.choice(n, 80, replace=False)
    for i in keepers:  # unique kept numbers per group, with gaps
        used = {int(keep[j]) for j in keepers if keep[j] >= 0 and (codes[j] == codes[i]).all()}
        keep[i] = rng.choice([v for v in range(40) if v not in used])
    existing = np.column_stack([rng.integers(0, 3, (50, 2)), rng.integers(0, 9, 50)])
    none = np.full(n, -1)
    for kw, k, ex in [({}, none, existing[:0]), ({"keep": keep}, keep, existing[:0]),
                      ({"existing": existing}, none, existing), ({"keep": keep, "existing": existing}, keep, existing)]:
        got = number_collisions(codes, ids, **kw).codes
        assert np.array_equal(got[:, :-1], codes)
        assert got[:, -1].tolist() == _reference_numbers(codes, ids, k, ex).tolist(), kw
        assert len(np.unique(got, axis=0)) == n  # unique full IDs
    assert np.array_equal(number_collisions(codes, ids).codes, resolve_counter(codes, ids).codes)


def test_the_three_numbering_paths_agree_on_the_counter_level():
    """assign (no existing items), a warm start without keepers and the in-memory counter
    level are one numbering."""
    from semantic_ids.runners.assign import resolve_against
    from semantic_ids.stages.warm.algorithms import carry_over_counter

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 4, (400, 3))
    ids = rng.permutation(10_000)[:400]
    want = resolve_counter(codes, ids).codes
    assert np.array_equal(resolve_against(np.zeros((0, 4), np.int64), codes, ids), want)
    assert np.array_equal(carry_over_counter(codes, ids, np.array([-1]), np.array([[0, 0, 0, 0]])).codes, want)
