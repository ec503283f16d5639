"""ID lookup over an export: item <-> semantic ID, prefixes, and nearest-code search.

Exact lookups use sorted integer keys (one mixed-radix int64 per code tuple)
and ``np.searchsorted``, so every lookup is O(log N), vectorised over a batch,
and a prefix of any depth is one contiguous range of the sorted keys.
Nearest-code search uses FAISS over the *distinct* code tuples' decoded
vectors (the sum of the chosen codebook vectors: the RQ-VAE's latent, or with
the k-means first level the level-1 centroid beside the weighted latent, see
``RQVAE.code_books``); see :mod:`semantic_ids.ann` for the index type chosen by size.

The object is read-only after construction; numpy and FAISS searches on it
are safe to run from several threads at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .keys import radix_strides
from .manifest import ExportError
from .tokens import TokenError, format_sids, parse_sid

if TYPE_CHECKING:
    from .ann import CodeIndex

log = logging.getLogger(__name__)


class UnknownIDError(KeyError):
    """An item id or semantic ID is unknown (a KeyError, so ``except KeyError`` works)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


LookupError_ = UnknownIDError  # deprecated name (kept so existing ``except LookupError_`` still works)


@dataclass(frozen=True)
class Neighbors:
    """Result of a nearest-code search for Q queries and k neighbours.

    ``rows``: (Q, k) int64 row numbers into the export (-1 where fewer than k
    exist); ``ids``: (Q, k) item ids (None where rows is -1); ``distances``:
    (Q, k) float32 squared L2 distances in code space (inf where rows is -1);
    ``codes``: (Q, L) the query codes (model levels only).
    """

    rows: np.ndarray
    ids: np.ndarray
    distances: np.ndarray
    codes: np.ndarray


