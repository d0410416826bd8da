"""An app for security tests, with an :class:`AuthFactory` on its store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ragd.api.app import create_app
from tests.conftest import make_settings
from tests.fixtures.auth import AuthFactory


def security_settings(tmp_path: Path, **auth: object) -> object:
    """Settings for security tests: no model loaded at start-up, generous limits unless given."""
    return make_settings(tmp_path, llm={"load_on_startup": False}, auth=auth)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(security_settings(tmp_path_factory.mktemp("sec"), auth_failures_per_minute=1000))  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def auth(client: TestClient) -> AuthFactory:
    return AuthFactory(client.app.state.ragd.engine)  # type: ignore[attr-defined]
