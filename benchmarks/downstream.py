"""Downstream quality of ID schemes: the same generative retriever trained on each, same budget.

    python benchmarks/downstream.py --catalogs beauty movielens --seeds 0 1 2
    python benchmarks/downstream.py --catalogs movielens --arms ours random --seeds 0 --out /tmp/d
    python benchmarks/downstream.py --preset tiger --device cuda          # TIGER-sized, on a GPU

Arms (IDs are built on the same cached embeddings; each seed builds its own IDs
where the scheme has a seed, and trains its own retriever):

- ``ours``: our default build (the catalog's pipeline template, defaults otherwise);
- ``rq-kmeans``: ``model.method = "rq-kmeans"`` (greedy residual k-means);
- ``rqvae-latent``: TIGER's all-latent RQ-VAE (``first_level = "latent"``, MLP 512-256-128, latent 6, 200 epochs);
- ``ours-seq-warm``: catalog growth with behaviour: ``ours-seq`` built on a seeded 80% of the items and each
  user's first 80% of interactions with them, then ``build --previous`` over every item and interaction
  (the warm rebuild a nightly job runs); compare it with ``ours-seq``, the fresh build; ``-r2`` and ``-r0`` refresh
  old items' behaviour vectors once their evidence doubles, or always (``REFRESH_FACTOR`` 2 and 0, against 4);
- ``random``: uniform random codes with the level sizes of our default build, collision level appended;
- ``letter``: LETTER's published Beauty IDs (4 levels), collision level appended where they collide;
- ``sasrec``: one token per item (item-ID embeddings, cross-entropy over all items), the same network;
- ``popularity``: items ranked by training count;
- ``content-knn``: TIGER's Semantic_KNN, items ranked by the cosine of their text embedding (the cached
  embeddings the ID arms use) to the mean of the history's last 3 items (history items excluded);
- ``t5``: our default IDs (as ``ours``) under TIGER's encoder-decoder from ``transformers``
  (``T5ForConditionalGeneration``, ``generate`` with ``SIDLogitsProcessor``; the recipe
  ``pipelines/tiger_t5.py``), sized by ``T5_ARM`` (``--t5-config`` fields override it); max_history,
  beam, valid_users and device are the retriever's, so the protocol is the same;
- ``bisecting-rq`` (an experiment): our level 1 (bisecting k-means), then greedy residual k-means of
  the residual for levels 2-3, i.e. RQ-KMeans' finer levels under our first level.

Every generative arm: the same :class:`RetrieverConfig` (``--config`` fields override
it), leave-one-out split, early stopping on validation Recall@10, trie-constrained
beam search. Per-user ranks are kept under ``out/downstream/`` so an interrupted run
resumes (``--resume``) and intervals are computed over all seeds at the end: each
arm's per-user metric is averaged over its seeds, then a paired bootstrap over users
gives the 95% interval of its difference to ``ours``.

Each row also gives Recall@10 by the target's popularity bucket (quintiles of the training
interactions, ``metrics.popularity_buckets``: bucket 1 is the long tail).

``--protocol cold`` (after LIGER; ``semantic_ids.quality.downstream.coldstart``): a seeded 10% of the
items (``--cold-share``, ``--cold-seed``; the same for every training seed) are cold: removed from every
training part and from the sequences the ``*-seq`` IDs are built from, so they get IDs from text and
predicted behaviour, as a new item does. Metrics are reported for warm targets, cold targets and all.
The ID arms train with the dense head (``--dense-weight``) and are ranked four ways: the beam alone,
``+prefix`` (TIGER's epsilon share), ``+dense`` (LIGER's re-rank) and ``+dense-share1/3`` (1 or 3 of the
10 slots for the cold items nearest the predicted embedding; ``content-knn+share3`` does the same with
its own query, and ``<arm>+text-share3`` the beam with content-kNN's query for the 3 cold slots); ``<arm>-nohead`` trains without the head
(what the head costs warm recall). ``+prior`` ranks every item by its text's cosine to content-kNN's query plus
beta times the model's log-probability of the item's first code (the semantic-ID prior, ``coldstart.prior_rank``;
beta chosen on the validation users, whose targets are warm), and ``+prior-share3`` keeps that ranking's first 7
and gives 3 slots to the cold items it ranks first; ``+beam-prior`` keeps the beam's first m items (m chosen on
validation users) before ``+prior``'s, and ``+beam-prior-share3`` then gives 3 slots to cold items.
``+nprior-share3`` (the recommended cold-start ranking) fills the 3 cold slots with each cold item's first code
voted by its text neighbours among the used items (``coldstart.neighbour_codes``): a cold item's own code comes
from a behaviour vector predicted from text, its neighbours' from observed behaviour. Its neighbours, temperature
and beta are rehearsed on the validation users with folds of used items playing the new ones
(``coldstart.choose_neighbour_prior``), so no cold item's use informs them. ``ours-seq-oracle`` builds
``ours-seq``'s IDs with the cold items' interactions in (its retriever still never sees them): where each cold
item would sit if its behaviour were known, the ceiling of placing new items, for comparison only.
``sasrec`` may return only items it saw trained, and
``popularity`` ranks cold items last: both are 0 on cold targets by construction, asserted.

    python benchmarks/downstream.py --catalogs beauty --protocol cold --seeds 0 1 --exclude-history --out benchmarks/results/downstream-cold
    python benchmarks/downstream.py --catalogs beauty --preset full --arms sasrec ours-seq content-knn popularity --seeds 0 1 \
        --exclude-history --arm-config '{"ours-seq": {"dropout": 0.1, "lr": 0.003}}' --refs sasrec sasrec+prior content-knn --out benchmarks/results/downstream-full

Extending: an arm with codes goes into ``arm_codes``; any other ranking (a different model) into
``RANKERS``, a function of a :class:`Context` returning (U, K) ranked item rows and a dict of facts.

Prints a table and writes benchmarks/results/downstream.json and downstream.md (``--out``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (benchmarks/omp_wait.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from semantic_ids import BuildConfig, SemanticIDs  # noqa: E402
from semantic_ids.stages.embed import embed_texts  # noqa: E402
from semantic_ids.runners.build import read_and_embed  # noqa: E402
from semantic_ids.stages.catalog import load_catalog  # noqa: E402
from semantic_ids.stages.resolve import resolve_counter  # noqa: E402
from semantic_ids.stages.catalog.datasets import fetch_movielens  # noqa: E402
from semantic_ids.model.sizing import auto_codebook_sizes  # noqa: E402
from semantic_ids.quality.downstream import Sequences, leave_one_out, paired_bootstrap, read_sequences, recall_ndcg, target_ranks  # noqa: E402
from semantic_ids.quality.downstream import coldstart  # noqa: E402
from semantic_ids.quality.downstream.content import content_knn, history_queries  # noqa: E402
from semantic_ids.quality.downstream.metrics import by_group, drop_seen, popularity_buckets  # noqa: E402
from semantic_ids.quality.downstream.retriever import (  # noqa: E402
    BENCHMARK_SETTINGS, GenerativeRetriever, RetrieverConfig, popularity_ranking,
)

BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "out" / "downstream"
TEMPLATES = {
    "beauty": "Categories: {categories}; Title: {title}; Brand: {brand}",
    "movielens": "Title: {title}; Year: {year}; Genres: {genres}",
}
BUILDS = {
    "ours": {},
    "rq-kmeans": {"model": {"method": "rq-kmeans"}},
    "rqvae-latent": {"model": {"first_level": "latent", "latent_dim": 6, "hidden_dims": [512, 256, 128]}, "train": {"epochs": 200}},
}
# builds with the users' sequences fused in (semantic_ids.model.collab), the signal learned from the training
# parts only (holdout_last = 2: no validation or test item); "ours-seq" is the default weight, and
# "rq-kmeans-seq" quantizes the same fused vectors with RQ-KMeans
SEQ_BUILDS = {
    "ours-seq": {},
    "ours-seq-w0.3": {"collab": {"weight": 0.3}},
    "ours-seq-w0.7": {"collab": {"weight": 0.7}},
    "rq-kmeans-seq": {"model": {"method": "rq-kmeans"}},
}
# simulated catalog growth (benchmarks/churn.py): our default build on a seeded 80% of the items, then every
# item gets IDs by a warm-started rebuild (build --previous) or by assign; compare with "ours" (a fresh build)
GROWTH_ARMS = ("ours-warm", "ours-assign")
# the same growth with behaviour (benchmarks/churn_behaviour.py's beauty-grow): ours-seq on the seeded 80% of the items
# and each user's first 80% of interactions with them, then a warm rebuild with every item and interaction; compare
# with "ours-seq" (a fresh build)
# with sequences (benchmarks/churn_behaviour.py's beauty-grow): ... -r2 / -r0: stages.warm.behaviour.REFRESH_FACTOR 2, or 0
# (rotation only: every old item takes its new behaviour vector), against the default's 4
SEQ_GROWTH_ARMS = {"ours-seq-warm": None, "ours-seq-warm-r2": 2.0, "ours-seq-warm-r0": 0.0, "ours-seq-warm-fold": "fold"}
ARMS = ["ours", "ours-seq", *GROWTH_ARMS, *SEQ_GROWTH_ARMS, "ours-seq-w0.3", "ours-seq-w0.7", "rq-kmeans-seq", "rq-kmeans", "rqvae-latent", "random", "letter", "sasrec", "t5", "popularity", "content-knn", "bisecting-rq"]
# the cold-start protocol: arms whose IDs can leave the cold items' interactions out (LETTER's published IDs and the
# growth arms cannot), ours-seq trained without the dense head, and the oracle below
COLD_ARMS = ["ours-seq", "ours", "rq-kmeans-seq", "rq-kmeans", "ours-seq-nohead", "ours-seq-oracle", "sasrec", "popularity",
             "content-knn"]
# cold protocol: ours-seq's IDs built with the cold items' interactions (the retriever still never sees them), so each
# cold item sits where its true behaviour puts it: the ceiling of placing new items, for comparison only
ORACLE = "ours-seq-oracle"
NOHEAD = "-nohead"  # suffix: the base arm's IDs, the retriever without the dense head
RANKING_VARIANTS = ("+prefix", "+text-share3", "+dense", "+dense-share1", "+dense-share3", "+prior", "+prior-share3", "+beam-prior",
                    "+beam-prior-share3", "+nprior-share3", "+share3")  # rankings of one trained model, beside its beam
K = 10  # the cut-off the cold-item rankings fill
# MovieLens-100K has 943 users, about 21 training steps an epoch against Beauty's 88: it gets
# more epochs and a shorter warm-up so that it trains for a comparable number of steps
SMALL_BUDGET = {"movielens": BENCHMARK_SETTINGS["MovieLens-100K"]}  # the library prints how a user's run differs
# the t5 arm's model and budget (semantic_ids.quality.downstream.t5.T5RecipeConfig fields): a size a CPU trains;
# an epoch is a seeded draw of 32,768 of Beauty's 131,413 training pairs (1.3-4 min with validation on 2 busy
# cores); TIGER's own size (T5RecipeConfig.tiger()) takes hours per pass over the pairs here: a GPU's job
T5_ARM = {"num_layers": 2, "num_heads": 4, "d_model": 64, "d_kv": 16, "d_ff": 256, "sample": 32768, "epochs": 16, "patience": 3}
T5_OVERRIDE: dict = {}  # --t5-config
WARM_EPOCHS: int | None = None  # --warm-epochs
ARM_CONFIG: dict[str, dict] = {}  # --arm-config: RetrieverConfig fields over the preset for one arm
METRICS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]
TIGER_BEAUTY = {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384}


def catalog(name: str):
    if name == "beauty":
        if not (BEAUTY / "items.jsonl").exists():
            return None
        return BEAUTY / "items.jsonl", BEAUTY / "sequences.jsonl"
    path = fetch_movielens(ROOT / "data" / "ml-100k")
    return path, path.parent / "sequences.jsonl"


def sequences_path(name: str) -> Path:
    return BEAUTY / "sequences.jsonl" if name == "beauty" else ROOT / "data" / "ml-100k" / "sequences.jsonl"


def with_counter(codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return resolve_counter(codes, ids).codes


def embeddings(name: str, path: Path) -> np.ndarray:
    """The catalog's embeddings under its template, from the cache our builds fill."""
    cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]})
    return embed_texts(load_catalog(path, cfg.catalog).texts, cfg.embedding, show_progress=False)[0]


