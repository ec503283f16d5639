"""Churn between two exports: how many items' IDs (and ID prefixes) moved.

A generative recommender learns its item IDs, so every ID that changes between
two builds is an item it has to relearn. :func:`churn` compares two export
directories, read without torch (:mod:`semantic_ids.manifest`, checksums
verified): over the items both hold, the share whose full ID changed and the
share whose prefix changed at each depth (depth 1 = the first code, the last
depth = the full ID, collision level included); and how many items are new or
were removed. ``semantic-ids diff OLD NEW [--json]`` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..export.io import read_export
from ..model.keys import kept_prefixes, rows_of


@dataclass(frozen=True)
class ChurnReport:
    """ID churn from an ``old`` export to a ``new`` one.

    Attributes
    ----------
    n_old, n_new : items in each export.
    n_common : items in both.
    n_added : items only in ``new``; n_removed : items only in ``old``.
    full_id_changed : share of the common items whose full ID differs (0.0 when none are common:
        check ``n_common``; :meth:`table` says the exports share no items).
    prefix_changed : per depth d = 1..L+1, share of the common items whose first d codes differ;
        the last entry equals ``full_id_changed``.
    """

    old: str
    new: str
    n_old: int
    n_new: int
    n_common: int
    n_added: int
    n_removed: int
    full_id_changed: float
    prefix_changed: list[float]

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> list[tuple[str, str]]:
        """(label, value) rows for people: counts, then the shares as percentages
        (the rows ``semantic-ids diff`` prints; the HTML report shows them too)."""
        rows = [
            ("items old / new", f"{self.n_old:,} / {self.n_new:,}"),
            ("common / added / removed", f"{self.n_common:,} / {self.n_added:,} / {self.n_removed:,}"),
        ]
        if self.n_common == 0:  # a share of no items is no number: say why there is none
            return rows + [("full ID changed (common items)", "none: the exports share no items, nothing to compare")]
        rows.append(("full ID changed (common items)", f"{self.full_id_changed:.2%}"))
        return rows + [(f"prefix changed at depth {d}", f"{v:.2%}") for d, v in enumerate(self.prefix_changed, 1)]


def churn_codes(old_ids: np.ndarray, old_codes: np.ndarray, new_ids: np.ndarray, new_codes: np.ndarray,
                *, old: str = "old", new: str = "new") -> ChurnReport:
    """:class:`ChurnReport` of two (ids (N,), codes (N, L + 1)) pairs.

    Ids of different kinds (integers in one, strings in the other) never match.
    With different numbers of levels, prefixes are compared up to the shorter
    one's depth and every full ID counts as changed.
    """
    old_codes, new_codes = np.asarray(old_codes, np.int64), np.asarray(new_codes, np.int64)
    row = rows_of(new_ids, old_ids, missing="-1")  # each new item's row in old, or -1
    m, kept = kept_prefixes(new_codes, row, old_codes)
    depth = min(old_codes.shape[1], new_codes.shape[1])
    if m:
        prefix = [1.0 - k for k in kept]
        full = prefix[-1] if old_codes.shape[1] == new_codes.shape[1] else 1.0
    else:
        prefix, full = [0.0] * depth, 0.0
    return ChurnReport(old=old, new=new, n_old=int(len(old_ids)), n_new=int(len(new_ids)), n_common=m,
                       n_added=int(len(new_ids) - m), n_removed=int(len(old_ids) - m),
                       full_id_changed=full, prefix_changed=prefix)


def churn(old: str | Path, new: str | Path) -> ChurnReport:
    """Churn from the export at ``old`` to the export at ``new`` (torch-free).

    Raises :class:`~semantic_ids.manifest.ExportError` naming the path of a
    missing, damaged or foreign directory.
    """
    a, b = read_export(old, model=False), read_export(new, model=False)
    return churn_codes(a.ids, a.codes, b.ids, b.codes, old=str(old), new=str(new))

