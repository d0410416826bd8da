"""The authorization matrix, generated from the app's route table: every route x role x ownership.

A route must declare its rule through ``ragd.api.deps`` (``PUBLIC``, ``CurrentPrincipal``,
``EditorPrincipal``/``AdminPrincipal``, ``ReadableCollection``/``WritableCollection``/
``AdminCollection``); a route without one fails :func:`test_every_route_declares_a_rule`. Each
route is then called by anonymous callers, by every role, with and without a grant on the
collection in its path and from another tenant, and the outcome is checked against its rules.
Requests carry no meaningful body or ids: the checks happen before validation, and a request
that passes them may still end in 404/409/422 for its own reasons, never in 401/403 or a 5xx.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ragd.api.app import create_app
from ragd.api.deps import DeclaredRoute, declared_routes
from ragd.db.models import Permission, Role
from ragd.security.rules import Rule, permission_at_least, role_at_least
from tests.conftest import make_settings
from tests.fixtures.auth import Actor, AuthFactory

PLACEHOLDER_ID = "0" * 32
_PARAM = re.compile(r"{([^}:]+)(:[^}]+)?}")


def _settings(data_dir: Path):  # type: ignore[no-untyped-def]
    return make_settings(
        data_dir,
        llm={"load_on_startup": False},
        auth={
            "rate_limit_per_minute": 1_000_000,
            "auth_failures_per_minute": 1_000_000,
            "max_concurrent_per_key": 1000,
        },
    )


ROUTES = declared_routes(create_app(_settings(Path(tempfile.gettempdir()) / "ragd-matrix-routes")))
API_ROUTES = [(m, r) for r in ROUTES if r.is_api for m in sorted(r.methods - {"HEAD", "OPTIONS"})]


def test_every_route_declares_a_rule() -> None:
    missing = [f"{sorted(r.methods)} {r.path}" for r in ROUTES if not r.rules]
    assert not missing, (
        "routes without an authorization rule (use PUBLIC, CurrentPrincipal, EditorPrincipal, "
        f"AdminPrincipal, ReadableCollection, ... from ragd.api.deps; declare_public for mounts): {missing}"
    )


def test_matrix_covers_the_security_routes() -> None:
    paths = {r.path for r in ROUTES}
    assert {"/healthz", "/openapi.json"} <= paths


@dataclass(frozen=True)
class Caller:
    """One row of the matrix: who calls and how the collection relates to them."""

    label: str
    role: Role | None  # None: anonymous
    ownership: str  # "granted" | "ungranted" | "other-tenant" | "none"


CALLERS = [Caller("anonymous", None, "none")] + [
    Caller(f"{role}/{own}", role, own)
    for role in (Role.reader, Role.editor, Role.admin)
    for own in ("granted", "ungranted", "other-tenant")
]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, AuthFactory, dict[str, Actor]]]:
    with TestClient(create_app(_settings(tmp_path_factory.mktemp("matrix")))) as client:
        auth = AuthFactory(client.app.state.ragd.engine)  # type: ignore[attr-defined]
        actors = {
            c.label: auth.user("tenant-b" if c.ownership == "other-tenant" else "tenant-a", c.role)
            for c in CALLERS
            if c.role is not None
        }
        yield client, auth, actors


def expected(rules: tuple[Rule, ...], caller: Caller) -> str:
    """ "allow", "401", "403", "404" or "403|404" (two failing rules: either may fire first)."""
    if any(r.kind == "public" for r in rules) and not any(r.kind != "public" for r in rules):
        return "allow"
    if caller.role is None:
        return "401"
    fails: set[str] = set()
    for r in rules:
        if r.kind == "role" and r.role is not None and not role_at_least(caller.role, r.role):
            fails.add("403")
        if r.kind == "collection" and r.permission is not None:
            if caller.ownership == "other-tenant" or (
                caller.ownership == "ungranted" and caller.role != Role.admin
            ):
                fails.add("404")
            else:
                effective = Permission.read if caller.role == Role.reader else Permission.admin
                if not permission_at_least(effective, r.permission):
                    fails.add("403")
    return "|".join(sorted(fails)) if fails else "allow"


def _path(route: DeclaredRoute, collection: str) -> str:
    def fill(m: re.Match[str]) -> str:
        return collection if m.group(1) == "collection" else PLACEHOLDER_ID

    return _PARAM.sub(fill, route.path)


@pytest.mark.parametrize(("method", "route"), API_ROUTES, ids=[f"{m} {r.path}" for m, r in API_ROUTES])
def test_route_matrix(
    method: str, route: DeclaredRoute, world: tuple[TestClient, AuthFactory, dict[str, Actor]]
) -> None:
    client, auth, actors = world
    rules = route.rules
    assert rules, f"{method} {route.path} declares no rule"
    problems = []
    for caller in CALLERS:
        actor = actors.get(caller.label)
        collection = ""
        if "{collection}" in route.path:
            # A fresh collection per call: an allowed DELETE must not spoil the next row.
            owner_tenant = "tenant-a"
            coll = auth.collection(owner_tenant)
            if actor is not None and caller.ownership == "granted":
                auth.grant(coll, actor, permission=Permission.admin)
            collection = coll.name
        headers = actor.headers if actor is not None else {}
        body = {} if method in ("POST", "PUT", "PATCH") else None
        r = client.request(method, _path(route, collection), headers=headers, json=body)
        want = expected(rules, caller)
        got = str(r.status_code)
        if r.status_code == 500:
            problems.append(f"{caller.label}: 500 (unhandled error)")
        elif want == "allow":
            hidden = (
                r.status_code == 404 and r.json().get("error", {}).get("message") == "collection not found"
            )
            if r.status_code in (401, 403) or hidden:
                problems.append(f"{caller.label}: want allowed, got {got}")
        elif got not in want.split("|"):
            problems.append(f"{caller.label}: want {want}, got {got}")
    rule_names = [r.describe() for r in rules]
    assert not problems, f"{method} {route.path} {rule_names}: " + "; ".join(problems)
