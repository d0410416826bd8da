"""Tenant isolation across every endpoint, generated from the route table.

Tenant A uploads a document with a unique canary, searches it, and leaves keys, users, grants,
jobs and audit entries behind. Tenant B (admin and reader) then calls every route of the app
with A's object ids and collection name in every path parameter, calls every list endpoint and
searches for the canary. Nothing of A may be reachable: no 2xx on A's objects, none of A's ids
or the canary in any response, and A's objects still intact afterwards. Routes added later are
covered without changing this test; a route that needs a body gets ``{}`` and must still 404
(or refuse the body) rather than act on A's object.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragd.api.app import create_app
from ragd.api.deps import DeclaredRoute, declared_routes
from ragd.db.models import Role
from tests.conftest import make_settings
from tests.fixtures.auth import Actor, AuthFactory

CANARY = f"canary{uuid.uuid4().hex[:12]}"
_ID = re.compile(r"\b[0-9a-f]{32}\b")
_PARAM = re.compile(r"{([^}:]+)(:[^}]+)?}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = make_settings(
        tmp_path_factory.mktemp("isolation"),
        llm={"load_on_startup": False},
        qdrant={"mode": "memory"},
        auth={"rate_limit_per_minute": 100_000, "auth_failures_per_minute": 100_000},
    )
    with TestClient(create_app(settings)) as client:
        auth = AuthFactory(client.app.state.ragd.engine)  # type: ignore[attr-defined]
        a_admin, a_reader = auth.admin("tenant-a"), auth.user("tenant-a", Role.reader, groups=["team"])
        b_admin, b_reader = auth.admin("tenant-b"), auth.user("tenant-b", Role.reader, groups=["team"])
        a_coll = auth.collection("tenant-a", "a-private", owner=a_admin)
        auth.grant(a_coll, group="team")
        # A collection name both tenants use: each must only ever see its own.
        auth.collection("tenant-a", "same-name", owner=a_admin)
        auth.collection("tenant-b", "same-name", owner=b_admin)
        text = f"# Lighthouses\n\nThe {CANARY} lighthouse keeper logs the weather every night.\n".encode()
        up = client.post(
            "/v1/collections/a-private/documents",
            headers=a_admin.headers,
            files=[("files", ("a.md", io.BytesIO(text), "text/markdown"))],
        )
        assert up.status_code == 202, up.text
        job = up.json()["files"][0]["job_id"]
        deadline = time.monotonic() + 300
        while client.get(f"/v1/jobs/{job}", headers=a_admin.headers).json()["status"] not in (
            "ready",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        hit = client.post(
            "/v1/search", headers=a_reader.headers, json={"query": f"{CANARY} lighthouse keeper"}
        )
        assert hit.status_code == 200 and CANARY in hit.text, hit.text  # A itself can find it
        client.post("/v1/keys", headers=a_admin.headers, json={"name": "a-extra"})
        client.post("/v1/auth/token", json={"tenant": "tenant-a", "username": "nobody", "password": "x"})
        routes = [r for r in declared_routes(client.app) if r.is_api]  # type: ignore[arg-type]
        a_ids = _harvest(client, routes, a_admin) | {a_admin.key_id, a_admin.user_id or "", a_coll.id}
        yield {
            "client": client,
            "routes": routes,
            "a_ids": a_ids - {""},
            "a_admin": a_admin,
            "b": [b_admin, b_reader],
            "a_reader": a_reader,
        }


def _ids_in(payload: Any) -> set[str]:
    """Values of ``*id`` fields (request ids excepted: they name requests, not objects)."""
    out: set[str] = set()
    if isinstance(payload, dict):
        for k, v in payload.items():
            if isinstance(v, str) and k.endswith("id") and k != "request_id" and _ID.fullmatch(v):
                out.add(v)
            else:
                out |= _ids_in(v)
    elif isinstance(payload, list):
        for v in payload:
            out |= _ids_in(v)
    return out


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _harvest(client: TestClient, routes: list[DeclaredRoute], actor: Actor) -> set[str]:
    """Every object id tenant A can see through its list and detail endpoints."""
    ids: set[str] = set()
    for r in routes:
        if "GET" in r.methods and "{" not in r.path:
            ids |= _ids_in(_json(client.get(r.path, headers=actor.headers)))
    for r in routes:
        if "GET" in r.methods and "{" in r.path and "{collection}" not in r.path:
            for value in sorted(ids):
                ids |= _ids_in(_json(client.get(_fill(r.path, value, "a-private"), headers=actor.headers)))
    return ids


def _fill(path: str, value: str, collection: str) -> str:
    return _PARAM.sub(lambda m: collection if m.group(1) == "collection" else value, path)


def test_tenant_b_cannot_reach_anything_of_tenant_a(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    a_ids: set[str] = world["a_ids"]
    assert len(a_ids) >= 5, a_ids  # documents, jobs, keys, users, collections, grants
    problems: list[str] = []
    for actor in world["b"]:
        for r in world["routes"]:
            for method in sorted(r.methods - {"HEAD", "OPTIONS"}):
                if "{" not in r.path:
                    continue
                for value in sorted(a_ids):
                    url = _fill(r.path, value, "a-private")
                    body = {} if method in ("POST", "PUT", "PATCH") else None
                    resp = client.request(method, url, headers=actor.headers, json=body)
                    if resp.status_code < 300 or resp.status_code >= 500:
                        problems.append(f"{actor.role} {method} {url} -> {resp.status_code}")
                    if CANARY in resp.text or a_ids & set(_ID.findall(resp.text)) - {value}:
                        problems.append(f"{actor.role} {method} {url} leaks tenant A data")
    assert not problems, problems[:20]


def test_tenant_b_lists_and_searches_see_nothing_of_a(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    a_ids: set[str] = world["a_ids"]
    for actor in world["b"]:
        for r in world["routes"]:
            if "GET" in r.methods and "{" not in r.path:
                text = client.get(r.path, headers=actor.headers).text
                assert CANARY not in text and not (a_ids & set(_ID.findall(text))), (actor.role, r.path)
        for body in (
            {"query": f"{CANARY} lighthouse keeper"},
            {"query": CANARY, "collections": ["a-private"]},
            {"query": CANARY, "collections": ["same-name"]},
        ):
            resp = client.post("/v1/search", headers=actor.headers, json=body)
            assert resp.status_code in (200, 404), resp.text
            assert CANARY not in resp.text and not (a_ids & set(_ID.findall(resp.text)))


def test_tenant_a_is_intact_afterwards(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    a_reader: Actor = world["a_reader"]
    assert client.get("/v1/collections/a-private", headers=a_reader.headers).status_code == 200
    hit = client.post("/v1/search", headers=a_reader.headers, json={"query": f"{CANARY} lighthouse keeper"})
    assert CANARY in hit.text
    assert client.get("/v1/auth/whoami", headers=world["a_admin"].headers).status_code == 200
