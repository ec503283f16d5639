"""User sequences: read and validate a sequences file against a catalog's ids.

A sequences file is JSON lines, one user per line: ``{"user_id": ..., "items":
[item ids in time order]}``. Builds read it to fuse behaviour into the IDs
(:mod:`semantic_ids.collab`); the downstream benchmark reads it to split users
leave-one-out (:mod:`semantic_ids.downstream.sequences`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..model.keys import IdRows
from ..errors import SequenceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sequences:
    """Users' item sequences as row indices into an item array.

    Attributes
    ----------
    users : list of user ids, in file order.
    items : list of (n_u,) int64 arrays, row indices of the items in time order.
    """

    users: list
    items: list[np.ndarray]
    n_unknown: int = 0  # interactions with items the catalog lacks (``unknown="skip"``; marked -1 in ``items``)

    def __len__(self) -> int:
        return len(self.users)


def read_sequences(path: str | Path, item_ids: Iterable, *, min_length: int = 3, unknown: str = "raise") -> Sequences:
    """Read a sequences JSON-lines file against the catalog's item ids.

    Every problem is counted and reported at once, before any heavy work: lines
    that are not JSON objects with ``user_id`` and a list ``items``, user ids and
    item ids that are not integers or strings (``null``, ``true``, ``168.5``, a
    list), duplicate users, empty sequences, sequences shorter than ``min_length``
    (leave-one-out needs a training item, a validation and a test target), and
    item ids the catalog does not have. A string id matches an integer catalog id
    written the same way (``"3003"`` and ``3003``), and back.

    Parameters
    ----------
    unknown : ``"raise"`` (builds, the downstream benchmark) or ``"skip"``: item ids
        the catalog lacks are counted in ``Sequences.n_unknown`` and left in
        ``items`` as row -1, so a caller sees where a sequence had a gap (the
        evaluation of a partial catalog: two items around an unknown one were not
        consecutive).

    Raises
    ------
    SequenceError naming the count and the first offenders of each kind (user id,
    line and value).
    """
    users, items, n_unknown = [], [], 0
    for chunk in iter_sequences(path, item_ids, min_length=min_length, unknown=unknown, chunk_users=None):
        users += chunk.users
        items += chunk.items
        n_unknown += chunk.n_unknown
    if not users:
        raise SequenceError(f"{path}: no user sequences")
    return Sequences(users=users, items=items, n_unknown=n_unknown)


def iter_sequences(path: str | Path, item_ids, *, min_length: int = 3, unknown: str = "raise",
                   chunk_users: int | None = 100_000, span: tuple[int, int] | None = None) -> Iterator[Sequences]:
    """:func:`read_sequences` in chunks of ``chunk_users`` users (all at once for None), for
    files larger than memory: each chunk's sequences as soon as they are read. The checks
    are those of :func:`read_sequences`, over the whole file: its SequenceError comes
    after the last line is read, before the last chunk is given (a caller that counted
    the earlier chunks has done no other work yet). ``item_ids``: the catalog's ids or an
    :class:`~semantic_ids.model.keys.IdRows` of them (built once by the caller).

    ``span``: ``(start, end)`` byte offsets at line starts: only the lines starting in
    ``[start, end)`` are read and checked, numbered from 1 (a worker's share of the file,
    :mod:`semantic_ids.runners.ray_behaviour`; users repeated across spans are the caller's
    to find)."""
    if unknown not in ("raise", "skip"):
        raise ValueError(f"unknown={unknown!r} should be 'raise' or 'skip'")
    path = Path(path)
    if not path.is_file():
        raise SequenceError(f"sequences file {str(path)!r} does not exist")
    index = item_ids if isinstance(item_ids, IdRows) else IdRows(np.asarray(list(item_ids)) if not isinstance(item_ids, np.ndarray) else item_ids)
    int_ids = index.ids.dtype.kind in "iu"
    users, seqs = [], []
    missing: Counter = Counter()
    pending = None  # the chunk read last, given once the next one (or the end of the file) shows no problem
    bad_lines, bad_users, bad_items, dup_users, empty, short = [], [], [], [], [], []
    seen = set()
    with path.open("rb") as f:
        for lineno, raw in enumerate(f if span is None else _span_lines(f, *span), start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                user, seq = rec["user_id"], rec["items"]
                if not isinstance(seq, list):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                bad_lines.append(lineno)
                continue
            if not _is_id(user):
                bad_users.append(f"line {lineno}: {json.dumps(user)}")
                continue
            if user in seen:
                dup_users.append(user)
                continue
            seen.add(user)
            wrong = [it for it in seq if not _is_id(it)]
            if wrong:
                bad_items.append(f"user {user!r} (line {lineno}): {json.dumps(wrong[0])}")
                continue
            if not seq:
                empty.append(user)
                continue
            if len(seq) < min_length:
                short.append(user)
                continue
            users.append(user)
            seqs.append(seq)
            if chunk_users is not None and len(users) >= chunk_users:
                chunk = _rows_chunk(users, seqs, index, int_ids, missing)
                if pending is not None and not (bad_lines or bad_users or bad_items or dup_users or empty or short or (missing and unknown == "raise")):
                    yield pending
                pending, users, seqs = chunk, [], []
    last = _rows_chunk(users, seqs, index, int_ids, missing)
    problems = []

    def first(xs, n=5):
        xs = list(xs)
        return ", ".join(x if isinstance(x, str) and x.startswith(("line ", "user ")) else repr(x) for x in xs[:n]) + (", ..." if len(xs) > n else "")

    if bad_lines:
        problems.append(f"{len(bad_lines)} line(s) are not JSON objects with 'user_id' and a list 'items' (line {first(bad_lines)})")
    if bad_users:
        problems.append(f"{len(bad_users)} user id(s) are not an integer or a string ({first(bad_users)})")
    if bad_items:
        problems.append(f"{len(bad_items)} sequence(s) hold an item id that is not an integer or a string ({first(bad_items)})")
    if dup_users:
        problems.append(f"{len(dup_users)} duplicate user id(s): {first(dup_users)}")
    if empty:
        problems.append(f"{len(empty)} empty sequence(s) (users {first(empty)})")
    if short:
        problems.append(
            f"{len(short)} sequence(s) shorter than {min_length} items, too short for a leave-one-out split (users {first(short)})"
        )
    if missing and unknown == "raise":
        problems.append(
            f"{len(missing)} item id(s) not in the catalog, in {sum(missing.values())} interaction(s): {first(missing)}"
        )
    if problems:
        raise SequenceError(f"{path}: " + "; ".join(problems))
    for chunk in (pending, last):
        if chunk is not None and len(chunk):
            yield chunk


def _span_lines(f, start: int, end: int) -> Iterator[bytes]:
    """The lines of binary file ``f`` that start in ``[start, end)`` (``start`` at a line start)."""
    f.seek(start)
    pos = start
    while pos < end:
        raw = f.readline()
        if not raw:
            return
        pos += len(raw)
        yield raw


def _rows_chunk(users: list, seqs: list, index: IdRows, int_ids: bool, missing: Counter) -> Sequences:
    """Users' sequences of item ids -> :class:`Sequences` of rows (-1: not in the catalog,
    counted in ``missing``)."""
    flat = [_as_kind(it, int_ids) for s in seqs for it in s]
    unmatchable = np.array([k is None for k in flat], dtype=bool)
    keys = np.asarray([0 if k is None else k for k in flat], dtype=np.int64 if int_ids else object)
    rows = index.rows(keys, missing="-1") if flat else np.zeros(0, np.int64)
    rows[unmatchable] = -1
    unknown = Counter(it for it, r in zip((it for s in seqs for it in s), rows.tolist()) if r < 0)
    missing.update(unknown)
    bounds = np.cumsum([len(s) for s in seqs])[:-1]
    return Sequences(users=users, items=np.split(rows, bounds) if seqs else [], n_unknown=sum(unknown.values()))


def _is_id(v) -> bool:
    """An id JSON can hold: an integer or a string (not a bool, a float, null, a list or an object)."""
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def _as_kind(v, int_ids: bool):
    """``v`` (int or str) as the catalog's kind of id: "3003" -> 3003 for integer ids
    (only when written exactly so), 3003 -> "3003" for string ids; None when it can
    match no id (another string, or an integer beyond int64)."""
    if not int_ids:
        return v if isinstance(v, str) else str(v)
    if isinstance(v, str):
        try:
            k = int(v)
        except ValueError:
            return None
        if str(k) != v:
            return None
        v = k
    return v if _INT64_MIN <= v <= _INT64_MAX else None


_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
