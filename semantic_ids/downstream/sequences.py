"""User sequences: read, validate, and split leave-one-out (TIGER / P5 protocol).

A sequences file is JSON lines, one user per line: ``{"user_id": ..., "items":
[item ids in time order]}``. Per user the last item is the test target, the one
before it the validation target, and the rest the training part (Rajput et al.
2023, following P5); histories are cut to the most recent ``max_history`` items.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

log = logging.getLogger(__name__)


class SequenceError(ValueError):
    """A sequences file is malformed or names items the catalog does not have."""


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


@dataclass(frozen=True)
class Split:
    """A leave-one-out split.

    Attributes
    ----------
    train : list of int64 arrays, each user's training part (all but the last two items).
    valid_history, test_history : list of int64 arrays, at most ``max_history`` items each.
    valid_target, test_target : (U,) int64 item rows.
    """

    train: list[np.ndarray]
    valid_history: list[np.ndarray]
    valid_target: np.ndarray
    test_history: list[np.ndarray]
    test_target: np.ndarray
    max_history: int


def leave_one_out(seqs: Sequences, max_history: int = 20) -> Split:
    """Split every user: last item = test target, second-to-last = validation target.

    The test history ends with the validation item, as in TIGER; training uses
    only items before the validation target, so neither target is ever trained on.
    """
    if max_history < 1:
        raise ValueError(f"max_history={max_history} should be >= 1")
    train = [s[:-2] for s in seqs.items]
    return Split(
        train=train,
        valid_history=[s[:-2][-max_history:] for s in seqs.items],
        valid_target=np.array([s[-2] for s in seqs.items], dtype=np.int64),
        test_history=[s[:-1][-max_history:] for s in seqs.items],
        test_target=np.array([s[-1] for s in seqs.items], dtype=np.int64),
        max_history=max_history,
    )


def training_windows(train: list[np.ndarray], max_history: int) -> list[np.ndarray]:
    """Windows of at most ``max_history + 1`` items covering each training part.

    A causal model trained on a window predicts each of its items from the ones
    before it, so a window of h + 1 items teaches h next-item steps with at most
    h items of history. Long parts are cut from the end in steps of ``max_history``
    (windows overlap by one item, so every item is a target exactly once).
    """
    out = []
    for s in train:
        end = len(s)
        while end >= 2:
            start = max(0, end - max_history - 1)
            out.append(s[start:end])
            if start == 0:
                break
            end = start + 1
    return out