def bisecting_rq(emb: np.ndarray, seed: int, sizes: tuple[int, ...]) -> np.ndarray:
    """(N, L) codes: level 1 = our bisecting k-means; the deeper levels = greedy residual k-means
    of the residual x - c1 (FAISS), i.e. the default's level 1 with RQ-KMeans' finer levels."""
    from semantic_ids.model.kmeans import bisecting_kmeans, nearest
    from semantic_ids.stages.train import residual_codebooks

    x = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    c = bisecting_kmeans(x, sizes[0], generator=torch.Generator().manual_seed(seed))
    first = nearest(x, c)
    res = x - c[first]
    codes = [first]
    for book in residual_codebooks(res.numpy(), sizes[1:], seed=seed):  # greedy: nearest code, level by level
        book = torch.from_numpy(book)
        idx = nearest(res, book)
        codes.append(idx)
        res = res - book[idx]
    return torch.stack(codes, 1).numpy().astype(np.int64)


def arm_codes(arm: str, name: str, path: Path, ids: np.ndarray, seed: int, *, cold_sequences: Sequences | None = None) -> tuple[np.ndarray, dict]:
    """(N, L) unique codes for an arm, in catalog order, and what building them cost.

    ``cold_sequences``: the cold-start protocol's sequences (cold items removed from the training
    parts), which the ``*-seq`` builds use instead of the sequences file."""
    if arm in BUILDS:
        cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, seed=seed, **BUILDS[arm])
        start = time.perf_counter()
        cat, emb, _ = read_and_embed(path, cfg, show_progress=False)
        sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=cat.ids)
        assert np.array_equal(sid.ids_, ids), "the build's item order should be the catalog's"
        return sid.codes_, {"build_seconds": round(time.perf_counter() - start, 1),
                            "collision_rate": round(float(sid.metrics_.get("collision_rate", float("nan"))), 4)}
    if arm in SEQ_BUILDS:
        over = {**SEQ_BUILDS[arm]}
        over["collab"] = {"holdout_last": 2, **over.get("collab", {})}
        cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, seed=seed, **over)
        start = time.perf_counter()
        cat, emb, _ = read_and_embed(path, cfg, show_progress=False)
        seqs = sequences_path(name) if cold_sequences is None else cold_sequences
        sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=cat.ids, sequences=seqs)
        assert np.array_equal(sid.ids_, ids), "the build's item order should be the catalog's"
        return sid.codes_, {"build_seconds": round(time.perf_counter() - start, 1),
                            "collision_rate": round(float(sid.metrics_["collision_rate"]), 4)}
    if arm == ORACLE:  # the cold items' IDs from their own interactions, which no build of a new item has
        return arm_codes("ours-seq", name, path, ids, seed)
    if arm in SEQ_GROWTH_ARMS:
        return seq_growth_codes(name, path, ids, seed, SEQ_GROWTH_ARMS[arm])
    if arm in GROWTH_ARMS:
        import tempfile

        import pandas as pd

        from semantic_ids.runners.assign import assign_new_items

        cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, seed=seed)
        frame, emb = load_catalog(path, cfg.catalog).frame, embeddings(name, path)
        old = np.sort(np.random.default_rng(seed).permutation(len(ids))[: int(0.8 * len(ids))])
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            old_dir = SemanticIDs(cfg, show_progress=False).fit(emb[old], ids=frame.iloc[old]["item_id"].to_numpy()).save(Path(tmp) / "old")
            if arm == "ours-warm":
                if WARM_EPOCHS is not None:  # --warm-epochs: the rebuild's epochs instead of the default
                    cfg = cfg.replace(train={"warm_epochs": WARM_EPOCHS})
                sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=frame["item_id"].to_numpy(), previous=old_dir)
                got_ids, codes = sid.ids_, sid.codes_
            else:
                assign_new_items(old_dir, catalog=frame, embeddings=emb, show_progress=False)
                sid = SemanticIDs.load(old_dir)
                got_ids, codes = sid.ids_, sid.codes_
        order = pd.Index(got_ids).get_indexer(pd.Index(ids))
        return codes[order], {"build_seconds": round(time.perf_counter() - start, 1),
                              "collision_rate": round(float(sid.metrics_.get("collision_rate", float("nan"))), 4)}
    if arm == "bisecting-rq":  # experiment: our level 1, then FAISS's residual k-means on x - c1 for levels 2-3
        return with_counter(bisecting_rq(embeddings(name, path), seed, auto_codebook_sizes(len(ids))), ids), {}
    if arm == "random":  # the level sizes our default build uses for this catalog
        rng = np.random.default_rng(seed)
        return with_counter(np.column_stack([rng.integers(0, k, len(ids)) for k in auto_codebook_sizes(len(ids))]), ids), {}
    if arm == "letter":
        rows = {}
        for line in (BEAUTY / "peer_letter_semantic_ids.jsonl").read_text().splitlines():
            r = json.loads(line)
            rows[r["item_id"]] = r["codes"]
        codes = np.array([rows[i] for i in ids], dtype=np.int64)
        if len(np.unique(codes, axis=0)) < len(codes):
            codes = with_counter(codes, ids)
        return codes, {}
    if arm == "sasrec":
        return np.arange(len(ids), dtype=np.int64)[:, None], {}
    raise ValueError(arm)


