"""MiniLM sentence embeddings for the guards, with a small cache.

Several guards look at the same text (injection classifier, topic guard, context guard), so the
encoder caches recent embeddings: a message is encoded once per request. The model is retrieval's
process-wide MiniLM (:mod:`ragd.retrieval.embedder`), so the guards never load a second copy; any
object with ``Embedder.embed_documents`` can be wrapped instead.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ragd.config import Settings

Vector = npt.NDArray[np.float32]

MINILM_NAME = "all-MiniLM-L6-v2"


class BatchEmbedder(Protocol):
    """What the guards need from an embedder (a subset of ``ragd.retrieval.base.Embedder``)."""

    def embed_documents(self, texts: Sequence[str]) -> Vector:
        """L2-normalised embeddings, shape (n, dim)."""
        ...


def minilm_embedder(
    settings: Settings | None = None, max_seq_length: int = 256, device: str = "cpu"
) -> BatchEmbedder:
    """The packaged all-MiniLM-L6-v2 through retrieval's embedder (one model per process).

    With ``settings``, the model comes from retrieval's embedder cache: torch when the embedding
    precision is fp32, otherwise ONNX in fp32 (never int8: the injection head was trained on the
    exact fp32 vectors). When retrieval's own embedder is this MiniLM at this precision, both are
    the same object, so ingestion can hand its index vectors to the injection scan.
    """
    if settings is not None:
        from ragd.retrieval.registry import build_embedder

        precision = "fp32" if settings.embedding.precision == "fp32" else "onnx"
        emb = settings.embedding.model_copy(
            update={
                "precision": precision,
                "model": MINILM_NAME,
                "max_seq_length": max_seq_length,
                "device": device,
            }
        )
        return build_embedder(settings.model_copy(update={"embedding": emb}))
    from ragd.llm_serving.model_files import minilm_dir
    from ragd.retrieval.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(
        minilm_dir(), name=MINILM_NAME, max_seq_length=max_seq_length, device=device
    )


class CachedEncoder:
    """Wraps a :class:`BatchEmbedder` with an LRU cache keyed by the exact text (thread-safe)."""

    def __init__(self, embedder: BatchEmbedder, cache_size: int = 2048) -> None:
        self._embedder = embedder
        self._cache: OrderedDict[str, Vector] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    @property
    def embedder(self) -> BatchEmbedder:
        """The wrapped embedder."""
        return self._embedder

    def encode(self, texts: Sequence[str]) -> Vector:
        """Embeddings of ``texts`` (n, dim); only texts not in the cache are encoded."""
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self._embedder.embed_documents(missing)
            with self._lock:
                for text, vec in zip(missing, vectors, strict=True):
                    self._cache[text] = vec
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = []
            for t in texts:
                vec = self._cache.get(t)
                if vec is None:  # evicted by a concurrent caller; encode again
                    vec = self._embedder.embed_documents([t])[0]
                else:
                    self._cache.move_to_end(t)
                rows.append(vec)
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 384), dtype=np.float32)

    def encode_one(self, text: str) -> Vector:
        """Embedding of one text, shape (dim,)."""
        vector: Vector = self.encode([text])[0]
        return vector
