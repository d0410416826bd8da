"""The security routes end to end: tokens, keys, users, collections, grants, audit; tenant isolation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ragd.db.models import Role
from tests.fixtures.auth import AuthFactory


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_password_sign_in_gives_a_working_short_lived_token(client: TestClient, auth: AuthFactory) -> None:
    u = auth.user("acme", Role.editor, username="erin")
    r = client.post("/v1/auth/token", json={"tenant": "acme", "username": "erin", "password": u.password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    me = client.get("/v1/auth/whoami", headers=_bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == u.user_id and me.json()["auth_method"] == "jwt"
    # The same user in another tenant does not exist; a wrong password is the same 401.
    for bad in (
        {"tenant": "globex", "username": "erin", "password": u.password},
        {"tenant": "acme", "username": "erin", "password": "wrong-password"},
    ):
        r = client.post("/v1/auth/token", json=bad)
        assert r.status_code == 401 and r.json()["error"]["message"] == "invalid credentials"


def test_token_sign_in_rejects_hostile_input(client: TestClient) -> None:
    for body in (
        {},
        {"tenant": "", "username": "", "password": ""},
        {"tenant": "a" * 10_000},
        {"tenant": "acme", "username": "../../etc/passwd", "password": "x"},
        {"tenant": "acme", "username": "x", "password": "p" * 5000},
    ):
        r = client.post("/v1/auth/token", json=body)
        assert r.status_code == 422, (body, r.text)
        assert "p" * 100 not in r.text  # input is never echoed
    r = client.post("/v1/auth/token", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_disabled_user_loses_token_and_keys(client: TestClient, auth: AuthFactory) -> None:
    admin = auth.admin("acme")
    u = auth.user("acme", Role.reader)
    tok = client.post(
        "/v1/auth/token", json={"tenant": "acme", "username": u.username, "password": u.password}
    )
    token = tok.json()["access_token"]
    assert client.delete(f"/v1/users/{u.user_id}", headers=admin.headers).status_code == 204
    assert client.get("/v1/auth/whoami", headers=_bearer(token)).status_code == 401
    assert client.get("/v1/auth/whoami", headers=u.headers).status_code == 401


def test_keys_are_shown_once_scoped_and_revocable(client: TestClient, auth: AuthFactory) -> None:
    u = auth.user("acme", Role.editor)
    r = client.post("/v1/keys", json={"name": "ci", "role": "reader", "scopes": ["read"]}, headers=u.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("ragd_") and created["role"] == "reader" and created["scopes"] == ["read"]
    listed = client.get("/v1/keys", headers=u.headers).json()
    assert created["id"] in {k["id"] for k in listed}
    assert key not in client.get(f"/v1/keys/{created['id']}", headers=u.headers).text
    me = client.get("/v1/auth/whoami", headers=_bearer(key)).json()
    assert me["role"] == "reader" and me["id"] == u.user_id
    # No escalation: stronger role or a service key are refused for non-admins.
    assert client.post("/v1/keys", json={"role": "admin"}, headers=u.headers).status_code == 403
    assert client.post("/v1/keys", json={"service": True}, headers=u.headers).status_code == 403
    # A read-scoped key cannot mint a broader key.
    assert client.post("/v1/keys", json={"scopes": ["write"]}, headers=_bearer(key)).status_code == 403
    assert client.delete(f"/v1/keys/{created['id']}", headers=u.headers).status_code == 204
    assert client.get("/v1/auth/whoami", headers=_bearer(key)).status_code == 401


def test_expired_key_is_refused(client: TestClient, auth: AuthFactory) -> None:
    from datetime import timedelta

    from ragd.db.models import utcnow

    u = auth.user("acme", Role.reader, key_expires_at=utcnow() - timedelta(seconds=1))
    assert client.get("/v1/auth/whoami", headers=u.headers).status_code == 401


def test_admin_manages_users_and_groups(client: TestClient, auth: AuthFactory) -> None:
    admin = auth.admin("acme")
    r = client.post(
        "/v1/users",
        json={"username": "gina", "password": "correct horse battery", "role": "reader", "groups": ["sales"]},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert "correct horse" not in r.text and "argon2" not in r.text and "password_hash" not in r.text
    assert client.post("/v1/users", json={"username": "gina"}, headers=admin.headers).status_code == 409
    r = client.patch(
        f"/v1/users/{uid}", json={"groups": ["sales", "emea"], "role": "editor"}, headers=admin.headers
    )
    assert r.json()["groups"] == ["emea", "sales"] and r.json()["role"] == "editor"
    assert [u["id"] for u in client.get("/v1/users?group=emea", headers=admin.headers).json()] == [uid]
    bad = client.patch(f"/v1/users/{uid}", json={"groups": ["bad group!"]}, headers=admin.headers)
    assert bad.status_code == 422
    assert (
        client.patch(f"/v1/users/{admin.user_id}", json={"role": "reader"}, headers=admin.headers).status_code
        == 403
    )
    # Non-admins see only themselves.
    reader = auth.user("acme", Role.reader)
    assert client.get(f"/v1/users/{uid}", headers=reader.headers).status_code == 404
    assert client.get(f"/v1/users/{reader.user_id}", headers=reader.headers).status_code == 200
    assert client.get("/v1/users", headers=reader.headers).status_code == 403


def test_self_service_password_change(client: TestClient, auth: AuthFactory) -> None:
    u = auth.user("acme", Role.reader)
    body = {"current_password": "not-it-at-all", "new_password": "a much better password"}
    assert client.post("/v1/users/me/password", json=body, headers=u.headers).status_code == 403
    body["current_password"] = u.password or ""
    assert client.post("/v1/users/me/password", json=body, headers=u.headers).status_code == 204
    ok = client.post(
        "/v1/auth/token",
        json={"tenant": "acme", "username": u.username, "password": "a much better password"},
    )
    assert ok.status_code == 200


def test_collections_and_grants(client: TestClient, auth: AuthFactory) -> None:
    ed = auth.user("acme", Role.editor)
    r = client.post("/v1/collections", json={"name": "handbook", "description": "HR"}, headers=ed.headers)
    assert r.status_code == 201 and r.json()["permission"] == "admin"
    assert client.post("/v1/collections", json={"name": "handbook"}, headers=ed.headers).status_code == 409
    for bad in ("", "../etc", "a" * 200, "has space", "x/y"):
        assert client.post("/v1/collections", json={"name": bad}, headers=ed.headers).status_code == 422
    reader = auth.user("acme", Role.reader, groups=["hr"])
    assert client.get("/v1/collections/handbook", headers=reader.headers).status_code == 404
    assert "handbook" not in {c["name"] for c in client.get("/v1/collections", headers=reader.headers).json()}
    g = client.put(
        "/v1/collections/handbook/grants",
        json={"subject_type": "group", "subject": "hr", "permission": "write"},
        headers=ed.headers,
    )
    assert g.status_code == 200, g.text
    got = client.get("/v1/collections/handbook", headers=reader.headers)
    assert got.status_code == 200 and got.json()["permission"] == "read"  # readers are capped at read
    assert (
        client.patch(
            "/v1/collections/handbook", json={"description": "x"}, headers=reader.headers
        ).status_code
        == 403
    )
    # Grants to subjects of another tenant are refused.
    other = auth.user("globex", Role.reader)
    r = client.put(
        "/v1/collections/handbook/grants",
        json={"subject_type": "user", "subject": other.user_id},
        headers=ed.headers,
    )
    assert r.status_code == 400
    grants = client.get("/v1/collections/handbook/grants", headers=ed.headers).json()
    gid = next(x["id"] for x in grants if x["subject"] == "hr")
    assert client.delete(f"/v1/collections/handbook/grants/{gid}", headers=ed.headers).status_code == 204
    assert client.get("/v1/collections/handbook", headers=reader.headers).status_code == 404
    assert client.delete("/v1/collections/handbook", headers=ed.headers).status_code == 204
    assert client.get("/v1/collections/handbook", headers=ed.headers).status_code == 404


def test_audit_log_is_admin_only_and_tenant_scoped(client: TestClient, auth: AuthFactory) -> None:
    a_admin, b_admin = auth.admin("tenant-audit-a"), auth.admin("tenant-audit-b")
    client.post("/v1/collections", json={"name": "audited"}, headers=a_admin.headers)
    client.post(
        "/v1/auth/token",
        json={"tenant": "tenant-audit-a", "username": a_admin.username, "password": "wrong-password"},
    )
    events = client.get("/v1/audit", headers=a_admin.headers).json()
    actions = {(e["action"], e["outcome"]) for e in events}
    assert ("collection.create", "ok") in actions and ("auth.failure", "denied") in actions
    create = next(e for e in events if e["action"] == "collection.create")
    assert create["actor"] == a_admin.user_id and create["ip"] and create["request_id"]
    assert client.get("/v1/audit", headers=b_admin.headers).json() == [] or all(
        e["target"] != "collection:audited" for e in client.get("/v1/audit", headers=b_admin.headers).json()
    )
    editor = auth.user("tenant-audit-a", Role.editor)
    assert client.get("/v1/audit", headers=editor.headers).status_code == 403
    assert client.get("/v1/audit?limit=100000", headers=a_admin.headers).status_code == 422
    for verb in ("delete", "put", "patch"):
        assert getattr(client, verb)("/v1/audit", headers=a_admin.headers).status_code == 405


@pytest.mark.parametrize("path", ["/v1/keys/{key}", "/v1/users/{user}"])
def test_other_tenants_objects_are_invisible(client: TestClient, auth: AuthFactory, path: str) -> None:
    victim = auth.user("victim-co", Role.admin)
    attacker = auth.admin("attacker-co")
    url = path.format(key=victim.key_id, user=victim.user_id)
    assert client.get(url, headers=attacker.headers).status_code == 404
    assert client.delete(url, headers=attacker.headers).status_code == 404
    assert client.get("/v1/auth/whoami", headers=victim.headers).status_code == 200  # untouched
    ids = {k["id"] for k in client.get("/v1/keys", headers=attacker.headers).json()}
    assert victim.key_id not in ids
    users = {u["id"] for u in client.get("/v1/users", headers=attacker.headers).json()}
    assert victim.user_id not in users


def test_collections_of_other_tenants_are_invisible(client: TestClient, auth: AuthFactory) -> None:
    owner = auth.user("victim-co", Role.editor)
    auth.collection("victim-co", "victim-secrets", owner=owner)
    attacker = auth.admin("attacker-co")
    for method, url in [
        ("GET", "/v1/collections/victim-secrets"),
        ("DELETE", "/v1/collections/victim-secrets"),
        ("GET", "/v1/collections/victim-secrets/grants"),
    ]:
        assert client.request(method, url, headers=attacker.headers).status_code == 404
    assert "victim-secrets" not in {
        c["name"] for c in client.get("/v1/collections", headers=attacker.headers).json()
    }
    # The attacker may create its own collection of the same name: names are per tenant.
    r = client.post("/v1/collections", json={"name": "victim-secrets"}, headers=attacker.headers)
    assert r.status_code == 201
    assert (
        client.get("/v1/collections/victim-secrets", headers=owner.headers).json()["created_by"]
        == owner.user_id
    )