def growth_split(items: list[np.ndarray], n: int, seed: int, share: float = 0.8) -> tuple[np.ndarray, list[np.ndarray]]:
    """Catalog growth with behaviour: a seeded ``share`` of the ``n`` item rows (sorted) are the old
    items, and each sequence (rows) cut to its first ``share`` of interactions and to the old items."""
    old = np.sort(np.random.default_rng(seed).permutation(n)[: int(share * n)])
    cut = [s[: int(np.ceil(share * len(s)))] for s in items]
    return old, [s[np.isin(s, old)] for s in cut]


def seq_growth_codes(name: str, path: Path, ids: np.ndarray, seed: int, refresh: float | None = None) -> tuple[np.ndarray, dict]:
    """ours-seq-warm's codes (catalog order): ours-seq built on a seeded 80% of the items, each user's
    sequence cut to its first 80% and to those items, then ``build --previous`` with all of both
    (``refresh``: the warm start's REFRESH_FACTOR instead of the default)."""
    import tempfile

    from semantic_ids.stages.warm import behaviour as warm_behaviour, start as warm_start

    over = {"collab": {"holdout_last": 2}}
    cfg = BuildConfig().replace(catalog={"template": TEMPLATES[name]}, seed=seed, **over)
    start = time.perf_counter()
    cat, emb, _ = read_and_embed(path, cfg, show_progress=False)
    seqs = read_sequences(sequences_path(name), cat.ids, min_length=1)
    old, cut = growth_split(seqs.items, len(ids), seed)
    to_old = np.full(len(ids), -1)
    to_old[old] = np.arange(len(old))
    old_seqs = Sequences(users=[u for u, s in zip(seqs.users, cut) if len(s)], items=[to_old[s] for s in cut if len(s)])
    with tempfile.TemporaryDirectory() as tmp:
        old_dir = SemanticIDs(cfg, show_progress=False).fit(emb[old], ids=np.asarray(cat.ids)[old], sequences=old_seqs).save(Path(tmp) / "old")
        default, rotate = warm_behaviour.REFRESH_FACTOR, warm_start.rotate_to_previous
        if refresh == "fold":
            warm_start.rotate_to_previous = _fold_in(seqs, len(ids), cfg.collab, rotate)
        else:
            warm_behaviour.REFRESH_FACTOR = default if refresh is None else refresh
        try:
            sid = SemanticIDs(cfg, show_progress=False).fit(emb, ids=cat.ids, sequences=seqs, previous=old_dir)
        finally:
            warm_behaviour.REFRESH_FACTOR, warm_start.rotate_to_previous = default, rotate
    assert np.array_equal(sid.ids_, ids), "the build's item order should be the catalog's"
    return sid.codes_, {"build_seconds": round(time.perf_counter() - start, 1),
                        "collision_rate": round(float(sid.metrics_["collision_rate"]), 4),
                        "kept_full_id": sid.metrics_["warm_start"]["kept_full_id"]}


