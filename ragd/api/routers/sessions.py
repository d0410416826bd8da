"""``GET/DELETE /v1/sessions/{id}``: a caller's own chat sessions (anyone else's are 404)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from ragd.api.deps import CurrentPrincipal
from ragd.api.protocol import MessagePublic, SessionPublic
from ragd.api.routers.chat import ChatServiceDep

router = APIRouter(prefix="/v1/sessions", tags=["chat"])
SessionId = Annotated[str, Path(min_length=1, max_length=64, description="The session id.")]


@router.get("/{session_id}", response_model=SessionPublic, summary="A session and its messages")
async def get_session(session_id: SessionId, principal: CurrentPrincipal, service: ChatServiceDep) -> Any:
    """The caller's session with every message, citations and guard decisions included."""
    row, messages = await asyncio.to_thread(service.sessions.get, principal, session_id)
    return SessionPublic(
        id=row.id,
        title=row.title,
        created_at=row.created_at.isoformat(),
        updated_at=row.updated_at.isoformat(),
        messages=[
            MessagePublic(
                id=m.id,
                role=m.role,
                content=m.content,
                citations=m.citations,
                guard_decisions=m.guard_decisions,
                backend=m.backend,
                latency_ms=m.latency_ms,
                trace_id=m.trace_id,
                created_at=m.created_at.isoformat(),
            )
            for m in messages
        ],
    )


@router.delete("/{session_id}", status_code=204, summary="Delete a session")
async def delete_session(
    session_id: SessionId, principal: CurrentPrincipal, service: ChatServiceDep
) -> Response:
    """Delete the caller's session and its messages."""
    await asyncio.to_thread(service.sessions.delete, principal, session_id)
    return Response(status_code=204)
