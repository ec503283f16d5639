"""Token vocabulary of semantic IDs: one token per (level, code) pair.

A sequence model that generates semantic IDs (TIGER, Rajput et al. 2023) needs
a token for every code at every level, so that ``<a_3>`` and ``<b_3>`` are
different tokens. Token ids are laid out level by level::

    token id of (level l, code c) = offsets[l] + c,   offsets = [0, V0, V0+V1, ...]

and ``tokens`` lists the token strings in that order, ready for
``tokenizer.add_tokens``. The collision level (the counter that makes every ID
unique) is the last level.

This module imports neither torch nor the RQ-VAE model: an export's codes are read
with :func:`~semantic_ids.export.io.read_export` and ``model=False`` (the Parquet
file and ``config.json``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..export.io import Export, read_export
from ..export.tokens import LETTERS
from ..errors import VocabError


def _check_codes(codes: np.ndarray, level_sizes: Sequence[int] | None, what: str = "codes") -> np.ndarray:
    """``codes`` as a 2-D int64 array whose every column fits its level size."""
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise VocabError(f"{what} should be 2-D (items, levels), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise VocabError(f"{what} should be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if level_sizes is not None and arr.shape[1] > len(level_sizes):
        raise VocabError(f"{what} have {arr.shape[1]} levels but the vocabulary has {len(level_sizes)}")
    for lvl in range(arr.shape[1]):
        col = arr[:, lvl]
        bad = np.flatnonzero(col < 0) if level_sizes is None else np.flatnonzero((col < 0) | (col >= level_sizes[lvl]))
        if bad.size:
            row = int(bad[0])
            limit = "should be >= 0" if level_sizes is None else f"should be in [0, {level_sizes[lvl]})"
            raise VocabError(
                f"{what}: level {lvl} ({LETTERS[lvl]}) value {int(col[row])} at row {row} {limit} "
                f"({bad.size} bad values at this level)"
            )
    return arr


@dataclass(frozen=True)
class SIDVocab:
    """The ID tokens of a catalog: ``level_sizes[l]`` codes at level ``l``.

    ``level_sizes`` includes the collision level (last). Token id of
    (level l, code c) is ``offsets[l] + c``; ``tokens`` lists the strings.
    """

    level_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        sizes = tuple(int(k) for k in self.level_sizes)
        if not sizes:
            raise VocabError("level_sizes should list at least one level")
        if len(sizes) > len(LETTERS):
            raise VocabError(f"at most {len(LETTERS)} levels, got {len(sizes)}")
        for i, k in enumerate(sizes):
            if k < 1:
                raise VocabError(f"level_sizes[{i}]={k} should be >= 1")
        object.__setattr__(self, "level_sizes", sizes)

    @classmethod
    def from_codes(cls, codes: np.ndarray, level_sizes: Sequence[int] | None = None) -> SIDVocab:
        """Vocabulary for codes (N, L).

        Sizes default to ``max + 1`` per level; given sizes must cover every code
        (a :class:`VocabError` names the level and value otherwise).
        """
        if level_sizes is not None and len(level_sizes) != np.asarray(codes).shape[-1]:
            raise VocabError(f"{len(level_sizes)} level sizes for codes with {np.asarray(codes).shape[-1]} levels")
        arr = _check_codes(codes, level_sizes)
        if level_sizes is None:
            if len(arr) == 0:
                raise VocabError("cannot infer level sizes from zero items; pass level_sizes")
            level_sizes = (arr.max(axis=0) + 1).tolist()
        return cls(tuple(int(k) for k in level_sizes))

    @classmethod
    def from_export(cls, export: str | Path | Export) -> SIDVocab:
        """Vocabulary of an export (its directory, or what
        :func:`~semantic_ids.export.io.read_export` read): the model's codebook sizes,
        then the collision level sized ``max counter + 1``."""
        ex = export if isinstance(export, Export) else read_export(export, model=False)
        n_model = len(ex.codebook_sizes)
        if ex.codes.shape[1] != n_model + 1:
            raise VocabError(
                f"export has {ex.codes.shape[1]} code levels, expected {n_model} model levels + 1 collision level"
            )
        collision = int(ex.codes[:, -1].max()) + 1 if len(ex.codes) else 1
        sizes = ex.codebook_sizes + (collision,)
        _check_codes(ex.codes, sizes, "export codes")
        return cls(sizes)

    @property
    def n_levels(self) -> int:
        """Number of levels, the collision level included."""
        return len(self.level_sizes)

    @property
    def offsets(self) -> np.ndarray:
        """(L,) int64: the token id of code 0 at each level."""
        return np.concatenate([[0], np.cumsum(self.level_sizes[:-1])]).astype(np.int64)

    @property
    def size(self) -> int:
        """Total number of ID tokens."""
        return int(sum(self.level_sizes))

    @property
    def tokens(self) -> list[str]:
        """Token strings in token-id order: ``<a_0>, ..., <a_{V0-1}>, <b_0>, ...``."""
        return [f"<{LETTERS[lvl]}_{c}>" for lvl, k in enumerate(self.level_sizes) for c in range(k)]

    def token_ids(self, codes: np.ndarray) -> np.ndarray:
        """Codes (N, t) -> token ids (N, t) int64, for full IDs (t = L) or prefixes (t < L).

        Raises VocabError naming the level and value of an out-of-range code.
        """
        arr = _check_codes(codes, self.level_sizes)
        return arr + self.offsets[: arr.shape[1]]

    def split(self, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of any shape -> (levels, codes), both int64 of the same shape."""
        tid = np.asarray(token_ids)
        if tid.size and not np.issubdtype(tid.dtype, np.integer):
            raise VocabError(f"token ids should be integers, got dtype {tid.dtype}")
        tid = tid.astype(np.int64, copy=False)
        bad = (tid < 0) | (tid >= self.size)
        if bad.any():
            raise VocabError(f"token id {int(tid[bad].flat[0])} is not an ID token (valid: 0..{self.size - 1})")
        levels = np.searchsorted(self.offsets, tid, side="right") - 1
        return levels, tid - self.offsets[levels]

    def level_code(self, token_id: int) -> tuple[int, int]:
        """One token id -> (level, code)."""
        levels, codes = self.split(np.asarray([token_id]))
        return int(levels[0]), int(codes[0])

    def codes_of(self, token_ids: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`token_ids`: token ids (N, t) -> codes (N, t) int64.

        Column j must hold tokens of level j (a VocabError names the first that
        does not). For a single token id use :meth:`level_code`.
        """
        tid = np.asarray(token_ids)
        if tid.ndim != 2:
            raise VocabError(f"token ids should be 2-D (items, levels), got shape {tid.shape}")
        if tid.shape[1] > self.n_levels:
            raise VocabError(f"token ids have {tid.shape[1]} levels but the vocabulary has {self.n_levels}")
        levels, codes = self.split(tid)
        wrong = levels != np.arange(tid.shape[1])
        if wrong.any():
            r, c = np.argwhere(wrong)[0]
            raise VocabError(
                f"token id {int(tid[r, c])} at row {r}, position {c} is a level-{levels[r, c]} token "
                f"({self.tokens[int(tid[r, c])]}); position {c} needs level {c} ({LETTERS[c]})"
            )
        return codes

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description; :meth:`from_dict` rebuilds it."""
        return {"format": "semantic-ids vocab", "version": 1, "level_sizes": list(self.level_sizes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SIDVocab:
        if not isinstance(data, dict) or not isinstance(data.get("level_sizes"), list):
            raise VocabError(f"not a semantic-ids vocabulary: {str(data)[:80]!r}")
        if data.get("version", 1) != 1:
            raise VocabError(f"vocabulary version {data.get('version')!r} is not supported (expected 1)")
        sizes = data["level_sizes"]
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in sizes):
            raise VocabError(f"level_sizes should be integers, got {sizes!r}")
        return cls(tuple(sizes))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> SIDVocab:
        try:
            return cls.from_dict(json.load(io.BytesIO(text if isinstance(text, bytes) else text.encode())))
        except json.JSONDecodeError as exc:
            raise VocabError(f"damaged vocabulary JSON ({exc})") from None