def _fold_in(seqs, n: int, collab, rotate):
    """Experiment: rotate_to_previous, then every item that did not keep its old vector is folded
    into the old space: the unit PPMI-weighted sum of its kept neighbours' old vectors."""
    from semantic_ids.model.collab import Fusion, _unit, count_sequences, ppmi
    from semantic_ids.model.keys import rows_of

    cut = collab.holdout_last
    counts = count_sequences([s[:-cut] if cut else s for s in seqs.items], n, collab.window)

    def fold(fusion, previous):
        out, facts = rotate(fusion, previous)
        row = rows_of(fusion.ids, previous.ids, missing="-1")
        kept = np.zeros(len(row), bool)
        common = np.flatnonzero(row >= 0)
        kept[common] = np.all(out.vectors[common] == previous.vectors[row[common]], axis=1)
        a = ppmi(counts.to_csr())
        folded = a[:, np.flatnonzero(kept)] @ out.vectors[kept].astype(np.float64)
        has = np.asarray(a[:, np.flatnonzero(kept)].sum(1)).ravel() > 0
        redo = (~kept) & has
        w = fusion.counts.astype(np.float64)
        m = (w / (w + collab.shrink))[redo, None]
        vectors = out.vectors.copy()
        vectors[redo] = _unit(m * _unit(folded[redo]) + (1 - m) * out.vectors[redo].astype(np.float64))
        facts["folded_in"] = int(redo.sum())
        return Fusion(out.config, out.ids, vectors.astype(np.float32), out.counts, out.ridge), facts

    return fold


@dataclass
class Context:
    """What every arm of one (catalog, seed) run sees."""

    name: str
    path: Path
    ids: np.ndarray
    seqs: Sequences
    split: object  # semantic_ids.quality.downstream.Split (the cold split under --protocol cold)
    seed: int
    cfg: RetrieverConfig
    cold: np.ndarray | None = None  # cold item rows (--protocol cold)
    dense_weight: float = 0.0
    exclude_history: bool = False  # --exclude-history: every ranking drops the user's history items

    @functools.cached_property
    def emb(self) -> np.ndarray:
        return embeddings(self.name, self.path)

    @functools.cached_property
    def trained_items(self) -> np.ndarray:
        """Sorted rows of the items with training interactions (under --protocol cold: no cold item)."""
        return np.unique(np.concatenate(self.split.train))

    def masked(self, ranked: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """``ranked`` without each user's history items under --exclude-history, else as it is."""
        return drop_seen(ranked, histories) if self.exclude_history else ranked


def rank_popularity(ctx: Context) -> tuple[np.ndarray, dict]:
    # long enough that dropping a history's items (--exclude-history) still leaves a full list
    top = popularity_ranking(ctx.split, len(ctx.ids), ctx.cfg.beam + (ctx.cfg.max_history if ctx.exclude_history else 0))
    return np.broadcast_to(top, (len(ctx.split.test_target), len(top))), {"invalid_id_rate": 0.0}


def rank_content_knn(ctx: Context) -> tuple[np.ndarray, dict]:
    start = time.perf_counter()
    ranked = content_knn(ctx.emb, ctx.split.test_history, ctx.cfg.beam, last=3)
    return ranked, {"test_seconds": round(time.perf_counter() - start, 1), "invalid_id_rate": 0.0}


def trained_facts(model, codes: np.ndarray, ranked: np.ndarray, start: float) -> dict:
    """A trained model's row of facts: its IDs, size, training, and ranking time since ``start``."""
    return {
        "codes_sha256": hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int64).tobytes()).hexdigest()[:16],
        "levels": int(codes.shape[1]),
        "parameters": model.model_.num_parameters(),
        "best_epoch": model.best_epoch_,
        "epochs_run": len(model.history_),
        "train_seconds": round(model.train_seconds_, 1),
        "test_seconds": round(time.perf_counter() - start, 1),
        "invalid_id_rate": float((ranked < 0).mean()),
        "history": model.history_,
    }


