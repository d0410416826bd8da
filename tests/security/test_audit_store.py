"""The audit log in the store: append-only on SQLite and PostgreSQL; policy queries on both."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from ragd.config import Settings
from ragd.db.engine import build_engine, migrate
from ragd.db.models import AuditEvent, Collection, Grant, Permission, Role
from ragd.security import audit, list_events, readable_collection_ids
from ragd.security.principal import Principal


def test_audit_is_append_only(db_settings: Settings) -> None:
    engine = build_engine(db_settings)
    migrate(engine)
    audit(engine, action="key.create", tenant="acme", actor="u1", target="key:1", detail={"x": "y" * 5000})
    with Session(engine) as s:
        event = s.exec(select(AuditEvent)).one()
        assert len(event.detail["x"]) == 500  # details are clipped
        event.outcome = "error"
        s.add(event)
        with pytest.raises(DBAPIError, match="append-only"):
            s.commit()
    with Session(engine) as s:
        with pytest.raises(DBAPIError, match="append-only"):
            s.delete(s.exec(select(AuditEvent)).one())
            s.commit()
    with Session(engine) as s:
        assert [e.action for e in list_events(s, tenant="acme")] == ["key.create"]
        assert list_events(s, tenant="other") == []
    engine.dispose()


def test_readable_collection_ids_on_both_stores(db_settings: Settings) -> None:
    engine = build_engine(db_settings)
    migrate(engine)
    with Session(engine) as s:
        mine, shared, hidden, foreign = (
            Collection(tenant=t, name=n)
            for t, n in [("a", "mine"), ("a", "shared"), ("a", "hidden"), ("b", "x")]
        )
        s.add_all([mine, shared, hidden, foreign])
        s.flush()
        s.add_all(
            [
                Grant(collection_id=mine.id, subject_type="user", subject="u1", permission=Permission.admin),
                Grant(
                    collection_id=shared.id, subject_type="group", subject="sales", permission=Permission.read
                ),
                Grant(
                    collection_id=foreign.id, subject_type="user", subject="u1", permission=Permission.read
                ),
            ]
        )
        s.commit()
        u1 = Principal(id="u1", tenant="a", role=Role.reader, groups=("sales",))
        assert readable_collection_ids(s, u1) == sorted([mine.id, shared.id])
        nobody = Principal(id="u2", tenant="a", role=Role.editor)
        assert readable_collection_ids(s, nobody) == []
        admin = Principal(id="u3", tenant="a", role=Role.admin)
        assert readable_collection_ids(s, admin) == sorted([mine.id, shared.id, hidden.id])
        key = Principal(id="key:k1", tenant="a", role=Role.reader, key_id="k1", subjects=("key:k1",))
        assert readable_collection_ids(s, key) == []
    engine.dispose()
