"""``/v1/audit``: the tenant's audit log, for admins. Read-only: there is no way to change it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ragd.api.deps import AdminPrincipal, SessionDep
from ragd.api.timestamps import UTCDateTime
from ragd.db.models import AuditEvent
from ragd.security.audit import list_events

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEventPublic(BaseModel):
    """One audit event."""

    id: int
    ts: UTCDateTime
    actor: str
    action: str
    target: str
    outcome: str
    ip: str
    request_id: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, e: AuditEvent) -> AuditEventPublic:
        return cls(
            id=e.id or 0,
            ts=e.ts,
            actor=e.actor,
            action=e.action,
            target=e.target,
            outcome=e.outcome,
            ip=e.ip,
            request_id=e.request_id,
            detail=e.detail,
        )


@router.get("", response_model=list[AuditEventPublic])
def list_audit(
    principal: AdminPrincipal,
    session: SessionDep,
    action: str | None = Query(default=None, max_length=64),
    actor: str | None = Query(default=None, max_length=128),
    outcome: str | None = Query(default=None, max_length=16),
    since: datetime | None = None,
    before_id: int | None = Query(default=None, ge=1, le=2**62, description="Page backwards from this id."),
    limit: int = Query(default=100, ge=1, le=500),
) -> list[AuditEventPublic]:
    """The caller's tenant's events, newest first."""
    rows = list_events(
        session,
        tenant=principal.tenant,
        action=action,
        actor=actor,
        outcome=outcome,
        since=since,
        before_id=before_id,
        limit=limit,
    )
    return [AuditEventPublic.of(e) for e in rows]
