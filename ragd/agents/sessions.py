"""Conversation sessions and their messages in the metadata store.

A session belongs to the principal that created it (same tenant, same principal id); anyone else
gets "not found", admins included, so that a session id never reveals another user's chat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from ragd.db.models import ChatMessage, ChatSession, utcnow
from ragd.errors import NotFound
from ragd.llm_serving.base import Message
from ragd.security.principal import Principal

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_TITLE = 80


@dataclass(frozen=True)
class TurnRecord:
    """What is stored for the assistant side of one turn."""

    content: str
    citations: list[dict[str, Any]]
    guard_decisions: list[dict[str, Any]]
    backend: str | None
    usage: dict[str, Any]
    latency_ms: float
    trace_id: str


class SessionStore:
    """Sessions and messages, always scoped to their owner."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _owned(s: Session, principal: Principal, session_id: str) -> ChatSession:
        if not _SESSION_ID.match(session_id or ""):
            raise NotFound("session not found")
        row = s.get(ChatSession, session_id)
        if row is None or row.tenant != principal.tenant or row.owner != principal.id:
            raise NotFound("session not found")
        return row

    def open(self, principal: Principal, session_id: str | None, first_message: str) -> str:
        """The id of the caller's session ``session_id``, or of a new one titled after the message."""
        with Session(self.engine) as s:
            if session_id is not None:
                return self._owned(s, principal, session_id).id
            title = " ".join(first_message.split())[:MAX_TITLE]
            row = ChatSession(tenant=principal.tenant, owner=principal.id, title=title)
            s.add(row)
            s.commit()
            return row.id

    def get(self, principal: Principal, session_id: str) -> tuple[ChatSession, list[ChatMessage]]:
        """The caller's session and its messages, oldest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            row = self._owned(s, principal, session_id)
            messages = s.exec(
                select(ChatMessage)
                .where(ChatMessage.session_id == row.id)
                .order_by(col(ChatMessage.created_at), col(ChatMessage.id))
            ).all()
            return row, list(messages)

    def delete(self, principal: Principal, session_id: str) -> None:
        """Delete the caller's session and its messages."""
        with Session(self.engine) as s:
            row = self._owned(s, principal, session_id)
            s.exec(delete(ChatMessage).where(col(ChatMessage.session_id) == row.id))
            s.delete(row)
            s.commit()

    def history(self, session_id: str, limit: int) -> list[Message]:
        """The last ``limit`` messages of a session as model messages (oldest first)."""
        if limit <= 0:
            return []
        with Session(self.engine) as s:
            rows = s.exec(
                select(ChatMessage)
                .where(ChatMessage.session_id == session_id)
                .order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id).desc())
                .limit(limit)
            ).all()
        return [Message("user" if r.role == "user" else "assistant", r.content) for r in reversed(rows)]

    def add_turn(self, session_id: str, question: str, turn: TurnRecord) -> str:
        """Store the user's message and the answer; returns the answer's message id."""
        with Session(self.engine) as s:
            s.add(ChatMessage(session_id=session_id, role="user", content=question, trace_id=turn.trace_id))
            s.flush()
            answer = ChatMessage(
                session_id=session_id,
                role="assistant",
                content=turn.content,
                citations=turn.citations,
                guard_decisions=turn.guard_decisions,
                backend=turn.backend,
                usage=turn.usage,
                latency_ms=turn.latency_ms,
                trace_id=turn.trace_id,
                created_at=utcnow(),
            )
            s.add(answer)
            row = s.get(ChatSession, session_id)
            if row is not None:
                row.updated_at = utcnow()
                s.add(row)
            s.commit()
            return answer.id