def rank_t5(ctx: Context) -> tuple[np.ndarray, dict]:
    """TIGER's encoder-decoder from ``transformers`` (pipelines/tiger_t5.py's model) over ``ours``' IDs."""
    from semantic_ids.quality.downstream.t5 import T5RecipeConfig, T5Recommender

    codes, info = arm_codes("ours", ctx.name, ctx.path, ctx.ids, ctx.seed)
    c = ctx.cfg
    t5 = T5RecipeConfig(**{**T5_ARM, **T5_OVERRIDE, "max_history": c.max_history, "beam": c.beam,
                           "valid_users": c.valid_users, "device": c.device, "seed": ctx.seed})
    info["t5"] = t5.to_dict()
    model = T5Recommender(codes, None, t5, show_progress=False).fit(ctx.split)
    start = time.perf_counter()
    ranked = model.rank(ctx.split.test_history)
    info.update(trained_facts(model, codes, ranked, start))
    return ranked, info


# arms that are not the decoder-only retriever over codes
RANKERS = {"popularity": rank_popularity, "content-knn": rank_content_knn, "t5": rank_t5}


def run_arm(arm: str, ctx: Context) -> tuple[dict[str, np.ndarray], dict]:
    """Per-user test ranks (-1 = not in the top 20) of the arm and of its cold-item variants, and a row of facts."""
    if arm in RANKERS:
        ranked, info = RANKERS[arm](ctx)
        ranked = ctx.masked(ranked, ctx.split.test_history)[:, :ctx.cfg.beam]
        out = {arm: target_ranks(ranked, ctx.split.test_target)}
        if arm == "content-knn" and ctx.cold is not None:  # the same use of "which items are new" as +dense-share3
            hist = ctx.split.test_history
            q = history_queries(ctx.emb, hist, 3)
            out[arm + "+share3"] = target_ranks(coldstart.dense_share(ranked, q, ctx.emb, ctx.cold, K, 3, exclude=hist), ctx.split.test_target)
        return out, info
    base = arm.removesuffix(NOHEAD)
    cold_seqs = None
    if ctx.cold is not None:
        cold_seqs = Sequences(users=ctx.seqs.users, items=coldstart.without_items(ctx.seqs.items, ctx.cold))
    codes, info = arm_codes(base, ctx.name, ctx.path, ctx.ids, ctx.seed, cold_sequences=cold_seqs)
    cfg = RetrieverConfig(**run_config(arm, ctx.cfg, ctx.seed, ctx.cold, ctx.dense_weight))
    dense = cfg.dense_weight
    # an item-ID model has no embedding for an item it never saw trained: it may return the trained items only
    cands = ctx.trained_items if (ctx.cold is not None and base == "sasrec") else None
    model = GenerativeRetriever(codes, None, cfg, show_progress=False, item_embeddings=ctx.emb if dense else None,
                                candidates=cands).fit(ctx.split)
    start = time.perf_counter()
    hist, target = ctx.split.test_history, ctx.split.test_target
    raw = model.rank(hist)
    ranked = ctx.masked(raw, hist)  # before every variant, so the ones built on the beam see it masked too
    out = {arm: target_ranks(ranked, target)}
    q = history_queries(ctx.emb, hist, 3)  # content-kNN's query (the last 3 items' text)
    out.update(prior_variants(arm, model, codes, ctx, info, ranked, q))
    if ctx.cold is not None and base != "sasrec":
        out[arm + "+prefix"] = target_ranks(coldstart.prefix_share(ranked, codes, ctx.cold, K, eps=0.3), target)
        # the beam for 7 slots, the 3 cold items nearest the content-kNN query for the rest
        out[arm + "+text-share3"] = target_ranks(coldstart.dense_share(ranked, q, ctx.emb, ctx.cold, K, 3, exclude=hist), target)
        if dense:
            pred = model.predict_embedding(hist)
            out[arm + "+dense"] = target_ranks(coldstart.dense_rerank(ranked, pred, ctx.emb, ctx.cold, K, exclude=hist), target)
            for m in (1, 3):
                out[f"{arm}+dense-share{m}"] = target_ranks(
                    coldstart.dense_share(ranked, pred, ctx.emb, ctx.cold, K, m, exclude=hist), target)
    info.update(trained_facts(model, codes, raw, start))  # the invalid-ID rate is the beam's, not the dropped slots
    return out, info


def prior_variants(arm: str, model, codes: np.ndarray, ctx: Context, info: dict, ranked: np.ndarray,
                   q: np.ndarray) -> dict[str, np.ndarray]:
    """Per-user test ranks of the semantic-ID prior (coldstart.prior_rank): ``+prior`` ranks every item by its text's
    cosine to content-kNN's query plus beta times the model's log-probability of its first code, beta chosen on the
    validation users; under the cold protocol ``+prior-share3`` keeps that ranking's first 7 and gives 3 slots to the
    cold items it ranks first. ``+beam-prior`` keeps the beam's (``ranked``'s) first m items, then ``+prior``'s, m
    chosen on the validation users too (coldstart.choose_beam_slots), and ``+beam-prior-share3`` gives its last 3
    slots to the cold items. For ``sasrec`` (one code per item) ``+prior`` is SASRec's log-probability fused with
    content the same way, over the items it may return (never a cold one). The chosen beta, m and their validation
    curves go into ``info``."""
    split, emb, cands = ctx.split, ctx.emb, model.candidates
    vu = np.arange(len(split.valid_target)) if split.valid_users is None else np.asarray(split.valid_users)
    vhist = [split.valid_history[i] for i in vu]
    vq, vlp = history_queries(emb, vhist, 3), model.first_code_logprobs(vhist)
    beta, curve = coldstart.choose_prior_weight(vq, emb, vlp, codes[:, 0], split.valid_target[vu], exclude=vhist, candidates=cands)
    info["prior_weight"], info["prior_valid_recall@10"] = beta, curve
    hist, target = split.test_history, split.test_target
    lp = model.first_code_logprobs(hist)  # q: the test users' content query, from run_arm
    every = coldstart.prior_rank(q, emb, lp, codes[:, 0], ctx.cfg.beam, beta, exclude=hist, candidates=cands)
    out = {arm + "+prior": target_ranks(every, target)}
    if cands is not None:  # an item-ID model: its beam is its probabilities, already in +prior
        return out
    vbeam = ctx.masked(model.rank(vhist), vhist)
    vevery = coldstart.prior_rank(vq, emb, vlp, codes[:, 0], ctx.cfg.beam, beta, exclude=vhist)
    m, slots = coldstart.choose_beam_slots(vbeam, vevery, split.valid_target[vu], k=K)
    info["beam_slots"], info["beam_slots_valid_recall@10"] = m, slots
    mixed = coldstart.share_slots(ranked, every, K, K - m)
    out[arm + "+beam-prior"] = target_ranks(mixed, target)
    if ctx.cold is not None:
        cold_top = coldstart.prior_rank(q, emb, lp, codes[:, 0], 3, beta, exclude=hist, candidates=ctx.cold)
        out[arm + "+prior-share3"] = target_ranks(coldstart.share_slots(every, cold_top, K, 3), target)
        out[arm + "+beam-prior-share3"] = target_ranks(coldstart.share_slots(mixed, cold_top, K, 3), target)
        # the cold slots with each cold item's first code voted by its text neighbours (coldstart.neighbour_codes),
        # k, tau and beta rehearsed on the validation users with used items playing the new ones
        pool = ctx.trained_items
        (nk, tau, nbeta), rehearsal = coldstart.choose_neighbour_prior(vq, emb, vlp, codes[:, 0], pool, split.valid_target[vu],
                                                                       exclude=vhist, slots=3, seed=ctx.seed)
        info["neighbour_prior"] = {"k": nk, "tau": tau, "beta": nbeta, "rehearsal_recall@3": round(rehearsal[(nk, tau, nbeta)], 4)}
        votes = coldstart.neighbour_codes(emb, codes[:, 0], lp.shape[1], ctx.cold, pool, nk, tau)
        weights = coldstart.code_weights(codes[:, 0], lp.shape[1], ctx.cold, votes)
        cold_top = coldstart.prior_rank(q, emb, lp, weights, 3, nbeta, exclude=hist, candidates=ctx.cold)
        out[arm + "+nprior-share3"] = target_ranks(coldstart.share_slots(every, cold_top, K, 3), target)
    return out


