"""Contract suite of the metadata store, run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from ragd.config import Settings
from ragd.db import (
    ApiKey,
    AuditEvent,
    ChatMessage,
    ChatSession,
    Collection,
    Document,
    DocumentVersion,
    EvalRun,
    Grant,
    Job,
    JobStatus,
    ModelEntry,
    Permission,
    Role,
    User,
    build_engine,
    migrate,
    session_scope,
    utcnow,
)

TABLES = {
    "users",
    "api_keys",
    "collections",
    "grants",
    "documents",
    "document_versions",
    "jobs",
    "chat_sessions",
    "chat_messages",
    "eval_runs",
    "model_entries",
    "audit_events",
}


@pytest.fixture
def engine(db_settings: Settings) -> Iterator[Engine]:
    eng = build_engine(db_settings)
    migrate(eng)
    yield eng
    eng.dispose()


def test_migrations_create_every_table(engine: Engine) -> None:
    assert TABLES <= set(inspect(engine).get_table_names())


def test_models_match_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"models and migrations disagree; add a migration: {diff}"


def test_migrate_is_idempotent(engine: Engine) -> None:
    migrate(engine)
    assert TABLES <= set(inspect(engine).get_table_names())


def test_round_trip_of_every_table(engine: Engine) -> None:
    with session_scope(engine) as s:
        user = User(tenant="acme", username="ana", role=Role.editor, groups=["ops", "é-ü"])
        s.add(user)
        s.flush()
        key = ApiKey(
            prefix="rk_abc",
            key_hash="h",
            tenant="acme",
            user_id=user.id,
            role=Role.admin,
            scopes=["chat"],
            expires_at=utcnow() + timedelta(days=1),
        )
        coll = Collection(tenant="acme", name="handbook", settings={"policy": {"pii": "redact"}})
        s.add_all([key, coll])
        s.flush()
        s.add(Grant(collection_id=coll.id, subject_type="group", subject="ops", permission=Permission.write))
        doc = Document(collection_id=coll.id, name="a.pdf", metadata_={"lang": "en"})
        s.add(doc)
        s.flush()
        s.add(DocumentVersion(document_id=doc.id, version=1, content_hash="ab" * 32, blob_key="ab/cd"))
        s.add(Job(kind="ingest", tenant="acme", payload={"document_id": doc.id}))
        chat = ChatSession(tenant="acme", owner=user.id)
        s.add(chat)
        s.flush()
        s.add(
            ChatMessage(
                session_id=chat.id,
                role="assistant",
                content="hi [1]",
                citations=[{"document": doc.id, "score": 0.5}],
                usage={"prompt_tokens": 3},
            )
        )
        s.add(EvalRun(kind="retrieval", metrics={"ndcg@10": 0.7}, items=[{"q": "1", "ndcg": 1.0}]))
        s.add(ModelEntry(name="smollm2", kind="base", metrics={"f1": 0.1}))
        s.add(AuditEvent(action="key.create", outcome="ok", actor=user.id, detail={"role": "admin"}))

    with Session(engine) as s:
        got_user = s.exec(select(User).where(User.username == "ana")).one()
        assert got_user.groups == ["ops", "é-ü"] and got_user.role == Role.editor
        got_key = s.exec(select(ApiKey)).one()
        assert got_key.scopes == ["chat"]
        assert (
            got_key.expires_at is not None and got_key.expires_at.tzinfo is not None
        ) or engine.dialect.name == "sqlite"
        assert s.exec(select(Collection)).one().settings == {"policy": {"pii": "redact"}}
        assert s.exec(select(Grant)).one().permission == Permission.write
        assert s.exec(select(Document)).one().metadata_ == {"lang": "en"}
        assert s.exec(select(Job)).one().status == JobStatus.queued
        assert s.exec(select(ChatMessage)).one().citations[0]["score"] == 0.5
        assert s.exec(select(EvalRun)).one().metrics["ndcg@10"] == 0.7
        assert s.exec(select(ModelEntry)).one().version == 1
        assert s.exec(select(AuditEvent)).one().id is not None


@pytest.mark.parametrize(
    "make",
    [
        lambda: [User(tenant="t", username="x"), User(tenant="t", username="x")],
        lambda: [Collection(tenant="t", name="c"), Collection(tenant="t", name="c")],
        lambda: [ApiKey(prefix="p", key_hash="a", tenant="t"), ApiKey(prefix="p", key_hash="b", tenant="t")],
        lambda: [ModelEntry(name="m", kind="base"), ModelEntry(name="m", kind="base")],
    ],
    ids=["user", "collection", "key-prefix", "model-version"],
)
def test_uniqueness_is_enforced(engine: Engine, make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        for row in make():
            s.add(row)
            s.flush()


def test_same_name_in_two_tenants_is_fine(engine: Engine) -> None:
    with session_scope(engine) as s:
        s.add_all([Collection(tenant="a", name="c"), Collection(tenant="b", name="c")])
    with Session(engine) as s:
        assert len(s.exec(select(Collection)).all()) == 2


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        s.add(Grant(collection_id="missing", subject_type="user", subject="u", permission=Permission.read))
        s.flush()


def test_rollback_loses_nothing_committed(engine: Engine) -> None:
    with session_scope(engine) as s:
        s.add(Collection(tenant="t", name="kept"))
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        s.add(Collection(tenant="t", name="dropped"))
        s.flush()
        raise RuntimeError("boom")
    with Session(engine) as s:
        assert [c.name for c in s.exec(select(Collection))] == ["kept"]
