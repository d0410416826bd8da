"""Production monitoring: one record per chat turn, feedback, and their Prometheus metrics.

The chat service calls :meth:`Monitor.record_turn` (or ``arecord_turn`` from async code) once per
answered turn::

    monitor.record_turn(
        tenant=principal.tenant, subject=principal.id, message_id=assistant_message.id,
        session_id=session.id, query=question, query_embedding=embedder.embed_query(question),
        retrieval_scores=[h.score for h in hits], grounding_score=0.82, abstained=False,
        guard_decisions=decisions, backend="llamacpp", latency_ms=812.0,
        experiment_id=assignment.experiment_id, variant=assignment.variant,
    )

The query text itself is not stored (only its length): the embedding is kept as an int8 summary
(384 bytes for MiniLM), enough for the drift tests and no copy of what users typed.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ragd.config import EvalSettings
from ragd.db.engine import session_scope
from ragd.db.models import ChatMessage, ChatSession, Feedback, MonitorTurn, utcnow
from ragd.errors import BadRequest, NotFound
from ragd.security.principal import Principal

MAX_SCORES = 100
MAX_DECISIONS = 50
MAX_COMMENT = 2000


def encode_embedding(vector: Sequence[float] | npt.NDArray[np.floating[Any]]) -> str:
    """An L2-normalised embedding as int8 (scale 127), base64: the stored summary of a query."""
    v = np.asarray(vector, dtype=np.float32).ravel()
    if v.size == 0 or v.size > 3000 or not np.all(np.isfinite(v)):
        raise BadRequest("query_embedding must be 1-3000 finite numbers")
    norm = float(np.linalg.norm(v))
    if norm > 0:
        v = v / norm
    q = np.clip(np.rint(v * 127), -127, 127).astype(np.int8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def decode_embedding(text: str) -> npt.NDArray[np.float32]:
    """Inverse of :func:`encode_embedding` (up to int8 rounding)."""
    q = np.frombuffer(base64.b64decode(text), dtype=np.int8)
    return q.astype(np.float32) / 127.0


def _decision_dict(d: Any) -> dict[str, Any]:
    if is_dataclass(d) and not isinstance(d, type):
        raw = asdict(d)
    elif isinstance(d, Mapping):
        raw = dict(d)
    else:
        raise BadRequest("guard decisions must be GuardDecision objects or mappings")
    # Keep what monitoring needs; never the redacted text or free-form details.
    keep = {k: raw.get(k) for k in ("guard", "stage", "action", "score", "error")}
    keep["guard"] = str(keep.get("guard") or "")[:64]
    keep["action"] = str(keep.get("action") or "")[:16]
    score = keep.get("score")
    keep["score"] = float(score) if isinstance(score, int | float) and math.isfinite(score) else None
    return keep


def _finite(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number")
    return float(value)


class Monitor:
    """Records turns and feedback in the metadata store and exports their metrics."""

    def __init__(
        self,
        engine: Engine,
        settings: EvalSettings,
        registry: CollectorRegistry | None = None,
        embedder: Any = None,
    ) -> None:
        """``embedder`` (anything with ``embed_query``) embeds turns recorded with a query but no
        ``query_embedding``, so the query-drift test works whatever the caller passes."""
        self.engine = engine
        self.settings = settings
        self.embedder = embedder
        registry = registry or CollectorRegistry()
        self.turns = Counter(
            "ragd_turns", "Chat turns recorded by monitoring.", ["backend", "outcome"], registry=registry
        )
        self.latency = Histogram(
            "ragd_turn_latency_seconds",
            "End-to-end chat turn latency.",
            ["backend"],
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        unit = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
        self.top_score = Histogram(
            "ragd_retrieval_top_score",
            "Score of the best retrieved passage.",
            buckets=unit,
            registry=registry,
        )
        self.grounding = Histogram(
            "ragd_grounding_score", "Grounding score of answers.", buckets=unit, registry=registry
        )
        self.guard_actions = Counter(
            "ragd_guard_actions", "Guard decisions on chat turns.", ["guard", "action"], registry=registry
        )
        self.feedback = Counter("ragd_feedback", "User feedback on answers.", ["rating"], registry=registry)

    def record_turn(
        self,
        *,
        tenant: str,
        subject: str = "",
        message_id: str | None = None,
        session_id: str | None = None,
        query: str | None = None,
        query_embedding: Sequence[float] | npt.NDArray[np.floating[Any]] | None = None,
        retrieval_scores: Sequence[float] = (),
        grounding_score: float | None = None,
        abstained: bool = False,
        guard_decisions: Sequence[Any] = (),
        backend: str | None = None,
        latency_ms: float | None = None,
        experiment_id: str | None = None,
        variant: str | None = None,
    ) -> str | None:
        """Store one turn and update the metrics; returns the record id (None when monitoring is off)."""
        if not self.settings.monitor_enabled:
            return None
        if query_embedding is None and query and self.embedder is not None:
            query_embedding = self.embedder.embed_query(query)
        scores = [
            s
            for s in (_finite(x, "retrieval_scores") for x in list(retrieval_scores)[:MAX_SCORES])
            if s is not None
        ]
        decisions = [_decision_dict(d) for d in list(guard_decisions)[:MAX_DECISIONS]]
        blocked = any(d["action"] == "block" for d in decisions)
        turn = MonitorTurn(
            tenant=tenant[:64],
            subject=subject[:128],
            message_id=message_id,
            session_id=session_id,
            backend=(backend or None) and backend[:64],
            latency_ms=_finite(latency_ms, "latency_ms"),
            query_chars=len(query or ""),
            query_embedding=encode_embedding(query_embedding) if query_embedding is not None else None,
            retrieval_scores=scores,
            top_score=max(scores) if scores else None,
            grounding_score=_finite(grounding_score, "grounding_score"),
            abstained=bool(abstained),
            blocked=blocked,
            guard_decisions=decisions,
            experiment_id=experiment_id,
            variant=variant and variant[:64],
        )
        with session_scope(self.engine) as session:
            session.add(turn)
        label = turn.backend or "none"
        outcome = "blocked" if blocked else "abstained" if abstained else "answered"
        self.turns.labels(label, outcome).inc()
        if turn.latency_ms is not None:
            self.latency.labels(label).observe(turn.latency_ms / 1000)
        if turn.top_score is not None:
            self.top_score.observe(turn.top_score)
        if turn.grounding_score is not None:
            self.grounding.observe(turn.grounding_score)
        for d in decisions:
            self.guard_actions.labels(d["guard"] or "unknown", d["action"] or "unknown").inc()
        return turn.id

    async def arecord_turn(self, **kwargs: Any) -> str | None:
        """:meth:`record_turn` off the event loop."""
        return await asyncio.to_thread(lambda: self.record_turn(**kwargs))

    def record_feedback(
        self, principal: Principal, message_id: str, rating: int, comment: str = ""
    ) -> Feedback:
        """Thumbs up (+1) or down (-1) with an optional comment on a message the caller can see.

        One feedback per message and user: giving it again replaces the earlier one.
        """
        if rating not in (1, -1):
            raise BadRequest("rating must be 1 (thumbs up) or -1 (thumbs down)")
        if len(comment) > MAX_COMMENT:
            raise BadRequest(f"comment is over {MAX_COMMENT} characters")
        with session_scope(self.engine) as session:
            self._check_message(session, principal, message_id)
            existing = session.exec(
                select(Feedback).where(Feedback.message_id == message_id, Feedback.subject == principal.id)
            ).first()
            if existing is None:
                existing = Feedback(
                    tenant=principal.tenant,
                    message_id=message_id,
                    subject=principal.id,
                    rating=rating,
                    comment=comment,
                )
            else:
                existing.rating, existing.comment, existing.updated_at = rating, comment, utcnow()
            session.add(existing)
            try:
                session.flush()
            except IntegrityError as exc:  # a concurrent first feedback by the same user
                raise BadRequest("feedback for this message is being recorded; retry") from exc
        self.feedback.labels("up" if rating > 0 else "down").inc()
        return existing

    @staticmethod
    def _check_message(session: Session, principal: Principal, message_id: str) -> None:
        """The message exists in the caller's tenant and (unless admin) in the caller's session."""
        missing = NotFound("message not found")
        if not (0 < len(message_id) <= 32):
            raise missing
        row = session.exec(
            select(ChatMessage, ChatSession)
            .join(ChatSession, col(ChatSession.id) == col(ChatMessage.session_id))
            .where(ChatMessage.id == message_id)
        ).first()
        if row is not None:
            message, chat = row
            if chat.tenant != principal.tenant or (chat.owner != principal.id and not principal.is_admin):
                raise missing
            if message.role != "assistant":
                raise BadRequest("feedback applies to assistant messages")
            return
        # Turns recorded before (or without) a stored message are accepted by their monitor record.
        turn = session.exec(
            select(MonitorTurn).where(
                MonitorTurn.message_id == message_id, MonitorTurn.tenant == principal.tenant
            )
        ).first()
        if turn is None or (turn.subject != principal.id and not principal.is_admin):
            raise missing
