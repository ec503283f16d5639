"""PrefixTrie against a brute-force reference (a Python set of prefixes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_ids.decoding.trie import PrefixTrie, TrieError
from tests.test_decoding_vocab import make_tiny_export


def unique_codes(n: int, sizes, seed: int) -> np.ndarray:
    """Unique random IDs, skewed so that some subtrees are full and others sparse."""
    rng = np.random.default_rng(seed)
    cols = []
    for k in sizes:
        p = rng.dirichlet(np.full(k, 0.3))
        cols.append(rng.choice(k, size=n, p=p))
    codes = np.unique(np.column_stack(cols), axis=0)
    return codes[rng.permutation(len(codes))]


class Reference:
    """The obvious implementation: a dict from each valid prefix to its allowed next codes."""

    def __init__(self, codes: np.ndarray):
        self.children: dict[tuple, set] = {}
        self.row = {tuple(r): i for i, r in enumerate(codes.tolist())}
        for r in codes.tolist():
            for d in range(len(r)):
                self.children.setdefault(tuple(r[:d]), set()).add(r[d])

    def mask(self, prefix, size) -> np.ndarray:
        m = np.zeros(size, bool)
        m[sorted(self.children.get(tuple(prefix), ()))] = True
        return m


def counter_codes(n: int, sizes, seed: int) -> np.ndarray:
    """Random prefixes with repeats, then a collision counter 0..k-1 per repeated prefix, as in an export."""
    rng = np.random.default_rng(seed)
    raw = np.column_stack([rng.integers(0, k, n) for k in sizes])
    order = np.lexsort(raw.T[::-1])
    new = np.r_[True, (raw[order][1:] != raw[order][:-1]).any(axis=1)]
    counter = np.empty(n, np.int64)
    counter[order] = np.arange(n) - np.flatnonzero(new)[np.cumsum(new) - 1]
    return np.column_stack([raw, counter])


# (level sizes, items, seed); a negative seed: the last level is a collision counter
CASES = [((4, 3, 5, 2), 90, 0), ((2, 2, 2, 2), 16, 1), ((6, 7, 3), 40, 2), ((3, 9, 4, 3), 300, 3), ((5,), 4, 4),
         ((3, 4, 3, 6), 120, -5)]  # fmt: skip


# (dense_cap, mask_cap): pure CSR; dense advance + CSR masks; + bool masks
CAPS = [(0, 0), (1 << 22, 0), (1 << 22, 1 << 26)]
MASK_KIND = {0: "csr-gather", 1 << 26: "bool"}


@pytest.fixture(params=[(c, cap) for c in CASES for cap in CAPS], ids=lambda p: f"{p[0][0]}-n{p[0][1]}-caps{p[1]}")
def case(request):
    (sizes, n, seed), (dense_cap, mask_cap) = request.param
    if seed < 0:
        codes = counter_codes(n, sizes[:-1], -seed)
        sizes = sizes[:-1] + (int(codes[:, -1].max()) + 1,)
    else:
        codes = unique_codes(n, sizes, seed)
    trie = PrefixTrie.from_codes(codes, sizes, dense_cap=dense_cap, mask_cap=mask_cap)
    layout = trie.layout()
    ranges = [r["next_mask"] == "range" for r in layout]
    assert ranges[-1] or seed >= 0  # a collision counter level is detected
    assert all((r["advance"] == "dense") == (dense_cap > 0) for r, rng in zip(layout, ranges) if not rng)
    assert all(r["next_mask"] == MASK_KIND[mask_cap] for r, rng in zip(layout, ranges) if not rng)
    return codes, sizes, trie, Reference(codes)


def prefixes_at(codes, sizes, t, seed):
    """All valid depth-t prefixes plus random (mostly invalid) ones and codes out of range."""
    rng = np.random.default_rng(seed)
    valid = np.unique(codes[:, :t], axis=0) if t else np.zeros((1, 0), np.int64)
    rand = np.column_stack([rng.integers(-1, k + 1, 50) for k in sizes[:t]]) if t else np.zeros((5, 0), np.int64)
    out = np.concatenate([valid, rand]).astype(np.int64)
    return out[rng.permutation(len(out))]


def test_allowed_mask_nodes_and_rows_agree_with_reference(case):
    codes, sizes, trie, ref = case
    assert trie.n_items == len(codes) and trie.n_nodes[0] == 1
    assert trie.n_nodes == tuple(len(np.unique(codes[:, :d], axis=0)) if d else 1 for d in range(len(sizes) + 1))
    for t in range(len(sizes)):
        p = prefixes_at(codes, sizes, t, seed=t)
        got = trie.allowed_mask(p).numpy()
        want = np.stack([ref.mask(row, sizes[t]) for row in p.tolist()])
        assert got.shape == (len(p), sizes[t])
        assert np.array_equal(got, want)
        for row in p[:10].tolist():
            assert trie.allowed_next(row).tolist() == sorted(ref.children.get(tuple(row), ()))
    full = prefixes_at(codes, sizes, len(sizes), seed=9)
    want_rows = [ref.row.get(tuple(r), -1) for r in full.tolist()]
    assert trie.rows_of(full).tolist() == want_rows
    assert np.array_equal(trie.rows_of(codes), np.arange(len(codes)))


def test_node_ids_are_lexicographic_and_advance_agrees_with_reference(case):
    codes, sizes, trie, ref = case
    for t in range(len(sizes)):
        parents = sorted(set(tuple(r) for r in codes[:, :t].tolist()))
        children = sorted(set(tuple(r) for r in codes[:, : t + 1].tolist()))
        child_id = {p: i for i, p in enumerate(children)}
        # node ids at each depth number the prefixes in lexicographic order
        parent_nodes = trie.nodes_of(np.array(parents, dtype=np.int64).reshape(len(parents), t))
        assert parent_nodes.tolist() == list(range(len(parents)))
        # every code at every node, out-of-range codes included
        tried = [(p, c) for p in parents for c in range(-1, sizes[t] + 1)]
        got = trie.advance(t, torch.tensor([parent_nodes[parents.index(p)] for p, _ in tried]), torch.tensor([c for _, c in tried]))
        want = [child_id.get(p + (c,), -1) for p, c in tried]
        assert got.tolist() == want


def test_dead_nodes_allow_nothing(case):
    codes, sizes, trie, ref = case
    L = len(sizes)
    assert trie.advance(0, torch.tensor([-1, -1]), torch.tensor([0, 1])).tolist() == [-1, -1]
    for t in range(L):
        m = trie.next_mask(t, torch.tensor([-1, trie.n_nodes[t], 0]))
        assert not m[:2].any() and m[2].any()
    with pytest.raises(TrieError, match="no next level"):
        trie.next_mask(L, torch.tensor([0]))
    assert trie.allowed_next([sizes[0]]).size == 0  # an out-of-range first code is just invalid


def test_batch_independence_and_empty_batch(case):
    codes, sizes, trie, ref = case
    p = prefixes_at(codes, sizes, len(sizes) - 1, seed=5)
    whole = trie.allowed_mask(p)
    parts = torch.cat([trie.allowed_mask(p[i : i + 3]) for i in range(0, len(p), 3)])
    assert torch.equal(whole, parts)
    assert torch.equal(trie.allowed_mask(p[::-1].copy()), whole.flip(0))
    assert trie.allowed_mask(p[:0]).shape == (0, sizes[-1])


def test_row_order_does_not_matter_beyond_leaf_rows():
    codes = unique_codes(200, (4, 3, 5, 2), seed=7)
    a = PrefixTrie.from_codes(codes, (4, 3, 5, 2))
    perm = np.random.default_rng(0).permutation(len(codes))
    b = PrefixTrie.from_codes(codes[perm], (4, 3, 5, 2))
    assert a.n_nodes == b.n_nodes
    for t in range(4):
        p = prefixes_at(codes, (4, 3, 5, 2), t, seed=t)
        assert torch.equal(a.allowed_mask(p), b.allowed_mask(p))
    assert np.array_equal(perm[b.leaf_rows.numpy()], a.leaf_rows.numpy())


def test_duplicate_rows_are_refused_naming_the_id():
    codes = np.array([[0, 1, 2], [1, 1, 1], [0, 1, 2], [2, 0, 0]])
    with pytest.raises(TrieError, match=r"duplicate ID <a_0><b_1><c_2>.*rows \[0, 2\]"):
        PrefixTrie.from_codes(codes)


def test_bad_codes_are_refused_naming_level_and_value():
    with pytest.raises(TrieError, match=r"level 2 \(c\) value 9"):
        PrefixTrie.from_codes(np.array([[0, 1, 9]]), (4, 4, 4))
    with pytest.raises(TrieError, match="2-D"):
        PrefixTrie.from_codes(np.array([0, 1, 2]))
    trie = PrefixTrie.from_codes(np.array([[0, 1], [1, 0]]))
    with pytest.raises(TrieError, match="shape"):
        trie.rows_of(np.array([[0, 1, 0]]))


def test_empty_trie_allows_nothing():
    trie = PrefixTrie.from_codes(np.zeros((0, 3), np.int64), (4, 4, 2))
    assert trie.n_nodes == (1, 0, 0, 0)
    assert not trie.allowed_mask(np.zeros((2, 0), np.int64)).any()
    assert trie.rows_of(np.zeros((1, 3), np.int64)).tolist() == [-1]


def test_save_load_round_trip_gives_identical_masks(case, tmp_path):
    codes, sizes, trie, ref = case
    path = trie.save(tmp_path / "trie.safetensors")
    back = PrefixTrie.load(path)
    assert back.level_sizes == trie.level_sizes and back.n_nodes == trie.n_nodes
    assert torch.equal(back.leaf_rows, trie.leaf_rows)
    for t in range(len(sizes)):
        p = prefixes_at(codes, sizes, t, seed=t)
        assert torch.equal(back.allowed_mask(p), trie.allowed_mask(p))
    assert np.array_equal(back.rows_of(codes), trie.rows_of(codes))
    assert [f.name for f in tmp_path.iterdir()] == ["trie.safetensors"]  # no temporary left behind


def test_load_refuses_damaged_or_foreign_files(tmp_path):
    trie = PrefixTrie.from_codes(unique_codes(50, (3, 3, 3), seed=1))
    path = trie.save(tmp_path / "trie.safetensors")
    data = bytearray(path.read_bytes())
    (tmp_path / "cut.safetensors").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(TrieError, match="cut.safetensors"):
        PrefixTrie.load(tmp_path / "cut.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(TrieError, match="not a semantic-ids prefix trie"):
        PrefixTrie.load(tmp_path / "other.safetensors")
    # a consistent-looking file whose keys were tampered with fails its checks
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    tensors["keys_1"] = tensors["keys_1"].flip(0).contiguous()
    meta = {"format": "semantic-ids prefix trie", "version": "1", "level_sizes": "[3, 3, 3]", "dense_cap": "0"}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(TrieError, match="strictly increasing"):
        PrefixTrie.load(tmp_path / "bad.safetensors")


def test_from_export_maps_leaves_to_export_rows(tmp_path):
    from semantic_ids.export.io import read_export

    path = make_tiny_export(tmp_path / "export")
    ex = read_export(path)
    trie = PrefixTrie.from_export(path)
    assert trie.n_items == len(ex.codes)
    assert np.array_equal(trie.rows_of(ex.codes), np.arange(len(ex.codes)))
    assert trie.level_sizes[:-1] == tuple(ex.config.model.codebook_sizes)


def test_mask_index_follows_the_memory_cap():
    codes = unique_codes(10, (16, 3), seed=0)
    # depth 0: 2 rows x 16 codes = 32 bytes
    assert PrefixTrie.from_codes(codes, (16, 3), mask_cap=32).layout()[0]["next_mask"] == "bool"
    assert PrefixTrie.from_codes(codes, (16, 3), mask_cap=31).layout()[0]["next_mask"] == "csr-gather"
