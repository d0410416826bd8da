"""SQLModel tables of the metadata store.

Tables only: wire models (``XCreate``, ``XPublic``) live with the routers that use them, and no
route returns a table object. Every schema change goes through an alembic migration in
``ragd/db/migrations``; a test checks that the models and the migrations agree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, String, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC now; every timestamp in the store is UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random, non-enumerable identifier (32 hex characters)."""
    return uuid.uuid4().hex


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, **kw))


def _opt_ts() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


def _enum(default: Any, index: bool = False) -> Any:
    # Enums are stored as plain strings: new values need no ALTER TYPE on PostgreSQL.
    return Field(default=default, sa_type=String(16), index=index)


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


class Role(StrEnum):
    """A principal's role within its tenant."""

    admin = "admin"
    editor = "editor"
    reader = "reader"


class Permission(StrEnum):
    """What a grant allows on one collection."""

    read = "read"
    write = "write"
    admin = "admin"


class DocumentStatus(StrEnum):
    """Lifecycle of one document version."""

    queued = "queued"
    processing = "processing"
    ready = "ready"
    failed = "failed"
    superseded = "superseded"
    deleted = "deleted"


class JobStatus(StrEnum):
    """Lifecycle of a job."""

    queued = "queued"
    running = "running"
    ready = "ready"
    failed = "failed"
    cancelled = "cancelled"


class ModelStage(StrEnum):
    """Model registry stage."""

    staged = "staged"
    production = "production"
    archived = "archived"


class User(SQLModel, table=True):
    """A person or service that signs in; belongs to one tenant."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant", "username"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant: str = Field(index=True, max_length=64)
    username: str = Field(max_length=128)
    password_hash: str | None = Field(default=None, max_length=256)
    role: Role = _enum(Role.reader)
    groups: list[str] = _json(list)
    disabled: bool = False
    created_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    """An API key: shown once, stored as an argon2 hash, looked up by its public prefix."""

    __tablename__ = "api_keys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    prefix: str = Field(index=True, unique=True, max_length=32)
    key_hash: str = Field(max_length=256)
    name: str = Field(default="", max_length=128)
    tenant: str = Field(index=True, max_length=64)
    user_id: str | None = Field(default=None, foreign_key="users.id", max_length=32)
    role: Role = _enum(Role.reader)
    scopes: list[str] = _json(list)
    created_at: datetime = _ts()
    expires_at: datetime | None = _opt_ts()
    revoked_at: datetime | None = _opt_ts()
    last_used_at: datetime | None = _opt_ts()


class Collection(SQLModel, table=True):
    """A named set of documents owned by a tenant."""

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("tenant", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant: str = Field(index=True, max_length=64)
    name: str = Field(max_length=128)
    description: str = Field(default="", max_length=2000)
    created_by: str = Field(default="", max_length=64)
    settings: dict[str, Any] = _json(dict)
    created_at: datetime = _ts()


class Grant(SQLModel, table=True):
    """A permission on one collection for a user, a group or an API key."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("collection_id", "subject_type", "subject"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    collection_id: str = Field(foreign_key="collections.id", index=True, max_length=32)
    subject_type: str = Field(max_length=16)  # "user" | "group" | "key"
    subject: str = Field(max_length=128)
    permission: Permission = _enum(Permission.read)
    created_at: datetime = _ts()


class Document(SQLModel, table=True):
    """A logical document in a collection; its content lives in versions."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    collection_id: str = Field(foreign_key="collections.id", index=True, max_length=32)
    name: str = Field(max_length=512)
    current_version: int = 0  # the version readers see; 0 until the first one is ready
    latest_version: int = 0
    metadata_: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=False)
    )
    created_by: str = Field(default="", max_length=64)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    deleted_at: datetime | None = _opt_ts()


class DocumentVersion(SQLModel, table=True):
    """One uploaded version of a document: content hash, blob and ingestion outcome."""

    __tablename__ = "document_versions"
    __table_args__ = (UniqueConstraint("document_id", "version"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    document_id: str = Field(foreign_key="documents.id", index=True, max_length=32)
    version: int
    content_hash: str = Field(index=True, max_length=64)
    blob_key: str = Field(max_length=128)
    mime_type: str = Field(default="application/octet-stream", max_length=128)
    size_bytes: int = 0
    status: DocumentStatus = _enum(DocumentStatus.queued)
    chunk_count: int = 0
    flagged_chunks: int = 0
    error: str | None = Field(default=None, max_length=4000)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Job(SQLModel, table=True):
    """A durable unit of background work (ingestion, re-embedding, ...), leased by a worker."""

    __tablename__ = "jobs"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    kind: str = Field(index=True, max_length=32)
    tenant: str = Field(index=True, max_length=64)
    payload: dict[str, Any] = _json(dict)
    status: JobStatus = _enum(JobStatus.queued, index=True)
    step: str = Field(default="queued", max_length=32)
    progress_done: int = 0
    progress_total: int = 0
    attempts: int = 0
    max_attempts: int = 3
    error: str | None = Field(default=None, max_length=4000)
    lease_owner: str | None = Field(default=None, max_length=128)
    lease_expires_at: datetime | None = _opt_ts()
    not_before: datetime | None = _opt_ts()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ChatSession(SQLModel, table=True):
    """A conversation owned by one principal."""

    __tablename__ = "chat_sessions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant: str = Field(index=True, max_length=64)
    owner: str = Field(index=True, max_length=64)
    title: str = Field(default="", max_length=256)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ChatMessage(SQLModel, table=True):
    """One turn of a conversation, with what produced it."""

    __tablename__ = "chat_messages"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    session_id: str = Field(foreign_key="chat_sessions.id", index=True, max_length=32)
    role: str = Field(max_length=16)  # "user" | "assistant"
    content: str
    citations: list[dict[str, Any]] = _json(list)
    guard_decisions: list[dict[str, Any]] = _json(list)
    backend: str | None = Field(default=None, max_length=64)
    usage: dict[str, Any] = _json(dict)
    latency_ms: float | None = None
    trace_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts()


class EvalRun(SQLModel, table=True):
    """A stored evaluation run: its exact configuration, metrics and per-item results."""

    __tablename__ = "eval_runs"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    kind: str = Field(index=True, max_length=32)  # "retrieval" | "qa" | "guardrails" | ...
    tenant: str = Field(default="", index=True, max_length=64)
    created_by: str = Field(default="", max_length=64)
    config: dict[str, Any] = _json(dict)
    metrics: dict[str, Any] = _json(dict)
    items: list[dict[str, Any]] = _json(list)
    created_at: datetime = _ts()


class ModelEntry(SQLModel, table=True):
    """A model registry entry: base, prepared, LoRA adapter, embedder or classifier."""

    __tablename__ = "model_entries"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(index=True, max_length=128)
    version: int = 1
    kind: str = Field(max_length=32)  # "base" | "prepared" | "lora" | "embedder" | "classifier"
    stage: ModelStage = _enum(ModelStage.staged)
    path: str = Field(default="", max_length=1024)
    base_model: str | None = Field(default=None, max_length=128)
    training_data_hash: str | None = Field(default=None, max_length=64)
    metrics: dict[str, Any] = _json(dict)
    created_at: datetime = _ts()


class AuditEvent(SQLModel, table=True):
    """An append-only record of who did what, when, from where, with what outcome."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = _ts()
    tenant: str = Field(default="", index=True, max_length=64)
    actor: str = Field(default="", max_length=128)
    action: str = Field(index=True, max_length=64)
    target: str = Field(default="", max_length=256)
    outcome: str = Field(max_length=16)  # "ok" | "denied" | "error" | "blocked"
    ip: str = Field(default="", max_length=64)
    request_id: str = Field(default="", max_length=64)
    detail: dict[str, Any] = _json(dict)


