"""The audit log: who did what, when, from where, with what outcome. Append-only.

Each event is written in its own short transaction, so an event about a failure (a refused
key, a denied request, a blocked prompt) survives the rollback of the request that caused it.
Nothing here updates or deletes events; the ``0002_security`` migration adds database triggers
that refuse UPDATE and DELETE on ``audit_events``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from ragd.db.models import AuditEvent
from ragd.security.principal import Principal

log = logging.getLogger(__name__)

Outcome = Literal["ok", "denied", "error", "blocked"]

_MAX_DETAIL_VALUE = 500


def _clip(value: Any) -> Any:
    # Details are for humans reading the log; long values (prompts, bodies) are cut short.
    if isinstance(value, str):
        return value[:_MAX_DETAIL_VALUE]
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_clip(v) for v in list(value)[:20]]
    if isinstance(value, dict):
        return {str(k)[:64]: _clip(v) for k, v in list(value.items())[:20]}
    return str(value)[:_MAX_DETAIL_VALUE]


def audit_event(
    *,
    action: str,
    outcome: Outcome = "ok",
    principal: Principal | None = None,
    tenant: str = "",
    actor: str = "",
    target: str = "",
    ip: str = "",
    request_id: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Build (not store) one event; ``principal`` fills tenant and actor unless they are given."""
    return AuditEvent(
        tenant=(tenant or (principal.tenant if principal else ""))[:64],
        actor=(actor or (principal.id if principal else ""))[:128],
        action=action[:64],
        target=target[:256],
        outcome=outcome,
        ip=ip[:64],
        request_id=request_id[:64],
        detail=_clip(detail or {}),
    )


def write_events(engine: Engine, events: list[AuditEvent]) -> None:
    """Store events in their own transaction; a store failure is logged, never raised
    (auditing must not turn a success into a 500)."""
    try:
        with Session(engine) as session:
            session.add_all(events)
            session.commit()
    except SQLAlchemyError:
        log.exception("audit write failed", extra={"actions": [e.action for e in events]})


def audit(
    engine: Engine,
    *,
    action: str,
    outcome: Outcome = "ok",
    principal: Principal | None = None,
    tenant: str = "",
    actor: str = "",
    target: str = "",
    ip: str = "",
    request_id: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event in its own transaction.

    ``action`` is a dotted name (``auth.failure``, ``key.create``, ``document.upload``,
    ``guard.block``); ``target`` names the object (``collection:<name>``, ``key:<id>``). On
    SQLite, do not call this while holding uncommitted writes in another session (one writer).
    """
    write_events(
        engine,
        [
            audit_event(
                action=action,
                outcome=outcome,
                principal=principal,
                tenant=tenant,
                actor=actor,
                target=target,
                ip=ip,
                request_id=request_id,
                detail=detail,
            )
        ],
    )


def list_events(
    session: Session,
    *,
    tenant: str,
    action: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """A tenant's events, newest first (``before_id`` pages backwards)."""
    q = select(AuditEvent).where(AuditEvent.tenant == tenant)
    if action:
        q = q.where(AuditEvent.action == action)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if outcome:
        q = q.where(AuditEvent.outcome == outcome)
    if since is not None:
        q = q.where(col(AuditEvent.ts) >= since)
    if before_id is not None:
        q = q.where(col(AuditEvent.id) < before_id)
    return list(session.exec(q.order_by(col(AuditEvent.id).desc()).limit(limit)).all())
