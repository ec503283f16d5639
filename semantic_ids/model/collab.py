"""Behaviour in the IDs: collaborative item vectors from user sequences, fused with text.

Items bought or watched together should share ID prefixes. A build with user
sequences learns one vector per item from co-occurrence and concatenates it to
the item's text embedding before the RQ-VAE, so every level sees both.

1. **Co-occurrence.** Within each user's sequence, items at most ``window``
   positions apart co-occur (weight 1 / distance). The last ``holdout_last``
   items of every sequence are left out first: with 2, IDs built for a
   leave-one-out evaluation never see a validation or test item.
2. **Collaborative vectors.** Positive PMI of the co-occurrence matrix (with
   context counts raised to 0.75, Levy & Goldberg 2015), factorised by a seeded
   randomized SVD; an item's vector is its row of ``U * sqrt(S)``.
3. **Items without interactions** (cold start, and any item ``assign`` adds
   later) get a vector predicted from their text by ridge regression fitted on
   the items that have interactions, so they sit in the same code space. An item
   with few interactions is shrunk towards its text prediction: with ``n`` co-
   occurrences its vector is ``(n * observed + shrink * predicted) / (n + shrink)``
   of the two unit vectors.
4. **Fusion.** ``[sqrt(1 - w) * text / |text|, sqrt(w) * collab / |collab|]``
   with ``w = weight``: the share of each item's squared norm that comes from
   behaviour.

Everything is float64 numpy and seeded, so a rerun gives identical vectors, and
row-wise work runs ``CHUNK`` rows at a time with results that do not depend on it. The
fitted :class:`Fusion` (item vectors, the ridge map) is saved in the export as
``collab.safetensors`` and loads without pickle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..config import CollabConfig
from .cooccur import CountBlocks, cooccurrence, count_sequences  # noqa: F401 (cooccurrence: re-exported)
from .keys import rows_of
from .svd import PPMI, randomized_svd
from ..errors import EmbeddingError, SequenceError

log = logging.getLogger(__name__)

RIDGE_SAMPLE = 100_000  # items with interactions the text -> behaviour map is fitted on (a seeded sample beyond)
CHUNK = 16384  # rows per block when predicting and fusing (each block's float64 work arrays: about 100 MB)


def ppmi(counts, alpha: float = 0.75):
    """Positive PMI (N, N) CSR of a symmetric co-occurrence matrix, context counts smoothed by ``alpha``."""
    return PPMI([(0, counts.tocsr())], np.asarray(counts.sum(1), dtype=np.float64).ravel(), alpha).to_csr()


def used_interactions(sequences: list[np.ndarray], holdout_last: int = 0) -> dict[str, int]:
    """What of ``sequences`` the collaborative vectors learn from: users, the interactions
    left once each sequence's last ``holdout_last`` items are held out, and those held out."""
    total = int(sum(len(s) for s in sequences))
    used = int(sum(max(len(s) - holdout_last, 0) for s in sequences)) if holdout_last else total
    return {"users": len(sequences), "interactions": used, "interactions_held_out": total - used}


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1)


def _unit_in_place(x: np.ndarray) -> np.ndarray:
    """``_unit(x)`` bit for bit, written into ``x`` ``CHUNK`` rows at a time (no (n, d) temporaries)."""
    for lo in range(0, len(x), CHUNK):
        block = x[lo: lo + CHUNK]
        norm = np.linalg.norm(block, axis=1, keepdims=True)
        block /= np.where(norm > 0, norm, 1)
    return x


