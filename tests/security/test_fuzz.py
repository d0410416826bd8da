"""Property-based fuzzing of the whole API from its OpenAPI document (schemathesis).

Every operation gets a bounded number of generated requests, valid and invalid, sent with an
admin key of a tenant that owns a collection (so authorized code paths run too). Properties:
no 5xx, and every response matches the document (status, content type, headers, body schema).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from ragd.api.app import create_app
from ragd.db.models import Role
from tests.fixtures.auth import AuthFactory
from tests.security.conftest import security_settings

MAX_EXAMPLES = 12


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except the documented 503 of /readyz (no model is loaded in this app)."""
    if case.path == "/readyz" and response.status_code == 503:
        return None
    return not_a_server_error(ctx, response, case)


# Lax coercion ("0" for false) is FastAPI's documented behaviour, so negative_data_rejection is
# not a property ragd promises; invalid data is still generated and must not cause a 5xx.
CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# The app is built at import (cheap: no I/O until its lifespan starts, which schemathesis does
# once, on the first call); its store is prepared with an admin key by the fixture below.
DATA_DIR = Path(tempfile.gettempdir()) / f"ragd-fuzz-{uuid.uuid4().hex[:8]}"
CONFIG = security_settings(
    DATA_DIR, rate_limit_per_minute=1_000_000, auth_failures_per_minute=1_000_000, max_concurrent_per_key=1000
)
APP = create_app(CONFIG)  # type: ignore[arg-type]
schema = schemathesis.openapi.from_dict(APP.openapi())
_STATE: dict[str, Any] = {}


class _ServeOnly:
    """The app without its lifespan: the fixture's TestClient runs that once for the module
    (schemathesis would start and stop it around every operation's test)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("lifespan is run by the test fixture")  # read as "no lifespan support"
        await self.app(scope, receive, send)


SERVED = _ServeOnly(APP)


@pytest.fixture(scope="module", autouse=True)
def fuzz_tenant() -> Iterator[None]:
    with TestClient(APP) as client:
        auth = AuthFactory(client.app.state.ragd.engine)  # type: ignore[attr-defined]
        admin = auth.user("fuzz", Role.admin)
        auth.collection("fuzz", "fuzzed", owner=admin)
        _STATE["headers"] = admin.headers
        yield
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz(case: Any) -> None:
    case.call_and_validate(app=SERVED, headers=_STATE["headers"], checks=CHECKS)
