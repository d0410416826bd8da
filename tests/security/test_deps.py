"""The dependencies other routes build on: CurrentPrincipal, role checks, collection resolver."""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import APIRouter
from fastapi.testclient import TestClient

from ragd.api.app import create_app
from ragd.api.deps import (
    AdminPrincipal,
    CurrentPrincipal,
    EditorPrincipal,
    ReadableCollection,
    SessionDep,
    WritableCollection,
)
from ragd.db.models import Permission, Role
from ragd.security import readable_collection_ids
from tests.fixtures.auth import AuthFactory

router = APIRouter(prefix="/t")


@router.get("/me")
def me(p: CurrentPrincipal) -> dict[str, object]:
    return {"id": p.id, "tenant": p.tenant, "role": p.role}


@router.get("/editor")
def editor(p: EditorPrincipal) -> dict[str, str]:
    return {"id": p.id}


@router.get("/admin")
def admin(p: AdminPrincipal) -> dict[str, str]:
    return {"id": p.id}


@router.get("/c/{collection}")
def read_coll(c: ReadableCollection) -> dict[str, str]:
    return {"id": c.id, "permission": c.permission}


@router.post("/c/{collection}")
def write_coll(c: WritableCollection) -> dict[str, str]:
    return {"id": c.id, "permission": c.permission}


@router.get("/readable")
def readable(p: CurrentPrincipal, session: SessionDep) -> list[str]:
    return readable_collection_ids(session, p)


def _app(client: TestClient) -> TestClient:
    if not any(getattr(r, "path", "") == "/t/me" for r in client.app.routes):  # type: ignore[attr-defined]
        client.app.include_router(router)  # type: ignore[attr-defined]
    return client


def test_no_or_bad_credentials_are_401(client: TestClient, auth: AuthFactory) -> None:
    c = _app(client)
    assert c.get("/t/me").status_code == 401
    assert (
        c.get("/t/me", headers={"Authorization": "Bearer ragd_000000000000_" + "x" * 43}).status_code == 401
    )
    assert c.get("/t/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert c.get("/t/me", headers={"X-API-Key": "ragd_zz"}).status_code == 401
    body = c.get("/t/me").json()
    assert body["error"]["code"] == "unauthenticated"


def test_key_in_either_header(client: TestClient, auth: AuthFactory) -> None:
    c = _app(client)
    a = auth.user("acme", Role.editor)
    r1 = c.get("/t/me", headers=a.headers)
    r2 = c.get("/t/me", headers={"X-API-Key": a.key})
    assert r1.status_code == r2.status_code == 200
    assert r1.json() == {"id": a.user_id, "tenant": "acme", "role": "editor"}


def test_roles(client: TestClient, auth: AuthFactory) -> None:
    c = _app(client)
    reader, editor_, admin_ = (auth.user("acme", r) for r in (Role.reader, Role.editor, Role.admin))
    assert c.get("/t/editor", headers=reader.headers).status_code == 403
    assert c.get("/t/editor", headers=editor_.headers).status_code == 200
    assert c.get("/t/admin", headers=editor_.headers).status_code == 403
    assert c.get("/t/admin", headers=admin_.headers).status_code == 200
    scoped = auth.user("acme", Role.admin, scopes=["read"])
    assert c.get("/t/admin", headers=scoped.headers).status_code == 403


def test_collection_resolver_hides_unreadable(client: TestClient, auth: AuthFactory) -> None:
    c = _app(client)
    owner = auth.user("acme", Role.editor)
    coll = auth.collection("acme", "secret-plans", owner=owner)
    stranger = auth.user("acme", Role.editor)
    other_tenant_admin = auth.admin("globex")
    missing = c.get("/t/c/no-such-collection", headers=stranger.headers)
    hidden = c.get("/t/c/secret-plans", headers=stranger.headers)
    foreign = c.get("/t/c/secret-plans", headers=other_tenant_admin.headers)
    assert missing.status_code == hidden.status_code == foreign.status_code == 404
    strip = lambda r: {k: v for k, v in r.json()["error"].items() if k not in ("request_id", "details")}  # noqa: E731
    assert strip(missing) == strip(hidden) == strip(foreign)
    assert c.get("/t/c/secret-plans", headers=owner.headers).json() == {"id": coll.id, "permission": "admin"}
    auth.grant(coll, group="readers-club", permission=Permission.write)
    member = auth.user("acme", Role.reader, groups=["readers-club"])
    assert c.get("/t/c/secret-plans", headers=member.headers).json()["permission"] == "read"  # reader cap
    assert c.post("/t/c/secret-plans", headers=member.headers).status_code == 403
    assert c.get("/t/readable", headers=member.headers).json() == [coll.id]
    assert coll.id not in c.get("/t/readable", headers=other_tenant_admin.headers).json()
    assert coll.id in c.get("/t/readable", headers=auth.admin("acme").headers).json()


def test_revoked_key_is_refused(client: TestClient, auth: AuthFactory) -> None:
    c = _app(client)
    a = auth.user("acme", Role.reader)
    assert c.get("/t/me", headers=a.headers).status_code == 200
    auth.revoke_key(a)
    assert c.get("/t/me", headers=a.headers).status_code == 401


def test_concurrency_limit_per_key_holds_until_the_response_is_sent(tmp_path: Path) -> None:
    from tests.security.conftest import security_settings

    release = threading.Event()
    entered = threading.Event()
    slow = APIRouter()

    @slow.get("/t/slow")
    def slow_route(p: CurrentPrincipal) -> dict[str, str]:
        entered.set()
        release.wait(30)
        return {"id": p.id}

    app = create_app(security_settings(tmp_path, max_concurrent_per_key=1))  # type: ignore[arg-type]
    app.include_router(slow)
    with TestClient(app) as c:
        auth = AuthFactory(c.app.state.ragd.engine)  # type: ignore[attr-defined]
        a, b = auth.user("acme", Role.reader), auth.user("acme", Role.reader)
        first: list[int] = []
        t = threading.Thread(target=lambda: first.append(c.get("/t/slow", headers=a.headers).status_code))
        t.start()
        assert entered.wait(30)
        busy = c.get("/v1/auth/whoami", headers=a.headers)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert c.get("/v1/auth/whoami", headers=b.headers).status_code == 200  # other keys unaffected
        release.set()
        t.join(30)
        assert first == [200]
        assert c.get("/v1/auth/whoami", headers=a.headers).status_code == 200  # slot released
