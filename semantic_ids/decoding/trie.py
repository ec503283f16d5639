"""Prefix trie of all valid semantic IDs, as flat tensors for batched constrained decoding.

Layout (after STATIC, Su et al. 2026, "Vectorizing the Trie"): node ids at depth
``d`` (codes consumed, 0..L) are ``0..n_nodes[d]-1`` in lexicographic order of
their prefix; the root is node 0 at depth 0 and depth-L nodes are the IDs. Since
nodes are numbered in lexicographic order, the children of all depth-``d`` nodes,
listed parent by parent and code by code, are exactly the depth-``d+1`` nodes in
order. So each level is stored CSR-style as

    indptr[d]  (n_nodes[d] + 1,) int64   children of node p are indptr[d][p]:indptr[d][p+1]
    keys[d]    (n_nodes[d+1],)    int64  key of child j = parent * V_d + code, ascending

and the child's node id is its position. Two derived indexes make lookups a
single gather where they fit their memory caps:

- ``advance``: a dense child table ``(n_nodes[d] * V_d,)`` (-1 = no child) for the
  first levels (``dense_cap`` entries); below, one ``searchsorted`` of
  ``node * V_d + code`` in ``keys[d]``.
- both, where every node's children are codes ``0..k-1`` (the collision level):
  ``arange(V_d) < k`` and ``indptr[d][node] + code``, no table.
- ``next_mask``: a bool table ``(n_nodes[d] + 1, V_d)`` of allowed codes (the
  extra row, all False, serves dead prefixes), one row gather, while it fits
  ``mask_cap`` bytes; else a padded window of each row's children is gathered
  and scattered, whose cost grows with the level's largest branching.

Nothing loops over rows in Python and no step synchronises with the host, so it
runs unchanged on CUDA after :meth:`PrefixTrie.to`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..export.atomic import atomic_write_bytes
from ..export.tokens import format_sid
from ..export.io import read_export
from .vocab import SIDVocab, VocabError, _check_codes
from ..errors import TrieError

# Dense child tables up to 4M entries (16 MiB as int32) per level: covers the
# first two levels of 256 x 256 codebooks; deeper levels use searchsorted.
DENSE_CAP = 1 << 22
# Bool mask tables up to 64 MiB per level: 256K nodes of 256 codes.
MASK_CAP = 1 << 26
FORMAT = "semantic-ids prefix trie"
VERSION = 1


def _sort_rows(codes: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Permutation that sorts rows lexicographically: one argsort of a packed key
    when the code space fits int64, else a lexsort."""
    n, levels = codes.shape
    if levels == 0 or n == 0:
        return np.arange(n, dtype=np.int64)
    if float(np.prod([float(k) for k in sizes])) < 2.0**62:
        key = np.zeros(n, dtype=np.int64)
        for lvl in range(levels):
            key *= sizes[lvl]
            key += codes[:, lvl]
        return np.argsort(key, kind="stable")
    return np.lexsort(codes.T[::-1])


