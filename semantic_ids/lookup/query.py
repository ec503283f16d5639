"""Embedding and text queries: the export's frozen model turns them into codes.

The export is read with :func:`semantic_ids.export.read_export` (checksums
verified, no pickle) only when a query first needs the model, so exact lookups
never import torch. Texts are embedded with the build's own embedding settings
(:func:`semantic_ids.embed.embed_texts`); :func:`semantic_ids.collab.model_inputs`
turns text embeddings into the model's input (fused with predicted behaviour
when the build used sequences), exactly as the build did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..export.manifest import ExportError
from ..errors import EmbeddingError


@dataclass(frozen=True)
class QueryModel:
    """What nearest-code search and embedding queries need from an export.

    ``model``: the RQVAE; ``fusion``: its ``collab.Fusion`` for builds with
    sequences, else None; ``embed``: callable(list[str]) -> (n, D) text
    embeddings; ``codebooks``: per model level a (K_l, D_c) float32 array
    (``RQVAE.code_books``); ``code_split``: ``RQVAE.code_split``.
    """

    model: Any
    fusion: Any
    embed: Callable[[list[str]], np.ndarray]
    codebooks: list[np.ndarray]
    code_split: int | None


def read_query_model(path: str | Path, codes: np.ndarray) -> QueryModel:
    """Read the model of the export at ``path`` whose ids table gave ``codes`` (N, L + 1).

    Raises :class:`~semantic_ids.manifest.ExportError` when the export no longer
    holds ``codes`` (a writer replaced it in between).
    """
    from ..export.io import read_export

    exp = read_export(path)
    if not np.array_equal(exp.codes, codes):
        raise ExportError(f"{path}: the export changed while it was being read; load it again")
    config = exp.config.embedding

    def embed(texts: Sequence[str]) -> np.ndarray:
        from ..stages.embed import embed_texts

        return embed_texts(list(texts), config, show_progress=False)[0]

    books = [cb.numpy().copy() for cb in exp.model.code_books()]
    return QueryModel(model=exp.model, fusion=exp.fusion, embed=embed, codebooks=books, code_split=exp.model.code_split)


def encode(model, fusion, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, D) or (D,) embeddings -> ((Q, L) codes under the frozen ``model``, (Q, D_c) their
    vectors in code space; see ``RQVAE.code_books``).

    Text embeddings of a build with sequences are fused with predicted behaviour
    first (``fusion``, see :func:`semantic_ids.collab.model_inputs`); embeddings of
    the model's input dimension pass through. Raises ValueError on the wrong
    dimension, NaN or infinity.
    """
    from ..model.collab import model_inputs

    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if not np.isfinite(emb).all():
        raise EmbeddingError("embeddings contain NaN or infinity")
    x = model_inputs(fusion, emb, model.input_dim)
    import torch

    with torch.no_grad():
        codes, vectors = model.encode_query(torch.from_numpy(x))
    return codes.numpy(), vectors.numpy()
