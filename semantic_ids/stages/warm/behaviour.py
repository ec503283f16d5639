"""Warm rebuilds of IDs built with sequences: the new behaviour space in the old one's coordinates.

A rebuild with sequences learns every item's collaborative vector anew: the SVD
of the new PPMI matrix. Even where behaviour barely moved, an SVD basis is only
defined up to a rotation (and sign flips, and swaps of close singular vectors), so
the new vectors can sit anywhere relative to the old ones, the warm-started
RQ-VAE sees inputs it never saw, and almost no ID survives (MovieLens: 5.6% kept).

:func:`rotate_to_previous` puts the new vectors in the old basis first, by
orthogonal Procrustes (Schönemann 1966) over the items both builds learnt from
behaviour: ``R = argmin ||V_new R - V_old||_F`` over orthogonal ``R``, from the SVD
of ``V_new.T V_old``. A rotation keeps every distance and angle between the new
vectors (the new behaviour space is unchanged, only its coordinates), and the
text -> behaviour map turns with it (``ridge @ R``), so items predicted from text
land in the same coordinates. The keep-old-codes rules of the warm start then see
old items where they were, wherever their behaviour did not move.

A rotation cannot undo real movement, and on a sparse catalog behaviour moves a
lot between rebuilds: on Amazon Beauty grown from 80% to 100% of the items and
interactions, the rotated vectors of the old items still sit at a mean squared
distance of 0.63 from the old ones (unit vectors: cosine 0.69), and 0.7% of the
old items keep their full ID (a blend weighted by evidence, ``c_old / c_new``,
kept 7.0%). So an old item keeps its previous vector until its behaviour
evidence has grown by ``REFRESH_FACTOR`` (4; on Beauty's growth 4 keeps 95.0-96.7% of the full IDs over
seeds 0-2, where 2 kept 36.2% with the 50-epoch warm training of the time): with summed co-occurrence weight
``c_old`` then and ``c_new`` now, it takes its new (rotated) vector when
``c_new >= REFRESH_FACTOR * c_old``, else its old one. This is hysteresis on
behaviour, as the sticky codes are on the codes: a rebuild's sampling noise and
a modest growth of interactions do not move IDs; an item whose audience has
quadrupled, or that had no interactions before, is placed anew. New items take
their new vector.

:func:`incomparable` lists what makes a previous export's inputs incomparable
with this build's (the text embedding's model and template, the ``[collab]``
settings of a build with sequences); a warm start refuses them.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ...config import BuildConfig
from ...model.collab import Fusion
from ...model.keys import rows_of

log = logging.getLogger(__name__)

# an old item keeps its previous behaviour vector until its co-occurrence weight has grown by
# this factor (module docstring); 0 turns the carry-over off (rotation only)
REFRESH_FACTOR = 4.0

# fields whose change gives other inputs for the same items: the old codes would mean something else
TEXT_FIELDS = (("embedding", "model"), ("embedding", "max_seq_length"), ("catalog", "template"),
               ("catalog", "text_columns"), ("catalog", "list_separator"))


def incomparable(config: BuildConfig, previous: BuildConfig, with_sequences: bool) -> list[str]:
    """``section.field=new (previous old)`` for every setting that differs and changes what the
    model's inputs mean: the text fields, and every ``[collab]`` field when the previous
    export was built with sequences."""
    fields = list(TEXT_FIELDS)
    if with_sequences:
        fields += [("collab", f.name) for f in dataclasses.fields(type(config.collab)) if f.init]
    out = []
    for section, name in fields:
        new, old = getattr(getattr(config, section), name), getattr(getattr(previous, section), name)
        if _plain(new) != _plain(old):
            out.append(f"{section}.{name}={new!r} (previous {old!r})")
    return out


def _plain(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def procrustes(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """The orthogonal ``R`` (d, d) minimising ``||new @ R - old||_F`` for (M, d) ``new`` and ``old``."""
    u, _, vt = np.linalg.svd(np.asarray(new, np.float64).T @ np.asarray(old, np.float64))
    return u @ vt


def rotate_to_previous(fusion: Fusion, previous: Fusion) -> tuple[Fusion, dict]:
    """``fusion`` rotated into ``previous``'s coordinates (see the module docstring), and the
    ``behaviour`` entry of the warm start's metrics: the items matched and the mean
    squared distance of their vectors to the old ones before and after the rotation."""
    row = rows_of(fusion.ids, previous.ids, missing="-1")
    both = np.flatnonzero((row >= 0) & (fusion.counts > 0))
    both = both[previous.counts[row[both]] > 0]  # learnt from behaviour in both builds
    if len(both) < fusion.vectors.shape[1]:
        log.warning("warm start: only %d items have behaviour in both builds; the collaborative vectors are not rotated", len(both))
        return fusion, {"matched_items": int(len(both)), "rotated": False}
    new, old = fusion.vectors[both].astype(np.float64), previous.vectors[row[both]].astype(np.float64)
    r = procrustes(new, old)
    before = float(np.mean(np.sum((new - old) ** 2, 1)))
    after = float(np.mean(np.sum((new @ r - old) ** 2, 1)))
    log.info("warm start: behaviour space rotated onto the previous one over %d items (mean squared distance %.3f -> %.3f)",
             len(both), before, after)
    vectors = fusion.vectors @ r
    facts = {"matched_items": int(len(both)), "rotated": True,
             "mean_sq_distance_before": round(before, 4), "mean_sq_distance_after": round(after, 4)}
    if REFRESH_FACTOR > 0:
        common = np.flatnonzero(row >= 0)
        c_old = previous.counts[row[common]].astype(np.float64)
        keep = (c_old > 0) & (fusion.counts[common] < REFRESH_FACTOR * c_old)
        vectors[common[keep]] = previous.vectors[row[common[keep]]]
        facts["old_vectors_kept"] = int(keep.sum())
    return Fusion(fusion.config, fusion.ids, vectors.astype(np.float32), fusion.counts, fusion.ridge @ r), facts
