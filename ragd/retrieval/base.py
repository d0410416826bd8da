"""Interfaces of the retrieval layer, shared by ingestion (writes) and search (reads).

Qdrant point payload (DESIGN.md §6), written by ingestion and filtered on by search::

    tenant, collection_id, document_id, version, chunk_index, text, section, page, source,
    acl (grant subjects allowed at document level; ["*"] = everyone who may read the collection),
    injection_score, flagged, metadata (custom fields), created_at (epoch seconds)

Every search carries the caller's tenant and readable collection ids inside the Qdrant filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

SearchMode = Literal["dense", "sparse", "hybrid"]


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector (term ids and weights), as Qdrant stores it."""

    indices: list[int]
    values: list[float]


@runtime_checkable
class Embedder(Protocol):
    """Dense text embedder."""

    name: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed passages (batched), L2-normalised, shape (n, dim)."""
        ...

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """Embed one query, L2-normalised, shape (dim,)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` under this embedder's tokenizer (for chunk bounds)."""
        ...


@runtime_checkable
class SpanPoolingEmbedder(Embedder, Protocol):
    """An embedder that also pools character spans of each text from the same encoder pass
    (the ONNX embedder); ingestion's injection scan uses the span vectors to pick sentences."""

    def embed_with_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[npt.NDArray[np.float32], list[npt.NDArray[np.float32]]]:
        """Embeddings of ``texts`` and, per text, one in-context vector per span (NaN if truncated)."""
        ...


@runtime_checkable
class SparseEncoder(Protocol):
    """Sparse (BM25-style) encoder; IDF is applied by Qdrant's IDF modifier at query time."""

    name: str

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Term-frequency weights of passages."""
        ...

    def encode_query(self, text: str) -> SparseVector:
        """Query term weights."""
        ...


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk to index: its id, vectors and payload."""

    point_id: str
    dense: Sequence[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions that go inside the Qdrant query (never applied after retrieval)."""

    tenant: str
    collection_ids: Sequence[str]
    subjects: Sequence[str] = ()  # caller's grant subjects for document-level ACLs
    document_ids: Sequence[str] | None = None
    sources: Sequence[str] | None = None
    created_after: float | None = None
    created_before: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # exact matches on custom fields


@dataclass(frozen=True)
class SearchHit:
    """A retrieved chunk."""

    point_id: str
    score: float
    text: str
    document_id: str
    version: int
    chunk_index: int
    collection_id: str
    section: str | None = None
    page: int | None = None
    source: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Reranker(Protocol):
    """Re-scores (query, passage) pairs."""

    name: str

    def rerank(self, query: str, hits: Sequence[SearchHit], top_k: int) -> list[SearchHit]:
        """Return the best ``top_k`` hits, re-scored."""
        ...
