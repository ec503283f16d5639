"""Recipe: TIGER (Rajput et al. 2023) with Hugging Face ``transformers``, trained on an export's semantic IDs.

    semantic-ids build items.jsonl --out ids/                       # or --sequences S --holdout-last 2
    python pipelines/tiger_t5.py --export ids/ --sequences sequences.jsonl --out out/tiger
    python pipelines/tiger_t5.py ... --config '{"epochs": 50, "sample": 0}'    # T5RecipeConfig fields
    python pipelines/tiger_t5.py ... --preset tiger --device cuda              # TIGER's size, on a GPU

What it does, each step a library call you can copy:

1. ``read_export(export, model=False)``: the items and their codes, the collision level included;
   ``SIDVocab.from_export``: one token per (level, code), laid out after T5's PAD and EOS.
2. ``read_sequences`` + ``leave_one_out``: per user, the last item is the test target, the one
   before it the validation target (the protocol of ``benchmarks/downstream.py``).
3. ``T5Recommender.fit``: a ``T5ForConditionalGeneration`` built from a ``T5Config`` (no downloaded
   weights); the encoder reads the history's ID tokens, the decoder learns the next item's ID;
   early stopping on validation Recall@10.
4. ``T5Recommender.rank``: ``model.generate`` beam search with ``SIDLogitsProcessor`` over the
   export's ``PrefixTrie``, so every beam is an item; Recall/NDCG@5/10 from
   ``semantic_ids.quality.downstream.metrics``, with bootstrap intervals and the paired difference
   to a popularity ranking.

Writes OUT/metrics.json, OUT/ranks.npy (each test user's 0-based rank of the target, -1 = not in
the top ``beam``; for paired comparisons with other runs) and OUT/model/ (``save_pretrained``
safetensors + ``sid_vocab.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (benchmarks/omp_wait.py)

import numpy as np  # noqa: E402

from semantic_ids.decoding import SIDVocab  # noqa: E402
from semantic_ids.errors import SemanticIDsError  # noqa: E402
from semantic_ids.export.io import read_export  # noqa: E402
from semantic_ids.quality.downstream import check_holdout, leave_one_out, paired_bootstrap, read_sequences, summarize  # noqa: E402
from semantic_ids.quality.downstream.metrics import recall_ndcg, target_ranks  # noqa: E402
from semantic_ids.quality.downstream.retriever import popularity_scores  # noqa: E402
from semantic_ids.quality.downstream.t5 import T5RecipeConfig, T5Recommender  # noqa: E402

log = logging.getLogger("tiger_t5")


def run(export: str | Path, sequences: str | Path, out: str | Path | None, config: T5RecipeConfig, *,
        show_progress: bool = True, n_boot: int = 2000, save_model: bool = True) -> dict:  # fmt: skip
    """Train and evaluate; returns the metrics dict (also written to ``out/metrics.json`` when ``out`` is given)."""
    ex = read_export(export, model=False)
    check_holdout(export, ex.info)  # IDs built with sequences must not have seen the targets
    vocab = SIDVocab.from_export(ex)
    split = leave_one_out(read_sequences(sequences, ex.ids), config.max_history)
    model = T5Recommender(ex.codes, vocab.level_sizes, config, show_progress=show_progress).fit(split)
    ranked = model.rank(split.test_history)  # (U, beam) item rows, best first
    ranks = target_ranks(ranked, split.test_target)
    ours = recall_ndcg(ranks)
    pop = popularity_scores(split, len(ex.codes))
    result = {
        "protocol": {
            "split": "leave-one-out: last item test, second-to-last validation, the rest training",
            "users": len(split.test_target),
            "items": int(len(ex.codes)),
            "level_sizes": list(vocab.level_sizes),
            "early_stopping": f"validation Recall@10 on {config.valid_users or 'all'} users, patience {config.patience}",
            "ranking": f"model.generate beam search, SIDLogitsProcessor over the export's trie, beam {config.beam}",
        },
        "export": {"path": str(export), "manifest_sha256": ex.manifest_sha256},
        "config": config.to_dict(),
        "t5": {
            **summarize(ours, n_boot=n_boot),
            "invalid_id_rate": float((ranked < 0).mean()),
            "best_epoch": model.best_epoch_,
            "train_seconds": round(model.train_seconds_, 1),
            "history": model.history_,
            "parameters": model.num_parameters(),
        },
        "popularity": summarize(pop, n_boot=n_boot),
        "t5_minus_popularity": {k: dict(zip(("mean", "low", "high"), paired_bootstrap(ours[k], pop[k], n_boot=n_boot)))
                                for k in ours},  # fmt: skip
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "ranks.npy", ranks)
        (out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
        if save_model:
            model.save(out / "model")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", required=True, help="an export directory (semantic-ids build ... --out DIR)")
    ap.add_argument("--sequences", required=True, help='JSON lines {"user_id": ..., "items": [ids in time order]}')
    ap.add_argument("--out", required=True, help="directory for metrics.json, ranks.npy and model/")
    ap.add_argument("--preset", choices=["small", "tiger"], default="small",
                    help="small: T5RecipeConfig() (CPU); tiger: T5RecipeConfig.tiger(), TIGER's size (GPU)")
    ap.add_argument("--config", default="{}", help="JSON of T5RecipeConfig fields over the preset, e.g. '{\"epochs\": 50}'")
    ap.add_argument("--device", default=None, help="torch device, e.g. cuda")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.WARNING)
    logging.getLogger("semantic_ids.quality.downstream").setLevel(logging.INFO)  # one line per epoch
    try:
        fields = json.loads(args.config)
        if args.device:
            fields["device"] = args.device
        config = T5RecipeConfig.tiger(**fields) if args.preset == "tiger" else T5RecipeConfig(**fields)
        res = run(args.export, args.sequences, args.out, config, show_progress=not args.quiet)
    except (SemanticIDsError, json.JSONDecodeError, TypeError) as exc:  # TypeError: an unknown config field
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t, p = res["t5"], res["popularity"]
    print(f"T5 ({t['parameters']:,} parameters, best epoch {t['best_epoch']}, {t['train_seconds']:.0f} s): "
          + ", ".join(f"{k} {t[k]['mean']:.4f} [{t[k]['low']:.4f}, {t[k]['high']:.4f}]" for k in ("recall@10", "ndcg@10"))
          + f"; popularity recall@10 {p['recall@10']['mean']:.4f}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
