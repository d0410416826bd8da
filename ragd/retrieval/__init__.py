"""Retrieval: embedders, the BM25 sparse encoder, the Qdrant index, hybrid search and reranking.

Heavy libraries (sentence-transformers, qdrant-client) are imported only when a component is built.
"""

from ragd.retrieval.base import (
    ChunkRecord,
    Embedder,
    Reranker,
    SearchFilter,
    SearchHit,
    SearchMode,
    SparseEncoder,
    SparseVector,
)
from ragd.retrieval.bm25_encoder import BM25Encoder
from ragd.retrieval.qdrant_index import HybridParams, QdrantIndex, collection_name
from ragd.retrieval.registry import build_embedder, build_index, build_reranker, build_sparse_encoder
from ragd.retrieval.search_service import SearchResult, SearchService

__all__ = [
    "BM25Encoder",
    "ChunkRecord",
    "Embedder",
    "HybridParams",
    "QdrantIndex",
    "Reranker",
    "SearchFilter",
    "SearchHit",
    "SearchMode",
    "SearchResult",
    "SearchService",
    "SparseEncoder",
    "SparseVector",
    "build_embedder",
    "build_index",
    "build_reranker",
    "build_sparse_encoder",
    "collection_name",
]
