"""Shared fixtures. Tests use real components: SQLite, PostgreSQL, Qdrant local mode, llama.cpp.

Network: every test runs under pytest-socket with only loopback allowed (see pyproject addopts),
so a test that reaches the internet fails.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ragd.config import Settings
from ragd.privacy import disable_telemetry

disable_telemetry()

PG_ADMIN_URL = os.environ.get("RAGD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: The chat model's re-encoded weights (270 MB), made once and shared by every test and server
#: subprocess of the run instead of once per data dir; keyed by the source file's hash.
GGUF_CACHE = Path(tempfile.gettempdir()) / f"ragd-test-gguf-{os.getuid()}"
os.environ["RAGD_LLM__LLAMACPP__WEIGHTS_CACHE"] = str(GGUF_CACHE)
_KEPT_ENV = {"RAGD_TEST_PG_URL", "RAGD_LLM__LLAMACPP__WEIGHTS_CACHE"}


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a test: data under ``tmp_path``, nothing read from the developer's env."""
    base: dict[str, object] = {"env": "test", "data_dir": tmp_path, "log_json": False}
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(autouse=True)
def _clean_ragd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's RAGD_* variables must not leak into tests.
    for key in list(os.environ):
        if key.startswith("RAGD_") and key not in _KEPT_ENV:
            monkeypatch.delenv(key)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a fresh, private schema in the real PostgreSQL test database (dropped after)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # pragma: no cover - only when the server is down
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
    yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings on SQLite and on the real PostgreSQL, for contract suites."""
    if request.param == "sqlite":
        return make_settings(tmp_path)
    return make_settings(tmp_path, db={"url": request.getfixturevalue("pg_url")})
