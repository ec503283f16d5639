"""The estimator: ``SemanticIDs(config).fit(embeddings, ids=ids).save(export_dir)``; ``SemanticIDs.load(export_dir)``.

Follows the scikit-learn contract: ``__init__`` stores arguments only, ``fit``
validates and learns, learned state ends in ``_``, and using it before ``fit``
raises a clear error.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import faults
from ..stages.cache import checkpoint_root
from ..stages.catalog import validate_ids
from ..stages.resolve import rebalance_last_level, resolve
from ..config import BuildConfig
from ..stages.embed import check_embeddings
from ..stages.encode import CHUNK, encode_all, reconstruction_mse
from ..export.io import read_export, write_export
from ..stages.metrics import build_metrics
from ..resources import StageTimer, rss_bytes
from ..model.rqvae import RQVAE
from ..stages.sequences import Sequences, read_sequences
from ..model.sizing import sized_config
from ..stages.train import train_rqvae
from ..errors import NotFittedError
from ..errors import EmbeddingError
from ..threads import fixed_threads

log = logging.getLogger(__name__)


class SemanticIDs:
    """Embeddings -> RQ-VAE -> unique hierarchical semantic IDs.

    A scikit-learn style estimator over embeddings: ``fit(X, ids=...)`` learns
    the model and resolves every item's unique ID (``codes_``);
    ``transform(X)`` gives the model's codes of any embeddings, and
    ``fit_transform(X)`` equals ``fit(X).transform(X)``. Turning a catalog into
    embeddings is the step in front (:func:`semantic_ids.build` runs read ->
    embed -> fit -> export; :func:`semantic_ids.embed.embed_texts` embeds texts).

    Parameters
    ----------
    config : BuildConfig, optional
        Defaults: 3 levels + a collision level; with ``model.codebook_sizes``
        unset, level sizes follow the catalog size (see :mod:`semantic_ids.sizing`).
    show_progress : bool
        Show tqdm progress bars for training.

    Attributes (after ``fit`` or ``load``)
    --------------------------------------
    model_ : RQVAE
    ids_ : (N,) item ids
    codes_ : (N, L + 1) int64, resolved codes (the last level numbers collisions)
    raw_codes_ : (N, L) int64, the exported codes before the collision level
        (the model's nearest codes unless rebalancing or a warm start kept others)
    fusion_ : collab.Fusion for a build with sequences, else None
    embedding_dim_ : the text embeddings' dimension
    metrics_ : dict, quality, timings and memory (:func:`semantic_ids.metrics.build_metrics`)
    history_ : list of per-epoch training records
    """

    def __init__(self, config: BuildConfig | None = None, *, show_progress: bool = True):
        self.config = config
        self.show_progress = show_progress

    # -- fitting ---------------------------------------------------------------
    @property
    def config_(self) -> BuildConfig:
        """The config in effect: after ``fit`` or ``load``, with the codebook sizes used."""
        return getattr(self, "_fitted_config", None) or self.config or BuildConfig()

    def fit(
        self,
        X: np.ndarray,
        y: None = None,
        *,
        ids: np.ndarray | None = None,
        sequences: str | Path | Sequences | None = None,
        previous: Any = None,
    ) -> "SemanticIDs":
        """Train on text embeddings, encode every item, resolve collisions.

        Parameters
        ----------
        X : (N, D) text embeddings, one row per item.
        y : ignored (scikit-learn convention).
        ids : (N,) unique item ids (default ``0..N-1``); collisions are numbered in id order.
        sequences : user sequences (a JSON Lines path or :class:`~semantic_ids.sequences.Sequences`
            over rows of ``ids``): behaviour is fused with the text embeddings
            (``config.collab``; see :mod:`semantic_ids.collab`).
        previous : an earlier export directory (or a :class:`~semantic_ids.warmbuild.WarmStart`
            of one): a warm-started rebuild that keeps items' IDs where the retrained
            model agrees with the old one (see :mod:`semantic_ids.warmstart`). It is
            read fully before any work, so ``save`` may replace it.
        """
        if isinstance(X, (str, Path, pd.DataFrame)) or not hasattr(X, "shape") or y is not None:
            raise TypeError("SemanticIDs.fit takes embeddings (N, D) and ids=...; to build from a catalog use "
                            "semantic_ids.build(export_dir, catalog=...) or semantic_ids.runners.build.read_and_embed(catalog, config)")
        cfg = self.config or BuildConfig()
        ids = np.arange(len(X)) if ids is None else validate_ids(pd.DataFrame({"id": ids}), "id", "ids")
        if np.ndim(X) != 2 or len(X) != len(ids) or len(ids) == 0:
            raise EmbeddingError(f"embeddings have shape {np.shape(X)}, expected (n_items={len(ids)}, dim) with n_items >= 1")
        text = check_embeddings(np.asarray(X), ids)
        warm = None
        if previous is not None:
            from ..stages.warm.start import WarmStart

            warm = previous if isinstance(previous, WarmStart) else WarmStart(previous)  # a bad one fails before any work
            cfg = warm.config(cfg)
        timer = StageTimer()
        wall = time.perf_counter()
        seqs = None
        if sequences is not None:
            with timer.stage("sequences"):  # bad sequences fail here, before training
                seqs = sequences if isinstance(sequences, Sequences) else read_sequences(sequences, ids, min_length=1)
        cfg = sized_config(cfg, len(ids))  # unset codebook sizes follow the catalog size (semantic_ids.sizing)
        self._fitted_config = cfg
        emb = text
        self.fusion_ = None
        collab_stats: dict[str, Any] | None = None
        if seqs is not None:
            from ..model.collab import fit_fusion, used_interactions

            with timer.stage("collab"):
                self.fusion_ = fit_fusion(text, ids, seqs.items, cfg.collab, seed=cfg.seed)
                if warm is not None:  # the new behaviour space in the previous one's coordinates
                    self.fusion_ = warm.align_fusion(self.fusion_)
                emb = self.fusion_.fuse(text, ids)
            collab_stats = {**used_interactions(seqs.items, cfg.collab.holdout_last),
                            "items_with_interactions": int((self.fusion_.counts > 0).sum())}
        if warm is not None:
            warm.prepare(ids, emb.shape[1])
        with timer.stage("train"), fixed_threads(cfg.train.threads):  # IDs independent of the core count
            result = train_rqvae(
                emb, cfg.model, cfg.train, seed=cfg.seed, show_progress=self.show_progress, experimental=cfg.experimental,
                checkpoint_dir=checkpoint_root(cfg), **({} if warm is None else warm.train_kwargs()),
            )
        self._checkpoint = result.checkpoint
        x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        if warm is not None:
            with timer.stage("align"):
                warm.align(result.model, lambda rows: x[torch.from_numpy(rows)])
        with timer.stage("encode"):
            nearest = encode_all(result.model, x).numpy()
            raw = nearest if warm is None else warm.sticky(result.model, x, nearest)
        with timer.stage("resolve"):
            moved = raw
            if cfg.collision.strategy == "balanced":
                moved = rebalance_last_level(raw, ids, _last_level_costs(result.model, x), cfg.model.codebook_sizes[-1])
            res = resolve(moved, ids, cfg.collision.strategy) if warm is None else warm.resolve(moved, ids)
        self.model_ = result.model
        self.history_ = result.history
        self.ids_ = ids
        self.raw_codes_ = raw
        self.codes_ = res.codes
        self.embedding_dim_ = int(text.shape[1])
        self.metrics_ = build_metrics(
            mode="memory",
            raw_codes=raw,
            codes=res.codes,
            codebook_sizes=cfg.model.codebook_sizes,
            embedding={"source": "given", "dim": self.embedding_dim_},
            reconstruction=(reconstruction_mse(self.model_, x, raw), len(x)),
            training={"epochs": len(result.history), "train_items": min(len(x), cfg.train.max_train_items or len(x)),
                      "history": result.history},
            stages=timer.stages,
            total_seconds=round(time.perf_counter() - wall, 3),
            collab=collab_stats,
            warm_start=None if warm is None else warm.metrics(ids, res.codes),
        )
        return self

    def fit_transform(self, X: np.ndarray, y: None = None, **fit_params) -> np.ndarray:
        """``fit(X, **fit_params).transform(X, ids=...)``: the model's codes (N, L) of the
        training items (their unique IDs are ``codes_``)."""
        return self.fit(X, **fit_params).transform(X, ids=fit_params.get("ids"))

    # -- using a fitted model ----------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this SemanticIDs is not fitted yet; call fit(...) or SemanticIDs.load(dir) first")

    def features(self, embeddings: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """The model's input for embeddings: text embeddings (``embedding_dim_``) are fused
        with behaviour when the build used sequences (items of ``ids`` the build saw keep
        their own collaborative vectors; others get one predicted from their text)."""
        from ..model.collab import model_inputs

        self._check_fitted()
        emb = check_embeddings(np.asarray(embeddings), np.arange(len(embeddings)))
        return model_inputs(self.fusion_, emb, self.model_.input_dim, ids)

    def transform(self, embeddings: np.ndarray, batch_size: int = CHUNK, *, ids: np.ndarray | None = None) -> np.ndarray:
        """The model's nearest codes (N, L) of text embeddings (N, D), without collision
        resolution (``ids``: see :meth:`features`)."""
        x = self.features(embeddings, ids)
        return encode_all(self.model_, x, batch_size).numpy()

    # -- persistence ---------------------------------------------------------------
    def save(self, export_dir: str | Path) -> Path:
        """Write the export directory atomically (see :mod:`semantic_ids.export.io`); return it (absolute).

        Only a new path, an empty directory or an earlier export is replaced
        (:class:`~semantic_ids.export.outdir.OutputPathError` otherwise)."""
        self._check_fitted()
        start = time.perf_counter()
        export_stage: dict[str, Any] = {}

        def metrics() -> dict[str, Any]:
            export_stage.update(seconds=round(time.perf_counter() - start, 3), peak_rss_mb=round(rss_bytes() / 2**20, 1))
            return {**self.metrics_, "stages": {**self.metrics_.get("stages", {}), "export": export_stage}}

        path = write_export(export_dir, config=self.config_, ids=self.ids_, codes=self.codes_, model=self.model_, metrics=metrics,
                            fusion=self.fusion_)
        faults.point("api.exported")
        self.metrics_["stages"] = {**self.metrics_.get("stages", {}), "export": export_stage}
        ckpt = getattr(self, "_checkpoint", None)
        if ckpt is not None:
            ckpt.remove()  # the export now holds the result; a rerun starts fresh
        return path

    @classmethod
    def load(cls, export_dir: str | Path, *, show_progress: bool = True) -> "SemanticIDs":
        """Load an export directory; checksums are verified, nothing is unpickled.
        ``show_progress``: for a later ``fit``."""
        exp = read_export(export_dir)
        obj = cls(exp.config, show_progress=show_progress)
        obj._fitted_config = exp.config
        obj.model_ = exp.model
        obj.ids_ = exp.ids
        obj.codes_ = exp.codes
        obj.raw_codes_ = exp.codes[:, :-1]
        obj.fusion_ = exp.fusion
        obj.embedding_dim_ = exp.fusion.text_dim if exp.fusion is not None else int(exp.info["input_dim"])
        obj.metrics_ = exp.metrics
        obj.history_ = exp.metrics.get("training", {}).get("history", [])
        return obj

    @property
    def semantic_ids_(self) -> list[str]:
        from ..export.tokens import format_sids

        self._check_fitted()
        return format_sids(self.codes_)


def _last_level_costs(model: RQVAE, x: torch.Tensor):
    """Squared distances of items' last residuals to every last-level code (for rebalancing)."""

    def costs(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = model.latent(x[torch.from_numpy(rows)])
            q = model.quantizer
            last = q.n_levels - 1
            r = q.residuals(z, last)
            cb = q.codebooks[last].detach()
            r, cb = q.as_compared(r), q.as_compared(cb)
            return torch.cdist(r, cb).pow(2).numpy()

    return costs