class PrefixTrie:
    """All valid IDs as flat tensors (see the module docstring for the layout).

    Build with :meth:`from_codes` or :meth:`from_export`; ``leaf_rows`` (N,) maps a
    depth-L node id to the row of the codes array the trie was built from.
    """

    def __init__(self, *, level_sizes: Sequence[int], indptr: Sequence[torch.Tensor], keys: Sequence[torch.Tensor],
                 leaf_rows: torch.Tensor, dense_cap: int = DENSE_CAP, mask_cap: int = MASK_CAP) -> None:  # fmt: skip
        self.level_sizes = tuple(int(k) for k in level_sizes)
        self.n_levels = len(self.level_sizes)
        self.dense_cap = int(dense_cap)
        self.mask_cap = int(mask_cap)
        self._indptr = [t.to(torch.int64) for t in indptr]
        self._keys = [t.to(torch.int64) for t in keys]
        self.leaf_rows = leaf_rows.to(torch.int64)
        self.n_nodes = (1,) + tuple(int(k.numel()) for k in self._keys)
        self.n_items = self.n_nodes[-1]
        self._check()
        # most children of any node per level: the width of next_mask's gather window
        self._max_children = [int((p[1:] - p[:-1]).max()) if p.numel() > 1 else 0 for p in self._indptr]
        self._ranges = [self._is_range(d) for d in range(self.n_levels)]
        self._dense = [self._dense_table(d) for d in range(self.n_levels)]
        self._masks = [self._mask_table(d) for d in range(self.n_levels)]

    # -- construction --------------------------------------------------------

    @classmethod
    def from_codes(cls, codes: np.ndarray, level_sizes: Sequence[int] | None = None, *,
                   dense_cap: int = DENSE_CAP, mask_cap: int = MASK_CAP) -> PrefixTrie:  # fmt: skip
        """Trie of the rows of ``codes`` (N, L) int.

        Rows must be unique (a :class:`TrieError` names a duplicate ID and its
        rows). ``level_sizes`` default to ``max + 1`` per level. Built with one
        sort and a few vectorised passes; no per-item Python. ``dense_cap``
        (entries) and ``mask_cap`` (bytes) bound the derived lookup tables per
        level; 0 keeps every level pure CSR.
        """
        if isinstance(codes, torch.Tensor):
            codes = codes.detach().cpu().numpy()
        try:
            arr = _check_codes(codes, level_sizes)  # once: 2-D, integer, inside the given sizes
            if level_sizes is not None and len(level_sizes) != arr.shape[1]:
                raise VocabError(f"{len(level_sizes)} level sizes for codes with {arr.shape[1]} levels")
            if level_sizes is None and len(arr) == 0:
                raise VocabError("cannot infer level sizes from zero items; pass level_sizes")
            given = level_sizes if level_sizes is not None else (arr.max(axis=0) + 1).tolist()
            sizes = SIDVocab(tuple(given)).level_sizes
        except VocabError as exc:
            raise TrieError(str(exc)) from None
        n, levels = arr.shape
        order = _sort_rows(arr, sizes)
        cols = np.ascontiguousarray(arr.T)[:, order]  # (L, N): each level's codes in sorted row order
        # new_at[d, i]: sorted row i + 1 starts a new depth-(d + 1) node (its first d + 1 codes differ)
        new_at = np.logical_or.accumulate(cols[:, 1:] != cols[:, :-1], axis=0)
        if n > 1 and not new_at[-1].all():
            dup = arr[order[int(np.flatnonzero(~new_at[-1])[0])]]
            dup_rows = np.flatnonzero((arr == dup).all(axis=1))
            raise TrieError(
                f"duplicate ID {format_sid(dup.tolist())} {tuple(dup.tolist())} at rows {dup_rows[:5].tolist()}; "
                "every row must be a distinct ID (resolve collisions first)"
            )
        indptr, keys = [], []
        node_of_row = np.zeros(n, dtype=np.int64)  # node id at depth d of each sorted row
        n_parents = 1
        for d in range(levels):
            starts = np.concatenate([[True], new_at[d]]) if n else np.zeros(0, bool)
            first = np.flatnonzero(starts)
            parent = node_of_row[first]
            keys.append(torch.from_numpy(parent * sizes[d] + cols[d, first]))
            counts = np.bincount(parent, minlength=n_parents)
            indptr.append(torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)))
            if d + 1 < levels:
                node_of_row = np.cumsum(starts) - 1
            n_parents = len(first)
        return cls(level_sizes=sizes, indptr=indptr, keys=keys, leaf_rows=torch.from_numpy(order), dense_cap=dense_cap,
                   mask_cap=mask_cap)  # fmt: skip

    @classmethod
    def from_export(cls, export_dir: str | Path, *, dense_cap: int = DENSE_CAP, mask_cap: int = MASK_CAP) -> PrefixTrie:
        """Trie of an export's codes (model levels + collision level); ``leaf_rows``
        index the export's rows. Reads only the Parquet file and config.json."""
        ex = read_export(export_dir, model=False)
        vocab = SIDVocab.from_export(ex)
        return cls.from_codes(ex.codes, vocab.level_sizes, dense_cap=dense_cap, mask_cap=mask_cap)

    def _check(self) -> None:
        """Cheap consistency checks, so a damaged file fails here and not mid-decoding."""
        if len(self._indptr) != self.n_levels or len(self._keys) != self.n_levels:
            raise TrieError(f"trie has {len(self._indptr)} CSR levels for {self.n_levels} level sizes")
        for d in range(self.n_levels):
            p, k = self._indptr[d], self._keys[d]
            if p.numel() != self.n_nodes[d] + 1 or int(p[0]) != 0 or int(p[-1]) != k.numel():
                raise TrieError(f"trie level {d}: indptr of length {p.numel()} does not match {self.n_nodes[d]} nodes")
            if k.numel() and (bool((k[1:] <= k[:-1]).any()) or int(k[0]) < 0):
                raise TrieError(f"trie level {d}: keys are not strictly increasing")
            if k.numel() and int(k[-1]) >= self.n_nodes[d] * self.level_sizes[d]:
                raise TrieError(f"trie level {d}: a key names a node or code out of range")
        if self.leaf_rows.numel() != self.n_items:
            raise TrieError(f"leaf_rows has {self.leaf_rows.numel()} entries for {self.n_items} IDs")

    def _dense_table(self, d: int) -> torch.Tensor | None:
        """Flat (n_nodes[d] * V_d + 1,) child ids indexed by key, -1 where no child (and
        at the end, for invalid queries); None above ``dense_cap``."""
        size = self.level_sizes[d]
        if self.n_nodes[d] * size > self.dense_cap:
            return None
        k = self._keys[d]
        dtype = torch.int32 if k.numel() < 2**31 else torch.int64
        table = torch.full((self.n_nodes[d] * size + 1,), -1, dtype=dtype, device=k.device)
        table[k] = torch.arange(k.numel(), dtype=dtype, device=k.device)
        return table

    def _is_range(self, d: int) -> bool:
        """Whether every node's children are codes 0..k-1, as on the collision level
        (counters): then a mask is ``arange(V) < k`` and no table is needed."""
        k, p = self._keys[d], self._indptr[d]
        if k.numel() == 0:
            return False
        parent = torch.div(k, self.level_sizes[d], rounding_mode="floor")
        rank = torch.arange(k.numel(), device=k.device) - p[parent]
        return bool((k - parent * self.level_sizes[d] == rank).all())

    def _mask_table(self, d: int) -> torch.Tensor | None:
        """(n_nodes[d] + 1, V_d) bool, True where a code is a child; the last row is
        empty. On a range level (V_d + 1, V_d): row k allows codes 0..k-1. None
        above ``mask_cap`` bytes (a range level then compares ``arange(V_d) < k``)."""
        size, rows, k = self.level_sizes[d], self.n_nodes[d] + 1, self._keys[d]
        if self._ranges[d]:
            if (size + 1) * size > self.mask_cap:  # e.g. one level of N item ids: computed per call instead
                return None
            return torch.arange(size + 1, device=k.device)[:, None] > torch.arange(size, device=k.device)
        if rows * size > self.mask_cap:
            return None
        table = torch.zeros(rows * size, dtype=torch.bool, device=k.device)
        table[k] = True  # key = node * V + code is the flat index of (node, code)
        return table.view(rows, size)

    # -- properties ----------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.leaf_rows.device

    def to(self, device: str | torch.device) -> PrefixTrie:
        """A copy whose tensors live on ``device`` (the dense tables are rebuilt there)."""
        return PrefixTrie(
            level_sizes=self.level_sizes,
            indptr=[p.to(device) for p in self._indptr],
            keys=[k.to(device) for k in self._keys],
            leaf_rows=self.leaf_rows.to(device),
            dense_cap=self.dense_cap,
            mask_cap=self.mask_cap,
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the trie's tensors, derived tables included."""
        tensors = [self.leaf_rows, *self._indptr, *self._keys, *self._dense, *self._masks]
        return int(sum(t.numel() * t.element_size() for t in tensors if t is not None))

    def layout(self) -> list[dict[str, Any]]:
        """Per depth: node count and which index serves ``advance`` and ``next_mask``."""
        return [
            {"depth": d, "nodes": self.n_nodes[d], "children": self.n_nodes[d + 1], "max_children": self._max_children[d],
             "advance": "dense" if self._dense[d] is not None else "range" if self._ranges[d] else "searchsorted",
             "next_mask": "range" if self._ranges[d] else "csr-gather" if self._masks[d] is None else "bool"}
            for d in range(self.n_levels)
        ]  # fmt: skip

    def __repr__(self) -> str:
        return f"PrefixTrie(level_sizes={self.level_sizes}, n_nodes={self.n_nodes}, device={self.device})"

    # -- lookups ---------------------------------------------------------------

    def _tensor(self, x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=torch.int64)
        return torch.as_tensor(np.asarray(x, dtype=np.int64), device=self.device)

    def _depth(self, depth: int) -> int:
        if not 0 <= depth < self.n_levels:
            raise TrieError(f"depth {depth} has no next level; expected 0 <= depth < {self.n_levels}")
        return int(depth)

    def next_mask(self, depth: int, nodes: torch.Tensor) -> torch.Tensor:
        """Allowed next codes of depth-``depth`` nodes.

        Parameters
        ----------
        depth : number of codes consumed, 0 <= depth < L.
        nodes : (B,) int64 node ids at ``depth``; -1 (a dead prefix) allows nothing.

        Returns
        -------
        torch.Tensor
            (B, level_sizes[depth]) bool on the trie's device.
        """
        d = self._depth(depth)
        nodes = self._tensor(nodes).reshape(-1)
        size = self.level_sizes[d]
        if self.n_nodes[d] == 0:  # an empty trie
            return torch.zeros(nodes.numel(), size, dtype=torch.bool, device=self.device)
        valid = (nodes >= 0) & (nodes < self.n_nodes[d])
        table = self._masks[d]
        if table is not None and not self._ranges[d]:
            return torch.index_select(table, 0, torch.where(valid, nodes, self.n_nodes[d]))  # dead -> empty row
        safe = torch.where(valid, nodes, 0)
        indptr, keys = self._indptr[d], self._keys[d]
        start = indptr[safe]
        count = torch.where(valid, indptr[safe + 1] - start, 0)
        if self._ranges[d]:  # row k of a (V + 1, V) table is arange(V) < k
            if self._masks[d] is None:
                return torch.arange(size, device=self.device)[None, :] < count[:, None]
            return torch.index_select(self._masks[d], 0, count)
        width = torch.arange(self._max_children[d], device=self.device)
        pos = (start[:, None] + width).clamp(max=max(keys.numel() - 1, 0))  # (B, m)
        codes = keys[pos] - safe[:, None] * size if keys.numel() else pos
        # padding goes to an extra column so it can never overwrite an allowed code
        codes = torch.where(width < count[:, None], codes, size)
        mask = torch.zeros(nodes.numel(), size + 1, dtype=torch.bool, device=self.device)
        mask.scatter_(1, codes, True)
        return mask[:, :size]

    def advance(self, depth: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Child node ids at ``depth + 1``: (B,), (B,) -> (B,) int64, -1 where ``codes``
        is not a child of the node, or the node is -1."""
        d = self._depth(depth)
        nodes = self._tensor(nodes).reshape(-1)
        codes = self._tensor(codes).reshape(-1)
        if nodes.shape != codes.shape:
            raise TrieError(f"advance: {nodes.numel()} nodes but {codes.numel()} codes")
        size, n = self.level_sizes[d], self.n_nodes[d]
        valid = (nodes >= 0) & (nodes < n) & (codes >= 0) & (codes < size)
        # key of (node, code); invalid pairs get n * size, which is no key (keys < n * size)
        query = torch.where(valid, nodes * size + codes, n * size)
        table = self._dense[d]
        if table is not None:
            return torch.index_select(table, 0, query).long()  # its last entry, at n * size, is -1
        keys = self._keys[d]
        if keys.numel() == 0:
            return torch.full_like(nodes, -1)
        if self._ranges[d]:  # child = first child + code, if code < number of children
            safe = torch.where(valid, nodes, 0)
            start = self._indptr[d][safe]
            return torch.where(valid & (codes < self._indptr[d][safe + 1] - start), start + codes, -1)
        pos = torch.searchsorted(keys, query)
        hit = torch.index_select(keys, 0, pos.clamp(max=keys.numel() - 1)) == query
        return torch.where(hit, pos, -1)

    def nodes_of(self, prefixes: Any) -> torch.Tensor:
        """Prefixes (B, t) codes -> (B,) int64 node ids at depth t, -1 for an invalid prefix."""
        p = self._tensor(prefixes)
        if p.ndim != 2 or p.shape[1] > self.n_levels:
            raise TrieError(f"prefixes should be (batch, t) with t <= {self.n_levels}, got shape {tuple(p.shape)}")
        nodes = torch.zeros(p.shape[0], dtype=torch.int64, device=self.device)
        for d in range(p.shape[1]):  # one batched step per level, never per row
            nodes = self.advance(d, nodes, p[:, d])
        return nodes

    def allowed_mask(self, prefixes: Any) -> torch.Tensor:
        """Prefixes (B, t) codes, t < L -> (B, level_sizes[t]) bool of allowed next codes."""
        p = self._tensor(prefixes)
        if p.ndim != 2:
            raise TrieError(f"prefixes should be 2-D (batch, t), got shape {tuple(p.shape)}")
        return self.next_mask(p.shape[1], self.nodes_of(p))

    def allowed_next(self, prefix: Sequence[int]) -> np.ndarray:
        """Sorted allowed next codes for one prefix (empty if the prefix is not valid,
        or is already a complete ID)."""
        if len(prefix) >= self.n_levels:
            return np.zeros(0, dtype=np.int64)
        mask = self.allowed_mask(np.asarray(prefix, dtype=np.int64).reshape(1, -1))
        return torch.nonzero(mask[0]).reshape(-1).cpu().numpy()

    def rows_of(self, codes: Any) -> np.ndarray:
        """Full IDs (B, L) -> (B,) int64 row in the original codes array, -1 if not a valid ID."""
        c = self._tensor(codes)
        if c.ndim != 2 or c.shape[1] != self.n_levels:
            raise TrieError(f"codes should be (batch, {self.n_levels}), got shape {tuple(c.shape)}")
        nodes = self.nodes_of(c)
        rows = torch.where(nodes >= 0, self.leaf_rows[nodes.clamp(min=0)] if self.n_items else nodes, nodes)
        return rows.cpu().numpy()

    # -- persistence -----------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write one safetensors file (tensors + JSON metadata, no pickle), atomically."""
        from safetensors.torch import save as save_bytes

        tensors = {"leaf_rows": self.leaf_rows.cpu().contiguous()}
        for d in range(self.n_levels):
            tensors[f"indptr_{d}"] = self._indptr[d].cpu().contiguous()
            tensors[f"keys_{d}"] = self._keys[d].cpu().contiguous()
        meta = {"format": FORMAT, "version": str(VERSION), "level_sizes": json.dumps(list(self.level_sizes)),
                "dense_cap": str(self.dense_cap), "mask_cap": str(self.mask_cap)}  # fmt: skip
        path = Path(path)
        atomic_write_bytes(path, save_bytes(tensors, metadata=meta))
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> PrefixTrie:
        """Read a file written by :meth:`save` (checked for consistency)."""
        from safetensors.torch import load as load_bytes

        path = Path(path)
        try:
            data = path.read_bytes()
            header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
            meta = header.get("__metadata__") or {}
            tensors = load_bytes(data)
        except FileNotFoundError:
            raise TrieError(f"{path}: trie file not found") from None
        except Exception as exc:  # safetensors raises its own error types
            raise TrieError(f"{path}: not a readable safetensors file ({exc})") from None
        if meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
            raise TrieError(f"{path}: not a semantic-ids prefix trie (version {VERSION}); metadata {meta}")
        sizes = json.loads(meta["level_sizes"])
        try:
            levels = range(len(sizes))
            trie = cls(level_sizes=sizes, indptr=[tensors[f"indptr_{d}"].to(device) for d in levels],
                       keys=[tensors[f"keys_{d}"].to(device) for d in levels], leaf_rows=tensors["leaf_rows"].to(device),
                       dense_cap=int(meta.get("dense_cap", DENSE_CAP)), mask_cap=int(meta.get("mask_cap", MASK_CAP)))  # fmt: skip
        except (KeyError, TrieError) as exc:
            raise TrieError(f"{path}: damaged trie ({exc})") from None
        return trie
