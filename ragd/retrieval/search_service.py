"""The search service: query encoding, one filtered Qdrant query, near-duplicate suppression, reranking.

Every restriction (tenant, readable collections, the caller's ACL subjects, metadata filters) is
part of the :class:`~ragd.retrieval.base.SearchFilter` that goes *inside* the Qdrant query; nothing
retrieved is filtered afterwards for access. Post-processing only reorders or drops near-copies.

All collections searched by one service share its embedder (``embedding.model``); switching
collections to a fine-tuned embedder is a settings change plus re-embedding (their points then
live in that embedder's Qdrant collection, see :mod:`ragd.retrieval.qdrant_index`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragd.config import Settings
from ragd.errors import BadRequest
from ragd.retrieval.base import Embedder, Reranker, SearchFilter, SearchHit, SearchMode, SparseEncoder
from ragd.retrieval.bm25_encoder import analyze
from ragd.retrieval.qdrant_index import HybridParams, QdrantIndex

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from sqlalchemy import Engine

log = logging.getLogger(__name__)
SEARCH_MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")


@dataclass(frozen=True)
class SearchResult:
    """Hits of one search, with what was done to get them."""

    hits: list[SearchHit]
    mode: SearchMode
    reranked: bool
    took_ms: float


def suppress_near_duplicates(hits: Sequence[SearchHit], threshold: float) -> list[SearchHit]:
    """Drop each hit whose analysed-term set has Jaccard >= ``threshold`` with a better hit.

    Overlapping chunks and re-uploaded copies otherwise fill the top ranks with one passage.
    """
    if threshold >= 1.0 or len(hits) < 2:
        return list(hits)
    kept: list[SearchHit] = []
    kept_terms: list[frozenset[str]] = []
    for hit in hits:
        terms = frozenset(analyze(hit.text))
        duplicate = any(
            terms and other and len(terms & other) / len(terms | other) >= threshold for other in kept_terms
        )
        if not duplicate:
            kept.append(hit)
            kept_terms.append(terms)
    return kept


class SearchService:
    """Dense, sparse (BM25) and hybrid search over one embedder's Qdrant collection."""

    def __init__(
        self,
        settings: Settings,
        index: QdrantIndex,
        embedder: Embedder,
        sparse: SparseEncoder,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self.sparse = sparse
        self.reranker = reranker
        r = settings.retrieval
        self.hybrid = HybridParams(
            fusion=r.fusion,
            rrf_k=r.rrf_k,
            dense_weight=r.dense_weight,
            sparse_weight=r.sparse_weight,
            prefetch_limit=r.prefetch_limit,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, client: QdrantClient, engine: Engine | None = None
    ) -> SearchService:
        """Build the service and its components from settings (the app factory calls this)."""
        from ragd.retrieval.registry import build_embedder, build_index, build_reranker, build_sparse_encoder

        embedder = build_embedder(settings, engine)
        return cls(
            settings,
            build_index(settings, client, embedder),
            embedder,
            build_sparse_encoder(settings),
            build_reranker(settings, engine),
        )

    def check_query(self, query: str, top_k: int) -> str:
        """The stripped query, or a 400 for an empty/oversized query or an out-of-range top_k."""
        q = query.strip()
        if not q:
            raise BadRequest("query is empty")
        if len(q) > self.settings.auth.max_query_chars:
            raise BadRequest(f"query is longer than {self.settings.auth.max_query_chars} characters")
        if not 1 <= top_k <= self.settings.retrieval.max_top_k:
            raise BadRequest(f"top_k must be between 1 and {self.settings.retrieval.max_top_k}")
        return q

    def search(
        self,
        query: str,
        flt: SearchFilter,
        *,
        top_k: int = 10,
        mode: SearchMode | None = None,
        rerank: bool | None = None,
        hybrid: HybridParams | None = None,
    ) -> SearchResult:
        """The ``top_k`` best chunks for ``query`` among those ``flt`` admits.

        ``rerank=None`` reranks when a reranker is configured; ``hybrid`` overrides the fusion
        settings (the evaluation CLI sweeps them).
        """
        started = time.perf_counter()
        q = self.check_query(query, top_k)
        mode = mode or self.settings.retrieval.default_mode
        if mode not in SEARCH_MODES:
            raise BadRequest(f"mode must be one of {', '.join(SEARCH_MODES)}")
        use_reranker = self.reranker is not None and rerank is not False
        wanted = max(top_k, self.settings.retrieval.rerank_candidates) if use_reranker else top_k
        dedup = self.settings.retrieval.dedup_threshold < 1.0
        limit = min(wanted * 2 if dedup else wanted, 1000)  # headroom for dropped near-copies
        dense = self.embedder.embed_query(q) if mode in ("dense", "hybrid") else None
        sparse = self.sparse.encode_query(q) if mode in ("sparse", "hybrid") else None
        hits = self.index.query(
            flt, mode=mode, limit=limit, dense=dense, sparse=sparse, hybrid=hybrid or self.hybrid
        )
        if dedup:
            hits = suppress_near_duplicates(hits, self.settings.retrieval.dedup_threshold)
        hits = hits[:wanted]
        if use_reranker and self.reranker is not None:
            # The reranker reorders the head; anything past it keeps its retrieval order.
            n = self.settings.retrieval.rerank_candidates
            hits = self.reranker.rerank(q, hits[:n], n) + hits[n:]
        return SearchResult(
            hits=hits[:top_k],
            mode=mode,
            reranked=use_reranker,
            took_ms=(time.perf_counter() - started) * 1000,
        )
