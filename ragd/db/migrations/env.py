"""Alembic environment: runs against the engine ragd passes in (see ragd.db.engine)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import ragd.db.models

target_metadata = SQLModel.metadata
engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs batch ALTERs
        compare_type=True,
    )
    context.run_migrations()
