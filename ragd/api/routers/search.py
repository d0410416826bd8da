"""``POST /v1/search``: retrieval without generation, restricted to what the caller may read."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ragd.api.deps import ReaderPrincipal, SessionDep
from ragd.api.state import StateDep
from ragd.db.engine import release_connection
from ragd.db.models import Collection, Permission
from ragd.errors import ServiceUnavailable
from ragd.retrieval.base import SearchFilter
from ragd.retrieval.search_service import SearchService
from ragd.security.policy import readable_collection_ids, resolve_collection

router = APIRouter(prefix="/v1", tags=["search"])
SEARCH_KEY = "search"
_MAX_COLLECTIONS = 50
_MAX_IDS = 256


class SearchFilters(BaseModel):
    """Metadata restrictions, applied inside the vector query."""

    model_config = ConfigDict(extra="forbid")

    document_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=_MAX_IDS, description="Only these documents."
    )
    sources: list[Annotated[str, Field(min_length=1, max_length=512)]] | None = Field(
        default=None, max_length=_MAX_IDS, description="Only chunks of these source file names."
    )
    created_after: datetime | None = Field(default=None, description="Indexed at or after this time.")
    created_before: datetime | None = Field(default=None, description="Indexed at or before this time.")
    metadata: dict[str, str | int | bool | list[str | int]] = Field(
        default_factory=dict, max_length=20, description="Exact matches on custom fields (a list: any of)."
    )


class SearchRequest(BaseModel):
    """A search over the caller's readable collections."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="What to look for.")
    collections: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None,
        max_length=_MAX_COLLECTIONS,
        description="Collection names; empty means every collection the caller may read.",
    )
    filters: SearchFilters = Field(default_factory=SearchFilters, description="Metadata filters.")
    top_k: int = Field(default=10, description="How many chunks to return (1..retrieval.max_top_k).")
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(
        default=None, description="dense, sparse (BM25) or hybrid; default: the configured mode."
    )
    rerank: bool | None = Field(default=None, description="Override whether the reranker runs.")


class SearchHitPublic(BaseModel):
    """One retrieved chunk."""

    text: str
    score: float
    collection: str
    document_id: str
    version: int
    chunk_index: int
    section: str | None
    page: int | None
    source: str | None
    flagged: bool = Field(description="Ingestion flagged this chunk as a possible prompt injection.")


class SearchResponse(BaseModel):
    """Search results, best first."""

    hits: list[SearchHitPublic]
    mode: str
    reranked: bool
    took_ms: float


def get_search_service(state: StateDep) -> SearchService:
    """The app's search service (built in the lifespan)."""
    service: SearchService | None = state.extras.get(SEARCH_KEY)
    if service is None:
        raise ServiceUnavailable("search is not available on this server")
    return service


SearchServiceDep = Annotated[SearchService, Depends(get_search_service)]


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


@router.post("/search", response_model=SearchResponse, summary="Search the caller's collections")
def search(
    body: SearchRequest, principal: ReaderPrincipal, session: SessionDep, service: SearchServiceDep
) -> Any:
    """Dense, BM25 or hybrid search. Unknown and unreadable collections are both 404."""
    service.check_query(body.query, body.top_k)  # cheap 400s before any database work
    if body.collections:
        names = list(dict.fromkeys(body.collections))
        ids = [resolve_collection(session, principal, n, Permission.read).id for n in names]
    else:
        ids = readable_collection_ids(session, principal)
    if not ids:
        mode = body.mode or service.settings.retrieval.default_mode
        return SearchResponse(hits=[], mode=mode, reranked=False, took_ms=0.0)
    names_by_id = {c.id: c.name for c in session.exec(_collections_by_id(ids)).all()}
    release_connection(session)  # the search itself needs no database
    f = body.filters
    flt = SearchFilter(
        tenant=principal.tenant,
        collection_ids=ids,
        subjects=list(principal.subjects),
        document_ids=f.document_ids,
        sources=f.sources,
        created_after=_ts(f.created_after),
        created_before=_ts(f.created_before),
        metadata=dict(f.metadata),
    )
    result = service.search(body.query, flt, top_k=body.top_k, mode=body.mode, rerank=body.rerank)
    return SearchResponse(
        hits=[
            SearchHitPublic(
                text=h.text,
                score=h.score,
                collection=names_by_id.get(h.collection_id, ""),
                document_id=h.document_id,
                version=h.version,
                chunk_index=h.chunk_index,
                section=h.section,
                page=h.page,
                source=h.source,
                flagged=bool(h.payload.get("flagged", False)),
            )
            for h in result.hits
        ],
        mode=result.mode,
        reranked=result.reranked,
        took_ms=round(result.took_ms, 2),
    )


def _collections_by_id(ids: list[str]) -> Any:
    from sqlmodel import col, select

    return select(Collection).where(col(Collection.id).in_(ids))
