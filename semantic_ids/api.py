"""The estimator: ``SemanticIDs(config).fit(catalog).save(out)``; ``SemanticIDs.load(out)``.

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

from . import __version__
from . import faults
from .catalog import Catalog, load_catalog
from .collisions import rebalance_last_level, resolve
from .config import BuildConfig
from .cache import checkpoint_root
from .embed import check_embeddings, embed_texts, given_embeddings
from .export import read_export, write_export
from .metrics import code_stats
from .resources import StageTimer, rss_bytes
from .rqvae import RQVAE
from .sizing import sized_config
from .train import encode_all, train_rqvae

log = logging.getLogger(__name__)


class NotFittedError(RuntimeError):
    """The estimator was used before ``fit`` or ``load``."""


class SemanticIDs:
    """Catalog -> embeddings -> RQ-VAE -> unique hierarchical semantic IDs.

    Parameters
    ----------
    config : BuildConfig, optional
        Defaults: 3 levels + a collision level; with ``model.codebook_sizes``
        unset, level sizes follow the catalog size (TIGER's 3 x 256 from 5,120
        items on; see :mod:`semantic_ids.sizing`).
    show_progress : bool
        Show tqdm progress bars for embedding and training.

    Attributes (after ``fit`` or ``load``)
    --------------------------------------
    model_ : RQVAE
    ids_ : (N,) item ids
    codes_ : (N, L + 1) int64, resolved codes (the last level numbers collisions)
    fusion_ : collab.Fusion for a build with sequences, else None
    embedding_dim_ : the text embeddings' dimension
    metrics_ : dict, quality, timings and memory
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
        catalog: str | Path | pd.DataFrame | Catalog,
        embeddings: str | Path | np.ndarray | None = None,
        sequences: str | Path | None = None,
        previous: str | Path | None = None,
    ) -> "SemanticIDs":
        """Read the catalog, embed (or take ``embeddings``), train, assign, resolve.

        Parameters
        ----------
        catalog : path (.parquet / .csv / .jsonl), DataFrame or Catalog
        embeddings : optional path (.parquet keyed by id, .npy in catalog
            order, .npz with ids) or array (N, D) in catalog order; skips the
            embedding stage.
        sequences : optional JSON Lines of user sequences (``{"user_id": ...,
            "items": [ids in time order]}``): behaviour is fused with the text
            embeddings (``config.collab``; see :mod:`semantic_ids.collab`).
        previous : optional earlier export directory: a warm-started rebuild
            that keeps items' IDs where the retrained model agrees with the old
            one (see :mod:`semantic_ids.warmstart`). It is read fully before any
            work, so ``save`` may replace it.
        """
        cfg = self.config_
        prev = None
        if previous is not None:
            from . import warmstart

            prev = warmstart.load_previous(previous)  # a bad previous export fails before any work
            cfg = cfg.replace(model=warmstart.warm_model_config(cfg.model, prev.config.model, previous))
        timer = StageTimer()
        wall = time.perf_counter()
        with timer.stage("catalog"):
            # with embeddings given, a catalog of ids alone is enough (as in the streaming build)
            cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog, cfg.catalog, require_text=embeddings is None)
            emb = given_embeddings(embeddings, cat.ids, cfg.catalog.id_column)
        seqs = None
        if sequences is not None:
            from .downstream.sequences import read_sequences

            with timer.stage("sequences"):  # bad sequences fail here, before embedding or training
                seqs = read_sequences(sequences, cat.ids, min_length=1)
        cfg = sized_config(cfg, len(cat))  # unset codebook sizes follow the catalog size (semantic_ids.sizing)
        self._fitted_config = cfg
        embed_stats: dict[str, Any] = {"source": "given" if emb is not None else cfg.embedding.model}
        if emb is None:
            with timer.stage("embed"):
                emb, counts = embed_texts(cat.texts, cfg.embedding, show_progress=self.show_progress)
            embed_stats.update(counts)
        text_dim = int(emb.shape[1])
        self.fusion_ = None
        collab_stats: dict[str, Any] | None = None
        if seqs is not None:
            from .collab import fit_fusion

            with timer.stage("collab"):
                self.fusion_ = fit_fusion(emb, cat.ids, seqs.items, cfg.collab, seed=cfg.seed)
                emb = self.fusion_.fuse(emb, cat.ids)
            collab_stats = {"users": len(seqs), "interactions": int(sum(len(s) for s in seqs.items)),
                            "items_with_interactions": int((self.fusion_.counts > 0).sum())}
        anchor = None
        if prev is not None:
            warmstart.check_input_dim(prev.model, emb.shape[1], previous)
            anchor = warmstart.anchor_codes(cat.ids, prev)
        ckpt_root = checkpoint_root(cfg)
        warm = {} if prev is None else {"init_from": prev.model, "lr_scale": warmstart.WARM_LR_SCALE, "anchor": anchor}
        with timer.stage("train"):
            result = train_rqvae(
                emb, cfg.model, cfg.train, seed=cfg.seed, show_progress=self.show_progress, checkpoint_dir=ckpt_root, **warm
            )
        self._checkpoint = result.checkpoint
        x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        if prev is not None:
            with timer.stage("align"):
                common, old_raw = warmstart.previous_codes_of(cat.ids, prev)
                warmstart.align_levels(result.model, prev.model, x[torch.from_numpy(common)], old_raw)
        with timer.stage("assign"):
            nearest = encode_all(result.model, x).numpy()
            raw = nearest
            if prev is not None:  # old items keep old codes that are nearly as close as the nearest
                raw = warmstart.sticky_codes(result.model, x, anchor, warmstart.STICKY_MARGIN, nearest)
        with timer.stage("resolve"):
            moved = raw
            if cfg.collision.strategy == "balanced":
                moved = rebalance_last_level(
                    raw, cat.ids, _last_level_costs(result.model, x), cfg.model.codebook_sizes[-1]
                )
            if prev is None:
                res = resolve(moved, cat.ids, cfg.collision.strategy)
            else:  # old items keep their collision numbers where their codes did not change
                res = warmstart.carry_over_counter(moved, cat.ids, prev.ids, prev.codes)
        self.model_ = result.model
        self.history_ = result.history
        self.ids_ = cat.ids
        self.raw_codes_ = raw
        self.codes_ = res.codes
        self.embedding_dim_ = text_dim
        stats = code_stats(raw, cfg.model.codebook_sizes)
        recon = _recon_error(self.model_, x, raw)
        self.metrics_ = {
            "library_version": __version__,
            "n_items": int(len(cat)),
            "n_empty_text": int(cat.n_empty_text),
            "text_columns": list(cat.text_columns),
            "embedding": {**embed_stats, "dim": self.embedding_dim_},
            **({"collab": collab_stats} if collab_stats else {}),
            "reconstruction_mse": recon,
            **stats,
            "collision_rate_before_resolution": stats["collision_rate"],
            "collision_rate_after_rebalancing": code_stats(res.codes[:, :-1], cfg.model.codebook_sizes)["collision_rate"],
            "items_moved_by_rebalancing": int((res.codes[:, :-1] != raw).any(axis=1).sum()),
            "unique_after_resolution": bool(len(np.unique(self.codes_, axis=0)) == len(self.codes_)),
            "collision_level_size": int(self.codes_[:, -1].max()) + 1 if len(self.codes_) else 0,
            "stages": timer.stages,
            "total_seconds": round(time.perf_counter() - wall, 3),
            "training": {"epochs": len(result.history), "history": result.history},
        }
        if prev is not None:
            row = warmstart.common_rows(cat.ids, prev.ids)
            off_nearest = (raw != nearest).any(1)  # old codes kept by hysteresis
            self.metrics_["warm_start"] = {
                "previous_items": int(len(prev.ids)), "new_items": int((row < 0).sum()),
                "lr_scale": warmstart.WARM_LR_SCALE, "sticky_margin": warmstart.STICKY_MARGIN,
                "items_kept_off_nearest": int(off_nearest.sum()), **warmstart.kept_shares(res.codes, row, prev.codes),
            }
        self._timer = timer
        return self

    def fit_transform(self, catalog, embeddings=None, sequences=None) -> np.ndarray:
        return self.fit(catalog, embeddings, sequences).codes_

    # -- using a fitted model ----------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this SemanticIDs is not fitted yet; call fit(...) or SemanticIDs.load(dir) first")

    def features(self, embeddings: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """The model's input for embeddings: text embeddings (``embedding_dim_``) are fused
        with behaviour when the build used sequences (items of ``ids`` the build saw keep
        their own collaborative vectors; others get one predicted from their text)."""
        from .collab import model_inputs

        self._check_fitted()
        emb = check_embeddings(np.asarray(embeddings), np.arange(len(embeddings)))
        return model_inputs(self.fusion_, emb, self.model_.input_dim, ids)

    def transform(self, embeddings: np.ndarray, batch_size: int = 65536, *, ids: np.ndarray | None = None) -> np.ndarray:
        """Model codes (N, L) of embeddings (N, D), without collision resolution
        (``ids``: see :meth:`features`)."""
        x = self.features(embeddings, ids)
        return encode_all(self.model_, torch.from_numpy(x), batch_size).numpy()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts with this build's embedding model and settings (text embeddings;
        :meth:`features` turns them into the model's input)."""
        return embed_texts(list(texts), self.config_.embedding, show_progress=self.show_progress)[0]

    # -- persistence ---------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        """Write the export directory atomically (see :mod:`semantic_ids.export`)."""
        self._check_fitted()
        timer = getattr(self, "_timer", StageTimer())
        start = time.perf_counter()

        def metrics() -> dict[str, Any]:
            stages = {**timer.stages, "export": {"seconds": round(time.perf_counter() - start, 3), "peak_rss_mb": round(rss_bytes() / 2**20, 1)}}
            return {**self.metrics_, "stages": stages}

        with timer.stage("export"):
            path = write_export(out, config=self.config_, ids=self.ids_, codes=self.codes_, model=self.model_, metrics=metrics,
                                fusion=self.fusion_)
        faults.point("api.exported")
        self.metrics_["stages"] = timer.stages
        ckpt = getattr(self, "_checkpoint", None)
        if ckpt is not None:
            ckpt.remove()  # the export now holds the result; a rerun starts fresh
        return path

    @classmethod
    def load(cls, path: str | Path, *, show_progress: bool = False) -> "SemanticIDs":
        """Load an export directory; checksums are verified, nothing is unpickled."""
        exp = read_export(path)
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
        from .tokens import format_sids

        self._check_fitted()
        return format_sids(self.codes_)


def _recon_error(model: RQVAE, x: torch.Tensor, codes: np.ndarray, batch: int = 65536) -> float:
    """Mean squared reconstruction error ||x − decode(codes)||² over items."""
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xh = model.decode_codes(torch.from_numpy(codes[s : s + batch]))
            total += float((xh - x[s : s + batch]).pow(2).sum(1).sum())
    return total / max(len(x), 1)


def _last_level_costs(model: RQVAE, x: torch.Tensor):
    """Squared distances of items' last residuals to every last-level code (for rebalancing)."""

    def costs(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = model.latent(x[torch.from_numpy(rows)])
            q = model.quantizer
            last = q.n_levels - 1
            r = q.residuals(z, last)
            cb = q.codebooks[last].detach()
            if q.layer_norm:
                r, cb = q._prep(r), q._prep(cb)
            return torch.cdist(r, cb).pow(2).numpy()

    return costs