@dataclass(frozen=True)
class Fusion:
    """A fitted fusion: every built item's collaborative vector and the text -> behaviour map.

    Attributes
    ----------
    config : CollabConfig
    ids : (N,) the items built, in export order.
    vectors : (N, dim) float32 unit collaborative vectors (observed, shrunk, or predicted).
    counts : (N,) float32 summed co-occurrence weight per item (0 = no interactions).
    ridge : (D_text + 1, dim) float64: text embedding (and a bias) -> collaborative vector.
    """

    config: CollabConfig
    ids: np.ndarray
    vectors: np.ndarray
    counts: np.ndarray
    ridge: np.ndarray

    @property
    def text_dim(self) -> int:
        return int(self.ridge.shape[0] - 1)

    @property
    def dim(self) -> int:
        return int(self.text_dim + self.vectors.shape[1])

    def predict(self, text: np.ndarray) -> np.ndarray:
        """Unit collaborative vectors predicted from text embeddings (for items without interactions)."""
        return _unit(_rows_matmul(_with_bias(text), self.ridge))

    def fuse(self, text: np.ndarray, ids: np.ndarray | None = None, *, rows: np.ndarray | None = None) -> np.ndarray:
        """The RQ-VAE's input (n, D_text + dim) float32 for text embeddings, ``CHUNK`` rows at a
        time; ``ids`` known to the fusion use their own vectors, all others (or ``ids=None``)
        the text prediction. ``rows`` (n,): instead of ``ids``, each row's index into
        ``vectors`` (-1: predict), for a caller that knows them (the streaming build)."""
        text = np.asarray(text)
        if text.ndim != 2 or text.shape[1] != self.text_dim:
            raise EmbeddingError(f"text embeddings should have shape (n, {self.text_dim}), got {text.shape}")
        if rows is None:
            rows = rows_of(ids, self.ids, missing="-1") if ids is not None and len(ids) else np.full(len(text), -1)
        out = np.empty((len(text), self.dim), dtype=np.float32)
        for lo in range(0, len(text), CHUNK):
            t, r = text[lo: lo + CHUNK], rows[lo: lo + CHUNK]
            collab = self.predict(t)
            known = r >= 0
            collab[known] = self.vectors[r[known]]
            out[lo: lo + len(t)] = fuse_vectors(t, collab, self.config.weight)
        return out

    # -- persistence (safetensors; no pickle) ------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        return {"vectors": self.vectors, "counts": self.counts, "ridge": self.ridge}

    @classmethod
    def from_tensors(cls, config: CollabConfig, ids: np.ndarray, tensors: dict[str, np.ndarray]) -> "Fusion":
        return cls(config, np.asarray(ids), tensors["vectors"], tensors["counts"], tensors["ridge"])


def fuse_vectors(text: np.ndarray, collab: np.ndarray, weight: float) -> np.ndarray:
    """``[sqrt(1 - w) * text / |text|, sqrt(w) * collab / |collab|]`` as float32."""
    t = _unit(np.asarray(text, dtype=np.float64))
    c = _unit(np.asarray(collab, dtype=np.float64))
    return np.hstack([np.sqrt(1 - weight) * t, np.sqrt(weight) * c]).astype(np.float32)


def fit_fusion(text: np.ndarray, ids: np.ndarray, sequences: list[np.ndarray], config: CollabConfig, *, seed: int) -> Fusion:
    """Learn collaborative vectors from ``sequences`` (rows into ``text`` / ``ids``) and the
    text -> behaviour map; see the module docstring."""
    cut = config.holdout_last
    counts = count_sequences([s[:-cut] if cut else s for s in sequences], len(ids), config.window)
    return fit_from_counts(counts, text, ids, config, seed=seed)


