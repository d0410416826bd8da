"""The agent's view of the knowledge base: the search service bound to one caller's reach.

The tenant, readable collection ids and grant subjects come from the authenticated principal
when the run starts (``SearchFilter``), and go inside every Qdrant query; the agent and the
model-chosen tool arguments can narrow a search but never widen it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ragd.agents.evidence import title_of
from ragd.agents.state import DocumentView
from ragd.errors import IndexUnavailable, NotFound
from ragd.retrieval.base import SearchFilter, SearchHit

if TYPE_CHECKING:
    from ragd.retrieval.search_service import SearchService


class ScopedKnowledgeBase:
    """:class:`~ragd.agents.state.KnowledgeBase` over a :class:`SearchService` and one filter."""

    def __init__(self, service: SearchService, flt: SearchFilter) -> None:
        self._service = service
        self._filter = flt

    @property
    def search_filter(self) -> SearchFilter:
        return self._filter

    async def search(self, query: str, *, top_k: int) -> list[SearchHit]:
        if not self._filter.collection_ids:
            return []
        query = query.strip()[: self._service.settings.auth.max_query_chars]
        if not query:
            return []
        top_k = max(1, min(top_k, self._service.settings.retrieval.max_top_k))
        result = await asyncio.to_thread(self._service.search, query, self._filter, top_k=top_k)
        return result.hits

    async def document(self, document_id: str, *, chunk_index: int | None, window: int) -> DocumentView:
        if not self._filter.collection_ids:
            raise NotFound("document not found")
        hits = await asyncio.to_thread(self._scroll, document_id, chunk_index, max(0, min(window, 3)))
        if not hits:
            raise NotFound("document not found", details={"document_id": document_id[:64]})
        first = hits[0]
        meta = first.payload.get("metadata")
        return DocumentView(
            document_id=first.document_id,
            version=first.version,
            title=title_of(first),
            metadata={
                "source": first.source,
                "collection_id": first.collection_id,
                **(meta if isinstance(meta, dict) else {}),
            },
            chunks=hits,
        )

    def _scroll(self, document_id: str, chunk_index: int | None, window: int) -> list[SearchHit]:
        from qdrant_client.http import models as qm

        from ragd.retrieval.qdrant_index import build_filter

        index = self._service.index
        flt = build_filter(replace(self._filter, document_ids=[document_id]))
        must: list[Any] = list(flt.must or [])
        if chunk_index is not None:
            must.append(
                qm.FieldCondition(
                    key="chunk_index", range=qm.Range(gte=chunk_index - window, lte=chunk_index + window)
                )
            )
        if not index.client.collection_exists(index.name):
            return []
        try:
            points, _ = index.client.scroll(
                index.name, scroll_filter=qm.Filter(must=must), limit=64, with_payload=True
            )
        except Exception as exc:
            raise IndexUnavailable("could not read the document's chunks") from exc
        hits = [
            SearchHit(
                point_id=str(p.id),
                score=0.0,
                text=str((p.payload or {}).get("text", "")),
                document_id=str((p.payload or {}).get("document_id", "")),
                version=int((p.payload or {}).get("version", 0)),
                chunk_index=int((p.payload or {}).get("chunk_index", 0)),
                collection_id=str((p.payload or {}).get("collection_id", "")),
                section=(p.payload or {}).get("section") or None,
                page=(p.payload or {}).get("page"),
                source=(p.payload or {}).get("source") or None,
                payload=dict(p.payload or {}),
            )
            for p in points
        ]
        latest = max((h.version for h in hits), default=0)
        return sorted((h for h in hits if h.version == latest), key=lambda h: h.chunk_index)[
            : 2 * window + 1 if chunk_index is not None else 8
        ]
