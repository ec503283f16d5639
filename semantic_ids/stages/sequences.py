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
from typing import Iterable

import numpy as np

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

    def __len__(self) -> int:
        return len(self.users)


def read_sequences(path: str | Path, item_ids: Iterable, *, min_length: int = 3) -> Sequences:
    """Read a sequences JSON-lines file against the catalog's item ids.

    Every problem is counted and reported at once, before any heavy work: lines
    that are not JSON objects with ``user_id`` and a list ``items``, duplicate
    users, empty sequences, sequences shorter than ``min_length`` (leave-one-out
    needs a training item, a validation and a test target), and item ids the
    catalog does not have.

    Raises
    ------
    SequenceError naming the count and the first offenders of each kind.
    """
    path = Path(path)
    if not path.is_file():
        raise SequenceError(f"sequences file {str(path)!r} does not exist")
    row_of = {k: i for i, k in enumerate(item_ids)}
    # ids read from JSON are strings or ints; let an int catalog match string ids and back
    alt = {str(k): i for k, i in row_of.items()}
    users, items = [], []
    bad_lines, dup_users, empty, short, unknown = [], [], [], [], Counter()
    seen = set()
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
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
            if user in seen:
                dup_users.append(user)
                continue
            seen.add(user)
            if not seq:
                empty.append(user)
                continue
            rows = []
            for it in seq:
                r = row_of.get(it)
                if r is None:
                    r = alt.get(str(it))
                if r is None:
                    unknown[it] += 1
                rows.append(-1 if r is None else r)
            if len(seq) < min_length:
                short.append(user)
                continue
            users.append(user)
            items.append(np.asarray(rows, dtype=np.int64))
    problems = []

    def first(xs, n=5):
        xs = list(xs)
        return ", ".join(repr(x) for x in xs[:n]) + (", ..." if len(xs) > n else "")

    if bad_lines:
        problems.append(f"{len(bad_lines)} line(s) are not JSON objects with 'user_id' and a list 'items' (line {first(bad_lines)})")
    if dup_users:
        problems.append(f"{len(dup_users)} duplicate user id(s): {first(dup_users)}")
    if empty:
        problems.append(f"{len(empty)} empty sequence(s) (users {first(empty)})")
    if short:
        problems.append(
            f"{len(short)} sequence(s) shorter than {min_length} items, too short for a leave-one-out split (users {first(short)})"
        )
    if unknown:
        problems.append(
            f"{len(unknown)} item id(s) not in the catalog, in {sum(unknown.values())} interaction(s): {first(unknown)}"
        )
    if problems:
        raise SequenceError(f"{path}: " + "; ".join(problems))
    if not users:
        raise SequenceError(f"{path}: no user sequences")
    return Sequences(users=users, items=items)
