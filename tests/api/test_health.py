"""App factory, health endpoints, metrics and the error envelope, on the real embedded stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ragd.api.app import create_app
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("app"))
    with TestClient(create_app(settings)) as c:
        yield c


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_reports_every_component(client: TestClient) -> None:
    r = client.get("/readyz")
    body = r.json()
    assert r.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["components"]) == {"database", "vector_store", "job_queue", "llm"}
    assert all(c["ok"] for c in body["components"].values())
    assert body["components"]["llm"]["info"]["model"].endswith(".gguf")


def test_request_id_and_security_headers(client: TestClient) -> None:
    r = client.get("/healthz")
    assert len(r.headers["x-request-id"]) == 32
    assert r.headers["x-content-type-options"] == "nosniff"
    assert (
        client.get("/healthz", headers={"X-Request-ID": "trace-123"}).headers["x-request-id"] == "trace-123"
    )
    # A hostile id is replaced, never reflected.
    hostile = client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert "<" not in hostile.headers["x-request-id"]


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.get("/healthz")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert 'ragd_http_requests_total{method="GET",route="/healthz",status="200"}' in r.text


def test_unknown_route_gets_envelope(client: TestClient) -> None:
    r = client.get("/no/such/route")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "not_found" and err["request_id"] == r.headers["x-request-id"]


def test_wrong_method_gets_envelope(client: TestClient) -> None:
    r = client.post("/healthz", content=b"{not json")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_openapi_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert {"/healthz", "/readyz", "/metrics"} <= set(doc["paths"])


def test_readyz_degrades_when_a_component_fails(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as c:
        c.app.state.ragd.jobs.stop()  # type: ignore[attr-defined]
        r = c.get("/readyz")
        assert r.status_code == 503
        comps = r.json()["components"]
        assert comps["job_queue"]["ok"] is False and comps["database"]["ok"] is True


def test_database_outage_is_a_503_with_retry_after(tmp_path: Path) -> None:
    """A request that hits a dead database gets a clean, retryable 503 with its request id."""
    from fastapi import APIRouter
    from sqlalchemy import create_engine, text

    from ragd.api.deps import PUBLIC

    app = create_app(make_settings(tmp_path))
    probe = APIRouter()
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})

    @probe.get("/probe-db", dependencies=[PUBLIC])
    def probe_db() -> dict[str, str]:
        with dead.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {}

    app.include_router(probe)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/probe-db")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    body = r.json()["error"]
    assert body["code"] == "service_unavailable" and body["request_id"] == r.headers["x-request-id"]
    assert "127.0.0.1" not in r.text and "nobody" not in r.text
