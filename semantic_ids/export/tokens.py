"""Semantic-ID token strings: codes (12, 200, 7, 0) <-> ``"<a_12><b_200><c_7><d_0>"``.

Level n is named by the n-th lower-case letter, so a generative model can give
each (level, code) pair its own token.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

import numpy as np

from ..errors import TokenError

LETTERS = string.ascii_lowercase
_TOKEN = re.compile(r"<([a-z])_([0-9]+)>")


def format_sid(codes: Sequence[int]) -> str:
    """``(12, 200, 7)`` -> ``"<a_12><b_200><c_7>"``."""
    if len(codes) > len(LETTERS):
        raise TokenError(f"at most {len(LETTERS)} levels, got {len(codes)}")
    return "".join(f"<{LETTERS[i]}_{int(c)}>" for i, c in enumerate(codes))


def format_sids(codes: np.ndarray) -> list[str]:
    """Token strings for every row of codes (N, L)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise TokenError(f"codes should be 2-D (n, levels), got shape {codes.shape}")
    if codes.shape[1] > len(LETTERS):
        raise TokenError(f"at most {len(LETTERS)} levels, got {codes.shape[1]}")
    cols = [[f"<{LETTERS[i]}_{c}>" for c in codes[:, i].tolist()] for i in range(codes.shape[1])]
    return ["".join(parts) for parts in zip(*cols)] if cols else [""] * len(codes)


def parse_sid(text: str) -> tuple[int, ...]:
    """``"<a_12><b_200>"`` -> ``(12, 200)``; a prefix of any depth is allowed.

    Raises TokenError naming the position when the string is not a sequence of
    ``<letter_code>`` tokens with letters a, b, c, ... in order.
    """
    if not isinstance(text, str):
        raise TokenError(f"a semantic ID should be a string, got {type(text).__name__}")
    s = text.strip()
    codes = []
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise TokenError(f"malformed semantic ID {text!r} at position {pos}: expected a token like <a_12>")
        letter, value = m.group(1), int(m.group(2))
        expected = LETTERS[len(codes)] if len(codes) < len(LETTERS) else "?"
        if letter != expected:
            raise TokenError(f"malformed semantic ID {text!r}: token {len(codes)} is <{letter}_…>, expected <{expected}_…>")
        codes.append(value)
        pos = m.end()
    if not codes:
        raise TokenError(f"empty semantic ID {text!r}")
    return tuple(codes)
