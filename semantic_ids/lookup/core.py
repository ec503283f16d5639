"""The lookup object over one export: exact lookups, nearest-code search, text queries.

:class:`SemanticIDLookup` ties together :mod:`.index` (item ids, code tuples and
prefixes -> rows), :mod:`.search` (nearest items in code space) and
:mod:`.query` (the export's model, for embedding and text queries).

The object is read-only after construction (the model is read once, under a
lock, on first need); numpy and FAISS searches on it are safe to run from
several threads at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..export.tokens import format_sids
from .index import CodeKeys, ItemRows, UnknownIDError, is_single_id, is_single_sid
from .query import encode, read_query_model
from .search import Neighbors, neighbors, search_codes, search_vectors, similar_rows
from ..errors import ConfigError

if TYPE_CHECKING:
    from .ann import CodeIndex

log = logging.getLogger(__name__)


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
        self._keys = CodeKeys(codes, codebook_sizes)
        self._items = ItemRows(ids)
        self.ids = self._items.ids
        self.codes = self._keys.codes
        self.n_levels = self._keys.n_levels
        self.collision_size = self._keys.collision_size
        self.sizes = self._keys.sizes
        self.strides = self._keys.strides  # key = codes @ strides
        self.model = model
        self.fusion = None  # collab.Fusion of a build with sequences (set by load)
        self.embed_fn = embed_fn
        self._lazy_lock = threading.Lock()
        self._sids: np.ndarray | None = None  # token strings, built on first use
        self._sid_map: dict[str, int] | None = None
        self._code_index: CodeIndex | None = None
        self._index_args = (index_kind, code_split)
        self._path: Path | None = None  # set by load(): the model is read on first nearest-code or text query
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
        if self._path is None:
            return
        with self._lazy_lock:
            if self._path is None:
                return
            q = read_query_model(self._path, self.codes)
            self.codebooks = q.codebooks
            self._index_args = (self._index_args[0], q.code_split)
            self._build_index()
            self.model, self.fusion, self.embed_fn = q.model, q.fusion, q.embed
            self._path = None  # last: other threads read the fields above once this is None

    # -- construction ----------------------------------------------------------------
    @classmethod
    def load(cls, export_dir: str | Path, *, index_kind: str = "auto") -> "SemanticIDLookup":
        """Load from an export directory (checksums verified, no pickle, no network).

        Exact lookups need only the ids table and ``config.json``; the model
        (and torch) is read on the first nearest-code, embedding or text query.
        """
        from ..export.io import read_export

        exp = read_export(export_dir, model=False)
        obj = cls(exp.ids, exp.codes, exp.codebook_sizes, index_kind=index_kind)
        obj._uses_behaviour = "collab_items" in exp.info
        obj._catalog_config = (exp.info.get("config") or {}).get("catalog")
        obj._path = Path(export_dir)
        return obj

    def read_catalog_texts(self, catalog) -> None:
        """Read each item's text from ``catalog`` (a path or DataFrame), built as the export's
        build built it (its id column, text columns or template), for :meth:`text_of`.

        The export stores no texts: they can outweigh the IDs many times over, and the
        catalog they come from stays the user's own source of truth.
        """
        from ..config import CatalogConfig
        from ..stages.catalog import load_catalog

        cfg = CatalogConfig.from_dict(self._catalog_config) if getattr(self, "_catalog_config", None) else None
        cat = load_catalog(catalog, cfg)
        rows = self._items.rows(cat.ids, missing="null")
        texts = np.full(len(self.ids), None, dtype=object)
        texts[rows[rows >= 0]] = np.asarray(cat.texts, dtype=object)[rows >= 0]
        self.texts = texts

    def text_of(self, item_ids) -> list:
        """The catalog texts of ``item_ids`` (a list; None for ids the export or catalog lacks,
        and all None before :meth:`read_catalog_texts`)."""
        texts = getattr(self, "texts", None)
        rows = self._items.rows(list(item_ids), missing="null")
        return [None if texts is None or r < 0 else texts[r] for r in rows.tolist()]

    def rows_with_text(self, text: str) -> np.ndarray:
        """Export rows whose catalog text is exactly ``text`` (empty before :meth:`read_catalog_texts`)."""
        texts = getattr(self, "texts", None)
        return np.zeros(0, np.int64) if texts is None else np.flatnonzero(texts == text)

    def __len__(self) -> int:
        return len(self.ids)

    def _token_strings(self) -> tuple[np.ndarray, dict[str, int]]:
        """Every item's token string (row order) and a map back to rows, built once."""
        if self._sid_map is None:
            with self._lazy_lock:
                if self._sid_map is None:
                    sids = format_sids(self.codes)
                    self._sids = np.asarray(sids, dtype=object)
                    self._sid_map = dict(zip(sids, range(len(sids))))
        return self._sids, self._sid_map

    # -- exact lookups ---------------------------------------------------------------------
    def item_to_codes(self, item_ids, *, missing: str = "raise") -> np.ndarray:
        """(Q,) item ids -> (Q, L + 1) codes; with ``missing="null"`` unknown ids give rows of -1.

        A single id gives one (L + 1,) row."""
        rows = self._items.rows(item_ids, missing=missing)
        if is_single_id(item_ids):
            return self.codes[rows[0]] if rows[0] >= 0 else np.full(self.codes.shape[1], -1, dtype=np.int64)
        out = self.codes[np.maximum(rows, 0)]
        if (rows < 0).any():
            out[rows < 0] = -1
        return out

    def item_to_sid(self, item_ids, *, missing: str = "raise"):
        """Item id(s) -> token string(s); unknown ids give None with ``missing="null"``."""
        sids, _ = self._token_strings()
        rows = self._items.rows(item_ids, missing=missing)
        if is_single_id(item_ids):
            return sids[rows[0]] if rows[0] >= 0 else None
        out = sids[np.maximum(rows, 0)]
        if (rows < 0).any():
            out = out.copy()
            out[rows < 0] = None
        return out.tolist()

    def codes_to_rows(self, codes: np.ndarray) -> np.ndarray:
        """(Q, L + 1) full codes -> (Q,) rows (-1 where no item has them); vectorised."""
        return self._keys.rows(codes)

    def sid_to_item(self, sids, *, missing: str = "raise"):
        """Full semantic ID(s) (token strings or code sequences) -> item id(s).

        An ID that is well-formed but belongs to no item raises a KeyError, or
        gives None with ``missing="null"``.
        """
        single = is_single_sid(sids)
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
            parsed = self._keys.parse([items[i] for i in miss], allow_prefix=False)
            rows[miss] = self._keys.rows(np.stack(parsed))
        if missing == "raise" and (rows < 0).any():
            bad = [items[i] for i in np.flatnonzero(rows < 0)[:10]]
            raise UnknownIDError(f"{int((rows < 0).sum())} semantic ID(s) belong to no item, e.g. {bad}")
        out = self.ids[np.maximum(rows, 0)].astype(object)
        if (rows < 0).any():
            out[rows < 0] = None
        return out[0] if single else out.tolist()

    def prefix_range(self, prefix) -> tuple[int, int]:
        """Positions [lo, hi) in the sorted order of the items under ``prefix``."""
        (codes,) = self._keys.parse([prefix], allow_prefix=True)
        return self._keys.range(codes)

    def prefix_count(self, prefix) -> int:
        """Number of items whose semantic ID starts with ``prefix`` (O(log N))."""
        lo, hi = self.prefix_range(prefix)
        return hi - lo

    def prefix_items(self, prefix) -> np.ndarray:
        """Item ids under ``prefix`` (e.g. ``(12, 200)`` or ``"<a_12><b_200>"``), in code order."""
        lo, hi = self.prefix_range(prefix)
        return self.ids[self._keys.order[lo:hi]]

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
        embedding and the weighted latent side by side; see ``RQVAE.code_books``).

        Text embeddings of a build with sequences are fused with predicted
        behaviour first (:func:`semantic_ids.collab.model_inputs`)."""
        model = self._need_model()
        return encode(model, self.fusion, embeddings)

    def search_embeddings(self, embeddings: np.ndarray, k: int = 10, *, prefer_prefix: bool = True) -> Neighbors:
        """Codes of each embedding under the frozen model and its k nearest items
        (squared L2 between the query's and the items' vectors in code space).

        With ``prefer_prefix`` (default) the items sharing the most leading codes with
        the query come first, each tier by distance, then the nearest others
        (:func:`.search.search_vectors`), so the hits agree with the query's codes;
        without it, distance alone.
        """
        _check_k(k)
        codes, z = self.encode(embeddings)
        index = self._need_index()
        rows, dist = search_vectors(index, self._keys, z, codes, k) if prefer_prefix else index.search(z, k)
        return neighbors(self.ids, rows, dist, codes)

    def search_texts(self, texts: Sequence[str], k: int = 10, *, prefer_prefix: bool = True) -> Neighbors:
        """Embed texts with the export's own embedding model, then :meth:`search_embeddings`.

        A text is placed where a new item with that text would be (where ``assign``
        puts it): for a build with sequences, the text with the behaviour predicted
        from it, since a text query has no users. A catalog item's own ID also
        reflects how users used it, so its exact text may sit elsewhere
        (docs/lookup.md, "Text queries").
        """
        self._load_model()
        if self.embed_fn is None:
            raise RuntimeError("text queries need the export's embedding model; load from an export directory")
        return self.search_embeddings(self.embed_fn(list(texts)), k, prefer_prefix=prefer_prefix)

    @property
    def uses_behaviour(self) -> bool:
        """Whether the export was built with sequences (its IDs fuse text with behaviour)."""
        return self._uses_behaviour if self._path is not None else self.fusion is not None

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
        _check_k(k)
        index = self._need_index()
        queries = self._keys.parse([sids] if is_single_sid(sids) else list(sids), allow_prefix=True)
        rows, dist, codes = search_codes(index, self._keys, queries, k, prefer_prefix=prefer_prefix)
        return neighbors(self.ids, rows, dist, codes)

    def similar_items(self, item_ids, k: int = 10) -> Neighbors:
        """The k nearest other items of each item, in code space."""
        _check_k(k)
        rows = self._items.rows([item_ids] if is_single_id(item_ids) else item_ids, missing="raise")
        index = self._need_index()
        model_codes = self.codes[:, : self.n_levels]
        got, dist = similar_rows(index, model_codes, rows, k)
        return neighbors(self.ids, got, dist, model_codes[rows])


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k={k!r} should be a positive integer (the number of nearest items)")