# --- evals and monitoring (issue 9) -------------------------------------------------------------


class MonitorTurn(SQLModel, table=True):
    """What production monitoring keeps of one chat turn (drift detectors and A/B metrics read it)."""

    __tablename__ = "monitor_turns"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant: str = Field(index=True, max_length=64)
    ts: datetime = _ts(index=True)
    message_id: str | None = Field(default=None, index=True, max_length=32)
    session_id: str | None = Field(default=None, max_length=32)
    subject: str = Field(default="", max_length=128)
    backend: str | None = Field(default=None, max_length=64)
    latency_ms: float | None = None
    query_chars: int = 0
    query_embedding: str | None = Field(default=None, max_length=4096)  # int8, base64
    retrieval_scores: list[float] = _json(list)
    top_score: float | None = None
    grounding_score: float | None = None
    abstained: bool = False
    blocked: bool = False
    guard_decisions: list[dict[str, Any]] = _json(list)
    experiment_id: str | None = Field(default=None, index=True, max_length=32)
    variant: str | None = Field(default=None, max_length=64)


class Feedback(SQLModel, table=True):
    """A thumbs up/down (and comment) on one assistant message; one per message and user."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("message_id", "subject"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant: str = Field(index=True, max_length=64)
    message_id: str = Field(index=True, max_length=32)
    subject: str = Field(max_length=128)
    rating: int  # +1 thumbs up, -1 thumbs down
    comment: str = Field(default="", max_length=2000)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class DriftBaseline(SQLModel, table=True):
    """Where a tenant's drift reference window starts (reset by an operator after a change)."""

    __tablename__ = "drift_baselines"

    tenant: str = Field(primary_key=True, max_length=64)
    since: datetime = _ts()
    set_by: str = Field(default="", max_length=128)


class DriftResult(SQLModel, table=True):
    """One drift test of a rolling window against the reference window."""

    __tablename__ = "drift_results"

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True, max_length=64)
    ts: datetime = _ts(index=True)
    detector: str = Field(max_length=32)
    statistic: float | None = None
    p_value: float | None = None
    alarm: bool = False
    reference_n: int = 0
    window_n: int = 0
    detail: dict[str, Any] = _json(dict)


class Experiment(SQLModel, table=True):
    """An A/B experiment over chat variants, with a primary metric and, once stopped, a winner."""

    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("tenant", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant: str = Field(index=True, max_length=64)
    name: str = Field(max_length=128)
    description: str = Field(default="", max_length=2000)
    status: str = Field(default="running", max_length=16)  # "running" | "stopped"
    metric: str = Field(default="feedback_positive", max_length=64)
    winner: str | None = Field(default=None, max_length=64)
    created_by: str = Field(default="", max_length=128)
    created_at: datetime = _ts()
    stopped_at: datetime | None = _opt_ts()


class ExperimentVariant(SQLModel, table=True):
    """One arm of an experiment: its share of traffic and what it changes (model, retrieval, prompt)."""

    __tablename__ = "experiment_variants"
    __table_args__ = (UniqueConstraint("experiment_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    experiment_id: str = Field(foreign_key="experiments.id", index=True, max_length=32)
    name: str = Field(max_length=64)
    weight: float = 1.0
    config: dict[str, Any] = _json(dict)


class ExperimentAssignment(SQLModel, table=True):
    """The variant a user was given; assignment is sticky for the life of the experiment."""

    __tablename__ = "experiment_assignments"
    __table_args__ = (UniqueConstraint("experiment_id", "subject"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    experiment_id: str = Field(foreign_key="experiments.id", index=True, max_length=32)
    subject: str = Field(max_length=128)
    variant: str = Field(max_length=64)
    created_at: datetime = _ts()