def fit_from_counts(counts: CountBlocks, text, ids: np.ndarray, config: CollabConfig, *, seed: int, hook=None) -> Fusion:
    """:func:`fit_fusion` from counted co-occurrences (in memory or on disk).

    ``text``: the (N, D) text embeddings, an array or a dataset read in batches
    (:class:`~semantic_ids.stages.shards.EmbeddingShards`: ``iter_batches`` and
    ``take``). Memory, beyond the counts (one block, when they are on disk): at most
    three (N, dim + 10) float64 factors during the SVD (:func:`~.svd.randomized_svd`;
    1.8 GB at 1M items), then the (N, dim) float64 observed vectors, made unit in place,
    beside the (N, dim) float32 result; the ridge sample (at most ``RIDGE_SAMPLE`` rows:
    their text and the float64 design matrix, 0.46 GB at 100,000 x 384); ``CHUNK``
    rows of work arrays.
    ``hook(step)``, when given, is called after each step (for profiling).
    """
    from threadpoolctl import threadpool_limits

    hook = hook or (lambda step: None)
    n = len(ids)
    weight = counts.row_sums
    warm = weight > 0
    if warm.sum() <= config.dim:
        why = ""
        if counts.nnz == 0:  # say why: no two different items ever sit within a window of each other
            cut = config.holdout_last
            why = (f" (no two different items co-occur within {config.window} positions of one user's sequence: "
                   f"the longest sequence holds {counts.longest} item(s)"
                   + (f" after holding out the last {cut}" if cut else "") + ")")
        raise SequenceError(
            f"sequences give interactions for {int(warm.sum())} of {n} items{why}, too few to learn "
            f"{config.dim}-dimensional collaborative vectors; lower collab.dim or build without sequences"
        )
    with threadpool_limits(1, user_api="blas"):  # thin matrices; threaded BLAS is slower here, and not row-exact
        observed, s = randomized_svd(PPMI(counts, weight), config.dim, seed=seed)
        hook("svd")
        observed *= np.sqrt(s)  # U * sqrt(S), in place
        _unit_in_place(observed)
        # ridge regression text -> observed vectors, on (a seeded sample of) the items with interactions
        sample = np.flatnonzero(warm)
        if len(sample) > RIDGE_SAMPLE:
            sample = np.sort(np.random.default_rng(seed).choice(sample, RIDGE_SAMPLE, replace=False))
        tw = _with_bias(_take(text, sample))
        reg = config.ridge * np.eye(tw.shape[1])
        reg[-1, -1] = 0.0  # no penalty on the bias
        ridge = np.linalg.solve(tw.T @ tw + reg, tw.T @ observed[sample])
        del tw
        hook("ridge")
        mix = weight / (weight + config.shrink) if config.shrink > 0 else warm.astype(np.float64)
        vectors = np.empty((n, config.dim), dtype=np.float32)
        for lo, chunk in _chunks(text):
            hi = lo + len(chunk)
            predicted = _unit(_rows_matmul(_with_bias(chunk), ridge))
            m = mix[lo:hi, None]
            vectors[lo:hi] = _unit(m * observed[lo:hi] + (1 - m) * predicted)
    hook("vectors")
    log.info("collaborative vectors: %d of %d items have interactions (%d co-occurrences)", int(warm.sum()), n, counts.nnz)
    return Fusion(config, np.asarray(ids), vectors, weight.astype(np.float32), ridge)


def _with_bias(text: np.ndarray) -> np.ndarray:
    """``[text / |text|, 1]`` (n, D + 1) float64, built ``CHUNK`` rows at a time (the float64
    copy and the norms of one block at once, beside the output)."""
    text = np.asarray(text)
    out = np.empty((len(text), text.shape[1] + 1), dtype=np.float64)
    for lo in range(0, len(text), CHUNK):
        t = _unit(np.asarray(text[lo: lo + CHUNK], dtype=np.float64))
        out[lo: lo + len(t), :-1] = t
    out[:, -1] = 1.0
    return out


def _rows_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` with every row computed as it would be in any other batch: BLAS treats the
    last rows of a matrix (fewer than its kernel's unroll) apart, so rows are padded to a
    multiple of 64 (one BLAS thread: threads also change the sums)."""
    from threadpoolctl import threadpool_limits

    n = len(x)
    pad = -n % 64
    if pad:
        x = np.vstack([x, np.zeros((pad, x.shape[1]), dtype=x.dtype)])
    with threadpool_limits(1, user_api="blas"):
        return (x @ w)[:n]


def _chunks(text, rows: int = CHUNK):
    """(first row, (b, D) block) of an array or an embeddings dataset, in row order."""
    if isinstance(text, np.ndarray):
        for lo in range(0, len(text), rows):
            yield lo, text[lo: lo + rows]
    else:
        for batch in text.iter_batches(rows):
            yield batch.start, batch.embeddings


def _take(text, rows: np.ndarray) -> np.ndarray:
    return text[rows] if isinstance(text, np.ndarray) else text.take(rows)


def model_inputs(fusion: Fusion | None, embeddings: np.ndarray, input_dim: int, ids: np.ndarray | None = None) -> np.ndarray:
    """The RQ-VAE's input for embeddings: text embeddings are fused when the build used
    sequences (items in ``ids`` that the fusion knows use their own vectors); embeddings
    that already have the model's dimension pass through."""
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise EmbeddingError(f"embeddings should be 2-D (n, dim), got shape {emb.shape}")
    if fusion is not None and emb.shape[1] == fusion.text_dim:
        return fusion.fuse(emb, ids)
    if emb.shape[1] != input_dim:
        want = f"{fusion.text_dim} (text) or {input_dim}" if fusion is not None else f"{input_dim}"
        raise EmbeddingError(f"embeddings have dim {emb.shape[1]}, the model expects {want}")
    return np.ascontiguousarray(emb, dtype=np.float32)
