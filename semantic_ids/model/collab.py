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

Everything is float64 numpy and seeded, so a rerun gives identical vectors. The
fitted :class:`Fusion` (item vectors, the ridge map) is saved in the export as
``collab.safetensors`` and loads without pickle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..config import CollabConfig
from .keys import rows_of
from ..errors import EmbeddingError, SequenceError

log = logging.getLogger(__name__)


def cooccurrence(sequences: list[np.ndarray], n_items: int, window: int):
    """Symmetric (N, N) scipy CSR matrix: summed 1 / distance over pairs within ``window``."""
    from scipy import sparse

    seqs = [np.asarray(s, dtype=np.int64) for s in sequences if len(s) > 1]
    if not seqs:
        return sparse.csr_matrix((n_items, n_items))
    flat = np.concatenate(seqs)
    user = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    rows, cols, vals = [], [], []
    for d in range(1, window + 1):
        a, b = flat[:-d], flat[d:]
        keep = (user[:-d] == user[d:]) & (a != b)  # same user, not an item next to itself
        rows += [a[keep], b[keep]]
        cols += [b[keep], a[keep]]
        vals.append(np.full(2 * int(keep.sum()), 1.0 / d))
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    return sparse.coo_matrix((v, (r, c)), shape=(n_items, n_items)).tocsr()  # duplicates summed


def ppmi(counts, alpha: float = 0.75):
    """Positive PMI of a symmetric co-occurrence matrix, context counts smoothed by ``alpha``."""
    from scipy import sparse

    coo = counts.tocoo()
    row = np.asarray(counts.sum(1)).ravel()
    ctx = row**alpha
    total, ctx_total = row.sum(), ctx.sum()
    if total == 0:
        return sparse.csr_matrix(counts.shape)
    pmi = np.log(coo.data * ctx_total / (row[coo.row] * ctx[coo.col]))
    keep = pmi > 0
    return sparse.coo_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape).tocsr()


def randomized_svd(a, rank: int, *, seed: int, oversample: int = 10, power_iters: int = 4):
    """Top ``rank`` singular triplets of a sparse matrix (Halko et al. 2011), seeded, with fixed signs.

    Returns ``u`` (n, rank) and ``s`` (rank,). BLAS runs on one thread: the matrices
    are thin, and on a busy machine threaded BLAS is several times slower here.
    """
    from threadpoolctl import threadpool_limits

    n = a.shape[1]
    k = min(rank + oversample, min(a.shape))
    rng = np.random.default_rng(seed)
    with threadpool_limits(1, user_api="blas"):
        q, _ = np.linalg.qr(a @ rng.standard_normal((n, k)))
        for _ in range(power_iters):
            q, _ = np.linalg.qr(a.T @ q)
            q, _ = np.linalg.qr(a @ q)
        u_small, s, _ = np.linalg.svd((a.T @ q).T, full_matrices=False)
        u = q @ u_small
    u, s = u[:, :rank], s[:rank]
    # a singular vector's sign is arbitrary: fix it so the largest entry is positive
    flip = np.sign(u[np.abs(u).argmax(0), np.arange(u.shape[1])])
    flip[flip == 0] = 1
    return u * flip, s


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1)


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
        t = _unit(np.asarray(text, dtype=np.float64))
        return _unit(np.hstack([t, np.ones((len(t), 1))]) @ self.ridge)

    def fuse(self, text: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """The RQ-VAE's input (n, D_text + dim) for text embeddings; ``ids`` known to the
        fusion use their own vectors, all others (or ``ids=None``) the text prediction."""
        text = np.asarray(text)
        if text.ndim != 2 or text.shape[1] != self.text_dim:
            raise EmbeddingError(f"text embeddings should have shape (n, {self.text_dim}), got {text.shape}")
        collab = self.predict(text)
        if ids is not None and len(ids):
            rows = rows_of(ids, self.ids, missing="-1")
            known = rows >= 0
            collab[known] = self.vectors[rows[known]]
        return fuse_vectors(text, collab, self.config.weight)

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
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # thin matrices; threaded BLAS is slower on a busy machine
        return _fit_fusion(text, ids, sequences, config, seed)


def _fit_fusion(text, ids, sequences, config: CollabConfig, seed: int) -> Fusion:
    n = len(ids)
    text = np.asarray(text, dtype=np.float64)
    cut = config.holdout_last
    seqs = [s[:-cut] if cut else s for s in sequences]
    counts = cooccurrence(seqs, n, config.window)
    weight = np.asarray(counts.sum(1)).ravel()
    warm = weight > 0
    if warm.sum() <= config.dim:
        why = ""
        if counts.nnz == 0:  # say why: no two different items ever sit within a window of each other
            longest = max((len(s) for s in seqs), default=0)
            why = (f" (no two different items co-occur within {config.window} positions of one user's sequence: "
                   f"the longest sequence holds {longest} item(s)"
                   + (f" after holding out the last {cut}" if cut else "") + ")")
        raise SequenceError(
            f"sequences give interactions for {int(warm.sum())} of {n} items{why}, too few to learn "
            f"{config.dim}-dimensional collaborative vectors; lower collab.dim or build without sequences"
        )
    u, s = randomized_svd(ppmi(counts), config.dim, seed=seed)
    observed = _unit(u * np.sqrt(s))
    # ridge regression text -> observed vectors, on the items with interactions
    t = np.hstack([_unit(text), np.ones((n, 1))])
    tw = t[warm]
    reg = config.ridge * np.eye(t.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the bias
    ridge = np.linalg.solve(tw.T @ tw + reg, tw.T @ observed[warm])
    predicted = _unit(t @ ridge)
    mix = (weight / (weight + config.shrink))[:, None] if config.shrink > 0 else warm[:, None].astype(np.float64)
    vectors = _unit(mix * observed + (1 - mix) * predicted)
    log.info("collaborative vectors: %d of %d items have interactions (%d co-occurrences)", int(warm.sum()), n, counts.nnz)
    return Fusion(config, np.asarray(ids), vectors.astype(np.float32), weight.astype(np.float32), ridge)


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
