"""Leave-one-out splits of user sequences (TIGER / P5 protocol).

Per user the last item is the test target, the one before it the validation
target, and the rest the training part (Rajput et al. 2023, following P5);
histories are cut to the most recent ``max_history`` items. Sequences are read
by :func:`semantic_ids.sequences.read_sequences`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ...stages.sequences import Sequences

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """A leave-one-out split.

    Attributes
    ----------
    train : list of int64 arrays, each user's training part (all but the last two items).
    valid_history, test_history : list of int64 arrays, at most ``max_history`` items each.
    valid_target, test_target : (U,) int64 item rows.
    valid_users : users early stopping may sample from (None: all); the cold-start split leaves out
        those whose validation target is a cold item.
    """

    train: list[np.ndarray]
    valid_history: list[np.ndarray]
    valid_target: np.ndarray
    test_history: list[np.ndarray]
    test_target: np.ndarray
    max_history: int
    valid_users: np.ndarray | None = None


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
