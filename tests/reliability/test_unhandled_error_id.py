"""An unhandled error (e.g. the database restarting under a request) is still a clean error:
the JSON envelope with the request id, in the body and the header."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from ragd.api.errors import install_error_handlers
from ragd.api.middleware import RequestContextMiddleware


def test_unhandled_error_carries_the_request_id() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, registry=CollectorRegistry())

    @app.get("/boom")
    def boom() -> None:
        raise ConnectionError("server closed the connection unexpectedly")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
    assert r.status_code == 500
    body = r.json()["error"]
    assert body["code"] == "internal_error"
    assert body["request_id"] and body["request_id"] == r.headers["x-request-id"]
    assert "closed the connection" not in r.text  # never echoed