REFERENCES = ("ours", "ours-seq")  # each arm's paired difference is reported against both
COLD_REFERENCES = ("content-knn", "ours-seq+nprior-share3")  # the plain baseline, and our recommended cold-start ranking
CONSTRUCTION_ZERO = ("sasrec", "popularity")  # never return a cold item: Recall 0 on cold targets by construction
PAIRED = ("recall@10", "ndcg@10")  # metrics with a paired interval on the warm and cold subsets


def arms_with_variants(arms: list[str]) -> list[str]:
    return [a + v for a in arms for v in ("", *RANKING_VARIANTS)]


def summarize(name: str, arms: list[str], seeds: list[int], split, n_boot: int, work: Path = WORK,
              refs=REFERENCES, cold: np.ndarray | None = None) -> list[dict]:
    """One row per arm (and cold-item ranking variant): mean over its seeds, per-seed means, Recall@10 by
    the target's popularity bucket, and the paired interval of arm - ref for each reference arm, on the
    seeds both have (each side's per-user metric averaged over those seeds first). With ``cold``: the
    same for the warm and the cold targets too."""
    targets = split.test_target
    subsets = coldstart.split_masks(targets, cold) if cold is not None else {"all": np.ones(len(targets), bool)}
    counts = np.bincount(np.concatenate(split.train), minlength=int(targets.max()) + 1)
    bucket = popularity_buckets(counts, 5)[0][targets]
    tail_users = subsets.get("warm", subsets["all"])  # cold targets have no training interactions: their own column
    per_arm = {}
    for arm in arms_with_variants(arms):
        runs = {s: work / f"{name}-{arm}-seed{s}.npy" for s in seeds}
        runs = {s: recall_ndcg(np.load(f, allow_pickle=False)) for s, f in runs.items() if f.exists()}
        if runs:
            per_arm[arm] = runs
    rows = []
    for arm, runs in per_arm.items():
        row = {"catalog": name, "arm": arm, "seeds": sorted(runs), "users": len(targets)}
        for m in METRICS:
            row[m] = round(float(np.mean([r[m].mean() for r in runs.values()])), 5)
            row[f"{m}_per_seed"] = [round(float(runs[s][m].mean()), 5) for s in sorted(runs)]
        for sub, mask in subsets.items():
            if sub != "all":
                row[f"users_{sub}"] = int(mask.sum())
                for m in PAIRED:
                    row[f"{m}_{sub}"] = round(float(np.mean([r[m][mask].mean() for r in runs.values()])), 5)
                    row[f"{m}_{sub}_per_seed"] = [round(float(runs[s][m][mask].mean()), 5) for s in sorted(runs)]
        if cold is not None and arm in CONSTRUCTION_ZERO and any(v != 0 for v in row["recall@10_cold_per_seed"]):
            sys.exit(f"{arm} reached cold targets ({row['recall@10_cold_per_seed']}): it should never return an item it "
                     "did not see trained")
        user_r10 = np.mean([r["recall@10"] for r in runs.values()], axis=0)
        mean, n = by_group(user_r10[tail_users], bucket[tail_users], 5)
        row["recall@10_by_popularity"] = [round(float(v), 5) for v in mean]
        row["users_by_popularity"] = n.tolist()
        for ref in refs:
            base = per_arm.get(ref, {})
            common = sorted(set(runs) & set(base))
            if arm == ref or not common:
                continue
            row[f"paired_seeds_{ref}"] = common
            for sub, mask in subsets.items():
                for m in (METRICS if sub == "all" else PAIRED):
                    arm_user = np.mean([runs[s][m][mask] for s in common], axis=0)
                    ref_user = np.mean([base[s][m][mask] for s in common], axis=0)
                    d, lo, hi = paired_bootstrap(arm_user, ref_user, n_boot=n_boot, seed=0)
                    row[f"{m}{'' if sub == 'all' else '_' + sub}_minus_{ref}"] = [round(d, 5), round(lo, 5), round(hi, 5)]
            # the same by popularity bucket (warm targets): where in the tail an arm gains or loses against ref
            arm_user = np.mean([runs[s]["recall@10"] for s in common], axis=0)
            ref_user = np.mean([base[s]["recall@10"] for s in common], axis=0)
            row[f"recall@10_by_popularity_minus_{ref}"] = [
                [round(v, 5) for v in paired_bootstrap(arm_user[m], ref_user[m], n_boot=n_boot, seed=0)] if m.any() else None
                for m in (tail_users & (bucket == b) for b in range(5))]
        rows.append(row)
    return rows


def _ci(r: dict, key: str) -> str:
    v = r.get(key)
    return "" if v is None else f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]"


