"""A warm-started rebuild as the runners drive it (``build --previous DIR``).

:class:`WarmStart` holds the previous export and each item's previous codes,
and gives every stage what it needs, so the in-memory estimator and the
streaming build run the same warm start:

    train    start from the old model, at a small learning rate, old items
             anchored to their old codes (:func:`~semantic_ids.train.train_rqvae`)
    align    renumber each level's codes to the old ones (Hungarian matching)
    encode   old items keep old codes nearly as close as the nearest (sticky codes)
    resolve  old items keep their collision numbers where their codes did not change
    metrics  how many previous items kept their ID and each prefix

The algorithms are in :mod:`semantic_ids.warmstart`; see docs/warmstart.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import algorithms as warmstart
from .behaviour import incomparable, rotate_to_previous
from ...config import BuildConfig
from ...model.keys import IdRows
from ...errors import ExportError

MODEL_SWITCHES = ("layer_norm_residuals", "normalize_latent")  # experiment switches that shape the model


class WarmStart:
    """The previous export at ``path`` (read fully and verified now, so the new
    export may replace it), ready to warm-start a build."""

    def __init__(self, path: str | Path):
        self.path = path
        self.previous = warmstart.load_previous(path)  # a bad previous export fails before any work
        self.rows = IdRows(self.previous.ids)  # built once: the streaming build resolves partition by partition
        self.anchor: np.ndarray | None = None
        self.kept_off_nearest = 0
        self.behaviour: dict | None = None  # how the behaviour space was rotated (builds with sequences)

    def config(self, config: BuildConfig) -> BuildConfig:
        """The build's config: the previous codebook sizes unless set. Any other difference
        in the model, or in the experiment switches that shape it, is refused (ValueError
        naming the fields), before the catalog is read."""
        previous = self.previous.config
        diff = [
            f"experimental.{name}={getattr(config.experimental, name)!r} (previous {getattr(previous.experimental, name)!r})"
            for name in MODEL_SWITCHES
            if getattr(config.experimental, name) != getattr(previous.experimental, name)
        ]
        if diff:
            raise ExportError(f"{self.path}: the previous export's model differs from this build's: {', '.join(diff)}; "
                             "a warm start needs the same model config")
        inputs = incomparable(config, previous, with_sequences=self.previous.fusion is not None)
        if inputs:
            raise ExportError(f"{self.path}: the previous export's inputs differ from this build's: {', '.join(inputs)}; "
                              "its IDs are not comparable with this build's. Keep these settings for a warm start, or "
                              "build without --previous to change them")
        return config.replace(model=warmstart.warm_model_config(config.model, previous.model, self.path))

    def align_fusion(self, fusion):
        """A build's fitted :class:`~semantic_ids.model.collab.Fusion` in the previous export's
        behaviour coordinates (:func:`~semantic_ids.stages.warm.behaviour.rotate_to_previous`);
        unchanged when the previous export has none (the input dims then differ: refused)."""
        if fusion is None or self.previous.fusion is None:
            return fusion
        fusion, self.behaviour = rotate_to_previous(fusion, self.previous.fusion)
        return fusion

    def prepare(self, ids: np.ndarray, input_dim: int) -> None:
        """Match this build's items (``ids``, in the order of its embeddings) to the previous ones."""
        warmstart.check_input_dim(self.previous.model, input_dim, self.path)
        self.anchor = warmstart.anchor_codes(ids, self.previous)

    def train_kwargs(self) -> dict:
        """What :func:`~semantic_ids.train.train_rqvae` takes for a warm start."""
        return {"init_from": self.previous.model, "lr_scale": warmstart.WARM_LR_SCALE, "anchor": self.anchor}

    def align(self, model, rows_x: Callable[[np.ndarray], torch.Tensor], max_items: int | None = None, seed: int = 0) -> None:
        """Renumber ``model``'s codes to the previous ones, matched on the items both builds
        hold (``rows_x(rows)`` gives their embeddings; at most ``max_items`` of them, a
        seeded sample, when the streaming build must bound its memory)."""
        rows = np.flatnonzero(self.anchor[:, 0] >= 0)
        if max_items is not None and len(rows) > max_items:
            rows = np.sort(np.random.default_rng(seed).choice(rows, max_items, replace=False))
        warmstart.align_levels(model, self.previous.model, rows_x(rows), self.anchor[rows])

    def sticky(self, model, x: torch.Tensor, nearest: np.ndarray, start: int = 0) -> np.ndarray:
        """Codes of rows ``start..start+len(x)``: old items keep old codes nearly as close as ``nearest``."""
        codes = warmstart.sticky_codes(model, x, self.anchor[start : start + len(x)], warmstart.STICKY_MARGIN, nearest)
        self.kept_off_nearest += int((codes != nearest).any(axis=1).sum())
        return codes

    def resolve(self, codes: np.ndarray, ids: np.ndarray):
        """The collision level, keeping old items' numbers (a :class:`~semantic_ids.collisions.Resolution`)."""
        return warmstart.carry_over_counter(codes, ids, self.rows, self.previous.codes)

    def number(self, codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """:meth:`resolve`'s collision numbers alone (for the on-disk resolution, partition by partition)."""
        return self.resolve(codes, ids).codes[:, -1]

    def metrics(self, ids: np.ndarray, codes: np.ndarray) -> dict:
        """The ``warm_start`` entry of ``metrics.json`` for the final IDs ``codes`` (N, L + 1) of ``ids``."""
        row = warmstart.common_rows(ids, self.rows)
        return {
            "previous_items": int(len(self.previous.ids)), "new_items": int((row < 0).sum()),
            "lr_scale": warmstart.WARM_LR_SCALE, "sticky_margin": warmstart.STICKY_MARGIN,
            "items_kept_off_nearest": self.kept_off_nearest,  # old codes kept by hysteresis
            **({"behaviour": self.behaviour} if self.behaviour else {}),
            **warmstart.kept_shares(codes, row, self.previous.codes),
        }
