"""Downstream quality of semantic IDs: train a generative retriever on them and rank.

``evaluate_downstream(ids, codes, sequences)`` splits users leave-one-out, trains
the retriever (:mod:`.retriever`) on the IDs, ranks every test user's next item
by trie-constrained beam search and returns Recall@5/10 and NDCG@5/10 with 95%
bootstrap intervals, beside a popularity ranking and the paired difference to it.
:mod:`.content` is the content-kNN baseline, :mod:`.coldstart` the cold-start split
and the ways to rank cold items (docs/downstream.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .coldstart import cold_items, cold_split
from .content import content_knn
from .metrics import paired_bootstrap, popularity_buckets, recall_ndcg, target_ranks
from ...stages.sequences import SequenceError, Sequences, read_sequences
from .sequences import Split, leave_one_out, training_windows
from ...errors import ExportError

log = logging.getLogger(__name__)

__all__ = [
    "SequenceError",
    "Sequences",
    "Split",
    "check_holdout",
    "cold_items",
    "cold_split",
    "content_knn",
    "evaluate_downstream",
    "evaluate_export_downstream",
    "leave_one_out",
    "paired_bootstrap",
    "popularity_buckets",
    "read_sequences",
    "recall_ndcg",
    "summarize",
    "target_ranks",
    "training_windows",
]


def summarize(per_user: dict[str, np.ndarray], *, n_boot: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean and 95% bootstrap interval of each per-user metric."""
    out = {}
    for name, v in per_user.items():
        mean, lo, hi = paired_bootstrap(v, np.zeros_like(v), n_boot=n_boot, seed=seed)
        out[name] = {"mean": mean, "low": lo, "high": hi}
    return out


def evaluate_downstream(ids, codes: np.ndarray, sequences: str | Path, config=None, *, level_sizes=None,
                        show_progress: bool = True, n_boot: int = 2000) -> dict:
    """Train a generative retriever on ``codes`` and score it on the test users.

    Parameters
    ----------
    ids : (N,) item ids, the rows of ``codes``.
    codes : (N, L) int64 unique IDs (an export's codes, the collision level included).
    sequences : JSON-lines file of ``{"user_id", "items"}`` in time order.
    config : RetrieverConfig (default: the small CPU configuration).

    Returns
    -------
    dict with ``protocol``, ``config``, ``ids`` (Recall/NDCG means and intervals, invalid-ID
    rate, training history), ``popularity`` and ``ids_minus_popularity`` (paired intervals).
    """
    from .retriever import GenerativeRetriever, RetrieverConfig, popularity_scores

    config = config or RetrieverConfig()
    seqs = read_sequences(sequences, ids)  # every input problem is reported before training
    split = leave_one_out(seqs, config.max_history)
    start = time.perf_counter()
    model = GenerativeRetriever(codes, level_sizes, config, show_progress=show_progress).fit(split)
    trained = time.perf_counter() - start
    ours = model.score(split.test_history, split.test_target)
    pop = popularity_scores(split, len(codes))
    metrics = [k for k in ours if k != "invalid"]
    return {
        "protocol": {
            "split": "leave-one-out: last item test, second-to-last validation, the rest training",
            "users": len(seqs),
            "items": int(len(codes)),
            "max_history": config.max_history,
            "early_stopping": f"validation Recall@10 on {config.valid_users or 'all'} users, patience {config.patience}",
            "ranking": f"trie-constrained beam search, beam {config.beam}",
        },
        "config": config.to_dict(),
        "ids": {
            **summarize({k: ours[k] for k in metrics}, n_boot=n_boot),
            "invalid_id_rate": float(ours["invalid"].mean()),
            "best_epoch": model.best_epoch_,
            "still_improving": model.still_improving,
            "train_seconds": round(trained, 1),
            "history": model.history_,
            "parameters": model.model_.num_parameters(),
        },
        "popularity": summarize(pop, n_boot=n_boot),
        "ids_minus_popularity": {
            k: dict(zip(("mean", "low", "high"), paired_bootstrap(ours[k], pop[k], n_boot=n_boot))) for k in metrics
        },
    }


def evaluate_export_downstream(export_dir: str | Path, sequences: str | Path, config=None, **kw) -> dict:
    """:func:`evaluate_downstream` on an export directory's IDs (read without its model).

    An export built with sequences must have left each user's last two items out of
    the signal (``collab.holdout_last >= 2``, ``build --holdout-last 2``): otherwise
    its IDs saw the validation and test items, and the evaluation is refused.
    """
    from ...export.io import read_export

    ex = read_export(export_dir, model=False)
    check_holdout(export_dir, ex.info)
    return evaluate_downstream(ex.ids, ex.codes, sequences, config, **kw)


def check_holdout(export_dir: str | Path, info: dict) -> None:
    """Refuse an export built with sequences whose IDs saw the validation and test items.

    ``info`` is the export's ``config.json`` (``read_export(...).info``); the build must
    have used ``collab.holdout_last >= 2`` (``build --holdout-last 2``).
    """
    if "collab_items" in info:
        held = int(info.get("config", {}).get("collab", {}).get("holdout_last", 0))
        if held < 2:
            raise ExportError(
                f"{export_dir} was built with sequences and collab.holdout_last={held}: its IDs saw the "
                "validation and test items that a leave-one-out evaluation scores; rebuild it with "
                "--holdout-last 2 (config [collab] holdout_last = 2) to evaluate it downstream"
            )