def markdown(rows: list[dict], facts: list[dict], env: dict) -> str:
    refs = env.get("references", list(REFERENCES))
    cold = env.get("cold") is not None
    lines = [f"Protocol: {env['protocol']}", "", f"Retriever: {env['retriever']}", ""]
    if cold:
        head = ["catalog", "arm", "seeds", "R@10 warm", "R@10 cold", "R@10 all", "N@10 warm", "N@10 cold", "N@10 all"]
        head += [f"R@10 {sub} − {ref} [95% CI]" for ref in refs for sub in ("warm", "cold", "all")]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["catalog"], r["arm"], ",".join(map(str, r["seeds"]))]
            cells += [f"{r[k]:.4f}" for k in ("recall@10_warm", "recall@10_cold", "recall@10", "ndcg@10_warm", "ndcg@10_cold", "ndcg@10")]
            cells += [_ci(r, f"recall@10{'' if sub == 'all' else '_' + sub}_minus_{ref}") for ref in refs for sub in ("warm", "cold", "all")]
            lines.append("| " + " | ".join(cells) + " |")
    else:
        head = ["catalog", "arm", "seeds", "R@5", "N@5", "R@10", "N@10"] + [f"{m} − {ref} [95% CI]" for ref in refs for m in ("R@10", "N@10")]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["catalog"], r["arm"], ",".join(map(str, r["seeds"]))] + [f"{r[m]:.4f}" for m in METRICS]
            cells += [_ci(r, f"{m}_minus_{ref}") for ref in refs for m in ("recall@10", "ndcg@10")]
            lines.append("| " + " | ".join(cells) + " |")
        if any(r["catalog"] == "beauty" for r in rows):
            t = TIGER_BEAUTY
            lines.append(f"| beauty | TIGER (published; larger model, not run here) | | {t['recall@5']:.4f} | {t['ndcg@5']:.4f} | "
                         f"{t['recall@10']:.4f} | {t['ndcg@10']:.4f} |" + " |" * (2 * len(refs)))
    lines += ["", "Recall@10 by the target's popularity bucket (quintiles of the training interactions; 1 = the long tail"
              + ("; warm targets only" if cold else "") + "):", "",
              "| catalog | arm | " + " | ".join(f"bucket {b + 1}" for b in range(5)) + " |", "|---|---|" + "---|" * 5]
    for r in rows:
        lines.append(f"| {r['catalog']} | {r['arm']} | " + " | ".join(f"{v:.4f}" for v in r["recall@10_by_popularity"]) + " |")
    lines += ["", "| catalog | arm | seed | levels | params | best epoch / run | train s | test s | invalid-ID rate | ID build s | collisions |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in facts:
        lines.append(f"| {f['catalog']} | {f['arm']} | {f['seed']} | {f.get('levels', '')} | {f.get('parameters', '')} | "
                     f"{f.get('best_epoch', '')} / {f.get('epochs_run', '')} | {f.get('train_seconds', '')} | {f.get('test_seconds', '')} | "
                     f"{f.get('invalid_id_rate', '')} | {f.get('build_seconds', '')} | {f.get('collision_rate', '')} |")
    return "\n".join(lines) + "\n"


def run_config(arm: str, cfg: RetrieverConfig, seed: int, cold, dense_weight: float) -> dict:
    """The retriever config an arm trains with (what --resume checks)."""
    dense = dense_weight if (cold is not None and arm.removesuffix(NOHEAD) != "sasrec" and not arm.endswith(NOHEAD)) else 0.0
    return {**cfg.to_dict(), **ARM_CONFIG.get(arm, {}), "seed": seed, "dense_weight": dense}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalogs", nargs="+", default=["beauty", "movielens"])
    ap.add_argument("--arms", nargs="+", choices=ARMS + [a for a in COLD_ARMS if a not in ARMS],
                    help="default: every arm of the protocol")
    ap.add_argument("--protocol", choices=["standard", "cold"], default="standard",
                    help="cold: a seeded share of the items is cold (never trained on, IDs from text and predicted behaviour)")
    ap.add_argument("--cold-share", type=float, default=0.1)
    ap.add_argument("--cold-seed", type=int, default=0, help="which items are cold (the same for every training seed)")
    ap.add_argument("--dense-weight", type=float, default=1.0, help="--protocol cold: the dense head's loss weight for the ID arms")
    ap.add_argument("--refs", nargs="+", help="arms every other arm is compared with (paired); default: ours ours-seq, "
                    "or for --protocol cold content-knn ours-seq")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--preset", choices=["small", "full", "tiger"], default="small",
                    help="small: the quick CPU check (RetrieverConfig()); full: trained to convergence (RetrieverConfig.full()); "
                    "tiger: TIGER-sized (RetrieverConfig.tiger(), for a GPU)")
    ap.add_argument("--work", help="where per-run ranks are kept (default out/downstream for the standard protocol and the "
                    "small preset, else out/downstream-<protocol>-<preset>)")
    ap.add_argument("--device", default="cpu", help="torch device for the retriever, e.g. cuda")
    ap.add_argument("--config", default="{}", help="JSON of RetrieverConfig fields over the preset, e.g. '{\"epochs\": 10}'")
    ap.add_argument("--arm-config", default="{}", help="JSON {arm: {RetrieverConfig fields}} over the preset for single "
                    "arms, e.g. the ID arms' own dropout and lr at --preset full (recorded in each run's facts)")
    ap.add_argument("--t5-config", default="{}", help="JSON of T5RecipeConfig fields over T5_ARM for the t5 arm")
    ap.add_argument("--resume", action="store_true", help="skip (catalog, arm, seed) runs whose ranks are already in out/downstream")
    ap.add_argument("--summarize-only", action="store_true", help="train nothing: tabulate the runs in out/downstream")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); two 1-thread processes "
                    "over different seeds use 2 cores better than one 2-thread process for a model this small")
    ap.add_argument("--warm-epochs", type=int, default=None, help="the ours-warm arm's rebuild epochs (default: the config's)")
    ap.add_argument("--exclude-history", action="store_true",
                    help="drop the items of a user's history from every arm's ranking before the top k (as RecBole's full "
                    "sort does; on Beauty no test target is a history item)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--out", default=str(RESULTS / "downstream"), help="results path without extension")
    args = ap.parse_args()
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.WARNING)
    logging.getLogger("semantic_ids.quality.downstream").setLevel(logging.INFO)  # one line per epoch
    global WARM_EPOCHS
    WARM_EPOCHS = args.warm_epochs
    fields = {"device": args.device, **json.loads(args.config)}
    T5_OVERRIDE.update(json.loads(args.t5_config))
    ARM_CONFIG.update(json.loads(args.arm_config))
    if args.threads:
        torch.set_num_threads(args.threads)
    default_work = WORK if (args.protocol, args.preset) == ("standard", "small") else WORK.parent / f"downstream-{args.protocol}-{args.preset}"
    work = Path(args.work or default_work)
    work.mkdir(parents=True, exist_ok=True)
    all_arms = args.arms or (COLD_ARMS if args.protocol == "cold" else ARMS)
    if ORACLE in all_arms and args.protocol != "cold":
        ap.error(f"{ORACLE} is a cold-protocol arm (on the standard split it is ours-seq)")
    refs = tuple(args.refs or (COLD_REFERENCES if args.protocol == "cold" else REFERENCES))
    rows, cfgs = [], {}
    for name in args.catalogs:
        found = catalog(name)
        if found is None:
            print(f"skipping {name}: ../shared/data/amazon_beauty not found", file=sys.stderr)
            continue
        path, seq_path = found
        # the small preset's budget per catalog (the same for every arm); --config fields override it
        cfg = RetrieverConfig.preset(args.preset, **{**(SMALL_BUDGET.get(name, {}) if args.preset == "small" else {}), **fields})
        cfgs[name] = cfg.to_dict()
        cat = load_catalog(path, BuildConfig().replace(catalog={"template": TEMPLATES[name]}).catalog)
        ids = cat.ids
        seqs = read_sequences(seq_path, ids)
        split = leave_one_out(seqs, cfg.max_history)
        cold = None
        if args.protocol == "cold":
            cold = coldstart.cold_items(len(ids), args.cold_share, args.cold_seed)
            split = coldstart.cold_split(split, cold)
        arms = [a for a in all_arms if not (a == "letter" and name != "beauty")]
        for seed in args.seeds:  # seed-major, so arms share the machine's load alike
            for arm in arms:
                out = work / f"{name}-{arm}-seed{seed}.npy"
                if args.summarize_only or (args.resume and out.exists()):
                    if out.exists():
                        done = json.loads(out.with_suffix(".json").read_text())
                        ran = done.get("retriever")
                        want = run_config(arm, cfg, seed, cold, args.dense_weight)
                        masked = done.get("exclude_history", False)
                        if masked != args.exclude_history:
                            sys.exit(f"{out} was ranked with exclude_history={masked}; pass the same --exclude-history")
                        if ran is None or {**want, **ran} != want:  # a field added since the run must be at its default
                            sys.exit(f"{out} was trained with another retriever config ({ran}); "
                                     "move out/downstream aside or pass the same --config")
                    continue
                start = time.perf_counter()
                ctx = Context(name, path, ids, seqs, split, seed, cfg, cold, args.dense_weight, args.exclude_history)
                ranks, info = run_arm(arm, ctx)
                fact = {"catalog": name, "arm": arm, "seed": seed, **info, "retriever": run_config(arm, cfg, seed, cold, args.dense_weight),
                        "variants": sorted(ranks), "exclude_history": args.exclude_history,
                        "wall_seconds": round(time.perf_counter() - start, 1),
                        "threads": torch.get_num_threads(), "load_1m": round(os.getloadavg()[0], 2)}
                out.with_suffix(".json").write_text(json.dumps(fact) + "\n")
                for variant, r in ranks.items():
                    if variant != arm:
                        np.save(work / f"{name}-{variant}-seed{seed}.npy", r)
                np.save(out, ranks[arm])  # last: its presence marks the run done
                for variant, r in ranks.items():
                    m = recall_ndcg(r)
                    print(json.dumps({"catalog": name, "arm": variant, "seed": seed, **{k: round(float(m[k].mean()), 4) for k in METRICS},
                                      **({} if cold is None else {"recall@10_cold": round(float(m["recall@10"][np.isin(split.test_target, cold)].mean()), 4)}),
                                      **{k: v for k, v in info.items() if k != "history"}}), flush=True)
        rows += summarize(name, arms, args.seeds, split, args.n_boot, work, refs, cold)
    env = {
        "protocol": ("" if args.protocol == "standard" else
                     f"cold start: {args.cold_share:.0%} of the items (seed {args.cold_seed}) never trained on nor in the IDs' "
                     "sequences; warm / cold / all by the test target; ")
                    + "leave-one-out (last item test, second-to-last validation, rest training); histories of at most "
                    f"{cfg.max_history} items; all test users; early stopping on validation Recall@10 "
                    f"({cfg.valid_users or 'all'} seeded users, patience {cfg.patience}); trie-constrained beam {cfg.beam}; "
                    + ("the user's history items dropped from every test ranking before the top k (--exclude-history); "
                       if args.exclude_history else "")
                    + f"per-user metrics averaged over seeds, paired bootstrap over users ({args.n_boot} resamples) for arm − {', '.join(refs)}; "
                    "the interval covers the sampling of users, not training-seed variance (see the per-seed values)",
        "retriever": cfgs,
        **({"arm_config": ARM_CONFIG} if ARM_CONFIG else {}),  # arms trained with other fields than the preset's
        **({"t5": {**T5_ARM, **T5_OVERRIDE}} if "t5" in all_arms else {}),  # the t5 arm's own size and budget
        "preset": args.preset,
        "references": list(refs),
        "cold": None if args.protocol == "standard" else {"share": args.cold_share, "seed": args.cold_seed,
                                                          "dense_weight": args.dense_weight, "variants": list(RANKING_VARIANTS)},
        "seeds": args.seeds,
        "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": f"{os.cpu_count()} CPUs",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    facts_out = [json.loads(f.read_text()) for f in sorted(work.glob("*-seed*.json"))]
    facts_out = [{k: v for k, v in f.items() if k != "retriever"} for f in facts_out
                 if f["catalog"] in args.catalogs and f["arm"] in all_arms and f["seed"] in args.seeds]
    out.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows, "runs": facts_out}, indent=1) + "\n")
    md = markdown(rows, facts_out, env)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