class SemanticIDLookup:
    """Lookups over one export.

    Parameters
    ----------
    ids : (N,) item ids (unique; int64 or str objects)
    codes : (N, L + 1) int64 resolved codes (model levels + collision level)
    codebook_sizes : codes per model level (length L)
    codebooks : optional list of L (K_l, D) float arrays; enables nearest-code search
    code_split : with the RQ-VAE's k-means first level, the input dimension: level 1's
        codebook fills the first ``code_split`` dimensions of code space and the
        search groups tuples by level-1 code (exact; see :mod:`semantic_ids.ann`)
    model : optional RQVAE; enables embedding and text queries
    embed_fn : optional callable(list[str]) -> (n, input_dim) embeddings
    """

    def __init__(
        self,
        ids: np.ndarray,
        codes: np.ndarray,
        codebook_sizes: Sequence[int],
        *,
        codebooks: Sequence[np.ndarray] | None = None,
        model=None,
        embed_fn=None,
        index_kind: str = "auto",
        code_split: int | None = None,
    ):
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != len(codebook_sizes) + 1:
            raise ValueError(f"codes should be (N, {len(codebook_sizes) + 1}), got {codes.shape}")
        self.ids = np.asarray(ids)
        self.codes = codes
        self.n_levels = len(codebook_sizes)
        self.collision_size = int(codes[:, -1].max()) + 1 if len(codes) else 1
        self.sizes = np.array([*codebook_sizes, self.collision_size], dtype=np.int64)
        if float(np.prod(self.sizes.astype(np.float64))) >= 2**62:
            raise ValueError(f"code space {self.sizes.tolist()} too large for 64-bit keys")
        self.strides = radix_strides(self.sizes)  # key = codes @ strides
        codes.flags.writeable = False  # shared by threads: callers get read-only views
        keys = codes @ self.strides
        self._order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._order]
        if len(keys) and (np.diff(self._sorted_keys) == 0).any():
            raise ValueError("codes are not unique; resolve collisions first")
        # String keys: a dict is the fastest exact map CPython has (str caches its
        # hash); integer keys: pandas' int64 hash table, vectorised.
        self._id_map: dict | None = None
        self._id_order: np.ndarray | None = None  # integer ids: argsort, for searchsorted (no pandas)
        if self.ids.dtype == object:
            self._id_map = dict(zip(self.ids.tolist(), range(len(self.ids))))
            unique = len(self._id_map) == len(self.ids)
        else:
            self.ids = self.ids.astype(np.int64)
            self._id_order = np.argsort(self.ids, kind="stable")
            self._id_sorted = self.ids[self._id_order]
            unique = not (np.diff(self._id_sorted) == 0).any()
        if not unique:
            raise ValueError("item ids are not unique")
        self.model = model
        self.embed_fn = embed_fn
        self._lazy_lock = threading.Lock()
        self._sids: np.ndarray | None = None  # token strings, built on first use
        self._sid_map: dict[str, int] | None = None
        self._code_index: CodeIndex | None = None
        self._index_args = (index_kind, code_split)
        self._model_loader = None  # set by load(): reads the model on first nearest-code or text query
        self.codebooks = None if codebooks is None else [np.asarray(c, dtype=np.float32) for c in codebooks]
        if self.codebooks is not None:
            self._build_index()

    def _build_index(self) -> None:
        from .ann import CodeIndex  # FAISS: only for nearest-code search

        kind, split = self._index_args
        self._code_index = CodeIndex(
            self.codes[:, : self.n_levels], self.codebooks, kind=kind, within_group=self.codes[:, -1], split=split
        )

    @property
    def code_index(self) -> CodeIndex | None:
        """The nearest-code index (built from the export's model on first use)."""
        self._load_model()
        return self._code_index

    def _load_model(self) -> None:
        """Read the export's model if :meth:`load` deferred it (torch is imported here, once)."""
        if self._model_loader is None:
            return
        with self._lazy_lock:
            if self._model_loader is None:
                return
            sid = self._model_loader()
            model = sid.model_
            self.codebooks = [cb.numpy().copy() for cb in model.code_books()]
            self._index_args = (self._index_args[0], model.code_split)
            self._build_index()
            self.model, self.embed_fn, self.estimator = model, (lambda texts: sid.features(sid.embed(texts))), sid
            self._model_loader = None

    # -- construction ----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, index_kind: str = "auto") -> "SemanticIDLookup":
        """Load from an export directory (checksums verified, no pickle, no network).

        Exact lookups need only the ids table and ``config.json``; the model
        (and torch) is read on the first nearest-code, embedding or text query.
        """
        from .manifest import read_ids

        ids, codes, info = read_ids(path)
        obj = cls(ids, codes, info["codebook_sizes"], index_kind=index_kind)

        def load_model():
            from .api import SemanticIDs

            sid = SemanticIDs.load(path)
            if not np.array_equal(sid.codes_, obj.codes):  # replaced by a writer in between
                raise ExportError(f"{path}: the export changed while it was being read; load it again")
            return sid

        obj._model_loader = load_model
        return obj

    def __len__(self) -> int:
        return len(self.ids)

    # -- validation ----------------------------------------------------------------
    def _as_codes(self, sids, *, allow_prefix: bool) -> list[np.ndarray]:
        """Token strings or code sequences -> list of int64 arrays, validated.

        Model levels must lie in their codebook's range; the collision level
        only has to be >= 0 (a number past the largest in use names no item).
        """
        out = []
        for s in sids:
            raw = np.asarray(parse_sid(s) if isinstance(s, str) else s).ravel()
            if raw.dtype.kind not in "iu":
                if raw.dtype.kind == "f" and np.all(np.mod(raw, 1) == 0):
                    raw = raw.astype(np.int64)
                else:
                    raise TokenError(f"semantic ID {s!r}: codes should be integers")
            codes = raw.astype(np.int64)
            if len(codes) == 0:
                raise TokenError("empty semantic ID")
            if len(codes) > len(self.sizes):
                raise TokenError(f"semantic ID {s!r} has {len(codes)} levels; this export has {len(self.sizes)}")
            if not allow_prefix and len(codes) != len(self.sizes):
                raise TokenError(
                    f"semantic ID {s!r} has {len(codes)} levels; a full ID has {len(self.sizes)} (use a prefix lookup)"
                )
            limit = self.sizes[: len(codes)].copy()
            if len(codes) > self.n_levels:
                limit[self.n_levels] = np.iinfo(np.int64).max  # collision level: any number >= 0
            bad = np.flatnonzero((codes < 0) | (codes >= limit))
            if len(bad):
                d = int(bad[0])
                raise TokenError(
                    f"semantic ID {s!r}: code {int(codes[d])} at level {d} is out of range [0, {int(self.sizes[d])})"
                )
            out.append(codes)
        return out

    def _rows_of_ids(self, item_ids, missing: str) -> np.ndarray:
        if self._id_map is not None:
            keys = item_ids if isinstance(item_ids, (list, np.ndarray)) else list(item_ids)
            rows = np.fromiter(map(self._id_map.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        else:
            keys = self._coerce_ids(item_ids)
            rows = self._int_rows(keys)
        if missing == "raise" and (rows < 0).any():
            unknown = [keys[i] for i in np.flatnonzero(rows < 0)[:10]]
            raise UnknownIDError(f"{int((rows < 0).sum())} unknown item id(s), e.g. {unknown}")
        return rows

    def _coerce_ids(self, item_ids) -> np.ndarray:
        arr = np.asarray(item_ids, dtype=object if not isinstance(item_ids, np.ndarray) else None)
        if self.ids.dtype.kind in "iu" and arr.dtype.kind not in "iu":
            # ids typed on a command line arrive as strings
            conv = []
            for v in arr.tolist():
                try:
                    conv.append(int(v))
                except (TypeError, ValueError):
                    conv.append(v)
            arr = np.asarray(conv, dtype=object)
        return arr

    def _token_strings(self) -> tuple[np.ndarray, dict[str, int]]:
        """Every item's token string (row order) and a map back to rows, built once."""
        if self._sid_map is None:
            with self._lazy_lock:
                if self._sid_map is None:
                    sids = format_sids(self.codes)
                    self._sids = np.asarray(sids, dtype=object)
                    self._sid_map = dict(zip(sids, range(len(sids))))
        return self._sids, self._sid_map

    def _row_of_id(self, item_id) -> int:
        """Single-key fast path (no array round trip)."""
        if self._id_map is not None:
            row = self._id_map.get(item_id, -1) if isinstance(item_id, str) else -1
            return row
        return int(self._int_rows(self._coerce_ids([item_id]))[0])

    def _int_rows(self, keys: np.ndarray) -> np.ndarray:
        """Rows of integer ids (-1 where unknown, or not an integer at all), by binary search."""
        keys = np.asarray(keys)
        rows = np.full(len(keys), -1, dtype=np.int64)
        if keys.dtype.kind in "iu":
            ok = np.ones(len(keys), dtype=bool)
            query = keys.astype(np.int64)
        else:
            ok = np.fromiter(
                (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and -(2**63) <= v < 2**63 for v in keys.tolist()),
                dtype=bool, count=len(keys),
            )
            query = np.array([int(v) for v in keys[ok].tolist()], dtype=np.int64)
        if len(query) and len(self._id_sorted):
            pos = np.searchsorted(self._id_sorted, query)
            pos_c = np.minimum(pos, len(self._id_sorted) - 1)
            hit = (pos < len(self._id_sorted)) & (self._id_sorted[pos_c] == query)
            rows[ok] = np.where(hit, self._id_order[pos_c], -1)
        return rows

    # -- exact lookups ---------------------------------------------------------------------
    def item_to_codes(self, item_ids, *, missing: str = "raise") -> np.ndarray:
        """(Q,) item ids -> (Q, L + 1) codes; with ``missing="null"`` unknown ids give rows of -1.

        A single id gives one (L + 1,) row."""
        if np.isscalar(item_ids) or isinstance(item_ids, str):
            row = self._row_of_id(item_ids)
            if row < 0:
                if missing == "raise":
                    raise UnknownIDError(f"unknown item id {item_ids!r}")
                return np.full(self.codes.shape[1], -1, dtype=np.int64)
            return self.codes[row]
        rows = self._rows_of_ids(item_ids, missing)
        out = self.codes[np.maximum(rows, 0)]
        if (rows < 0).any():
            out[rows < 0] = -1
        return out

    def item_to_sid(self, item_ids, *, missing: str = "raise"):
        """Item id(s) -> token string(s); unknown ids give None with ``missing="null"``."""
        sids, _ = self._token_strings()
        if np.isscalar(item_ids) or isinstance(item_ids, str):
            row = self._row_of_id(item_ids)
            if row < 0 and missing == "raise":
                raise UnknownIDError(f"unknown item id {item_ids!r}")
            return sids[row] if row >= 0 else None
        rows = self._rows_of_ids(item_ids, missing)
        out = sids[np.maximum(rows, 0)]
        if (rows < 0).any():
            out = out.copy()
            out[rows < 0] = None
        return out.tolist()

    def codes_to_rows(self, codes: np.ndarray) -> np.ndarray:
        """(Q, L + 1) full codes -> (Q,) rows (-1 where no item has them); vectorised."""
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) == 0:
            return np.zeros(0, dtype=np.int64)
        beyond = codes[:, -1] >= self.sizes[-1]  # a collision number nobody has (yet)
        keys = np.where(beyond, -1, codes @ self.strides)
        pos = np.searchsorted(self._sorted_keys, keys)
        pos_c = np.minimum(pos, len(self._sorted_keys) - 1)
        hit = (pos < len(self._sorted_keys)) & (self._sorted_keys[pos_c] == keys)
        return np.where(hit, self._order[pos_c], -1)

    def sid_to_item(self, sids, *, missing: str = "raise"):
        """Full semantic ID(s) (token strings or code sequences) -> item id(s).

        An ID that is well-formed but belongs to no item raises a KeyError, or
        gives None with ``missing="null"``.
        """
        single = _is_single_query(sids)
        items = [sids] if single else list(sids)
        if not items:
            return []
        rows = None
        if isinstance(items[0], str):
            # hash lookup of the exact token strings; whatever misses (other
            # spellings, code tuples) is parsed and checked one by one below
            _, sid_map = self._token_strings()
            try:
                rows = np.fromiter(map(sid_map.get, items, repeat(-1)), dtype=np.int64, count=len(items))
            except TypeError:  # an unhashable item (a list of codes) among strings
                rows = None
        if rows is None:
            rows = np.full(len(items), -1, dtype=np.int64)
        miss = np.flatnonzero(rows < 0)
        if len(miss):
            parsed = self._as_codes([items[i] for i in miss], allow_prefix=False)
            rows[miss] = self.codes_to_rows(np.stack(parsed))
        if missing == "raise" and (rows < 0).any():
            bad = [items[i] for i in np.flatnonzero(rows < 0)[:10]]
            raise UnknownIDError(f"{int((rows < 0).sum())} semantic ID(s) belong to no item, e.g. {bad}")
        out = self.ids[np.maximum(rows, 0)].astype(object)
        if (rows < 0).any():
            out[rows < 0] = None
        return out[0] if single else out.tolist()

    def prefix_range(self, prefix) -> tuple[int, int]:
        """Positions [lo, hi) in the sorted order of the items under ``prefix``."""
        (codes,) = self._as_codes([prefix], allow_prefix=True)
        return self._range(codes)

    def _range(self, codes: np.ndarray) -> tuple[int, int]:
        d = len(codes)
        lo_key = int(codes @ self.strides[:d])
        hi_key = lo_key + int(self.strides[d - 1])
        return (
            int(np.searchsorted(self._sorted_keys, lo_key, "left")),
            int(np.searchsorted(self._sorted_keys, hi_key, "left")),
        )

    def prefix_count(self, prefix) -> int:
        """Number of items whose semantic ID starts with ``prefix`` (O(log N))."""
        lo, hi = self.prefix_range(prefix)
        return hi - lo

    def prefix_items(self, prefix) -> np.ndarray:
        """Item ids under ``prefix`` (e.g. ``(12, 200)`` or ``"<a_12><b_200>"``), in code order."""
        lo, hi = self.prefix_range(prefix)
        return self.ids[self._order[lo:hi]]

    # -- nearest-code search -----------------------------------------------------------------
    def _need_index(self) -> CodeIndex:
        if self.code_index is None:
            raise RuntimeError("nearest-code search needs the codebooks; load the lookup from an export directory")
        return self.code_index

    def _need_model(self):
        self._load_model()
        if self.model is None:
            raise RuntimeError("embedding queries need the model; load the lookup from an export directory")
        return self.model

    def encode(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) embeddings -> ((Q, L) codes under the frozen model, (Q, d) their
        vectors in code space: the latent, or with the k-means first level the
        embedding and the weighted latent side by side; see ``RQVAE.code_books``)."""
        model = self._need_model()
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim == 1:
            emb = emb[None, :]
        fusion = getattr(self.estimator, "fusion_", None)
        if fusion is not None and emb.ndim == 2 and emb.shape[1] == fusion.text_dim:
            emb = fusion.fuse(emb)  # text embeddings of a build with sequences: behaviour predicted from text
        if emb.ndim != 2 or emb.shape[1] != model.input_dim:
            raise ValueError(f"embeddings should have shape (n, {model.input_dim}), got {emb.shape}")
        if not np.isfinite(emb).all():
            raise ValueError("embeddings contain NaN or infinity")
        import torch

        with torch.no_grad():
            codes, vectors = model.encode_query(torch.from_numpy(emb))
        return codes.numpy(), vectors.numpy()

    def search_embeddings(self, embeddings: np.ndarray, k: int = 10) -> Neighbors:
        """Codes of each embedding under the frozen model and its k nearest items
        (squared L2 between the query's and the items' vectors in code space)."""
        codes, z = self.encode(embeddings)
        rows, dist = self._need_index().search(z, k)
        return self._neighbors(rows, dist, codes)

    def search_texts(self, texts: Sequence[str], k: int = 10) -> Neighbors:
        """Embed texts with the export's own model, then :meth:`search_embeddings`."""
        if self.embed_fn is None:
            raise RuntimeError("text queries need the export's embedding model; load from an export directory")
        return self.search_embeddings(self.embed_fn(list(texts)), k)

    def search_codes(self, sids, k: int = 10, *, prefer_prefix: bool = True) -> Neighbors:
        """Nearest valid items for code sequences that may match no item.

        Each query (token string or codes, L or L + 1 levels; a shorter prefix is
        also accepted) is decoded to the sum of its codebook vectors.
        Rule: with ``prefer_prefix`` (default), candidates are first the items
        that share the longest prefix of the query that exists in the catalog,
        ranked by distance; if that leaves fewer than k, the rest are the
        nearest others by distance. Without it, ranking is by distance alone.
        An exact match (all L model levels) is always first, at distance 0.
        """
        index = self._need_index()
        queries = self._as_codes([sids] if _is_single_query(sids) else list(sids), allow_prefix=True)
        model_codes = np.full((len(queries), self.n_levels), -1, dtype=np.int64)
        for i, c in enumerate(queries):
            model_codes[i, : min(len(c), self.n_levels)] = c[: self.n_levels]
        vecs = index.decode_partial(model_codes)
        if not prefer_prefix:
            rows, dist = index.search(vecs, k)
            return self._neighbors(rows, dist, model_codes)
        all_rows = np.full((len(queries), k), -1, dtype=np.int64)
        all_dist = np.full((len(queries), k), np.inf, dtype=np.float32)
        for i, c in enumerate(queries):
            depth = min(len(c), self.n_levels)
            lo = hi = 0
            while depth > 0:
                lo, hi = self._range(c[:depth])
                if hi > lo:
                    break
                depth -= 1
            chosen: list[int] = []
            dists: list[float] = []
            if depth > 0:
                cand = self._order[lo:hi]
                d = index.distances(vecs[i], cand)
                order = np.lexsort((self.codes[cand, -1], d))[:k]
                chosen = cand[order].tolist()
                dists = d[order].tolist()
            if len(chosen) < k:
                extra_rows, extra_d = index.search(vecs[i : i + 1], k + len(chosen))
                taken = set(chosen)
                for r, dd in zip(extra_rows[0], extra_d[0]):
                    if r >= 0 and r not in taken and len(chosen) < k:
                        chosen.append(int(r))
                        dists.append(float(dd))
            all_rows[i, : len(chosen)] = chosen
            all_dist[i, : len(dists)] = dists
        return self._neighbors(all_rows, all_dist, model_codes)

    def similar_items(self, item_ids, k: int = 10) -> Neighbors:
        """The k nearest other items of each item, in code space."""
        single = np.isscalar(item_ids) or isinstance(item_ids, str)
        rows = self._rows_of_ids([item_ids] if single else item_ids, "raise")
        index = self._need_index()
        vecs = index.decode_partial(self.codes[rows, : self.n_levels])
        got, dist = index.search(vecs, k + 1)
        out_rows = np.full((len(rows), k), -1, dtype=np.int64)
        out_d = np.full((len(rows), k), np.inf, dtype=np.float32)
        for i, r in enumerate(rows):
            keep = [(g, d) for g, d in zip(got[i], dist[i]) if g >= 0 and g != r][:k]
            out_rows[i, : len(keep)] = [g for g, _ in keep]
            out_d[i, : len(keep)] = [d for _, d in keep]
        return self._neighbors(out_rows, out_d, self.codes[rows, : self.n_levels])

    def _neighbors(self, rows: np.ndarray, dist: np.ndarray, codes: np.ndarray) -> Neighbors:
        ids = np.empty(rows.shape, dtype=object)
        valid = rows >= 0
        ids[valid] = self.ids[rows[valid]]
        return Neighbors(rows=rows, ids=ids, distances=dist.astype(np.float32), codes=codes)


def _is_single_query(sids) -> bool:
    """One token string, or one flat sequence of integer codes."""
    if isinstance(sids, str):
        return True
    if isinstance(sids, np.ndarray):
        return sids.ndim == 1 and sids.dtype.kind in "iuf"
    seq = list(sids) if not isinstance(sids, (list, tuple)) else sids
    return len(seq) > 0 and all(np.isscalar(v) and not isinstance(v, str) for v in seq)
