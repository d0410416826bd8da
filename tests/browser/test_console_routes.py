"""The console's HTTP surface without a browser: public page shells, static assets, CSP, and the
two console-only read routes with good, empty, malformed, huge and foreign input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragd.api.app import create_app
from ragd.db.models import Role
from ragd.evals.records import record_eval_run
from tests.conftest import make_settings
from tests.fixtures.auth import AuthFactory

PAGES = ["/ui", "/ui/", "/ui/collections", "/ui/upload", "/ui/chat", "/ui/evals", "/ui/monitoring"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = make_settings(
        tmp_path_factory.mktemp("console-routes"), qdrant={"mode": "memory"}, llm={"load_on_startup": False}
    )
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.ragd.engine  # type: ignore[attr-defined]
        auth = AuthFactory(engine)
        admin, reader, other = auth.admin("acme"), auth.user("acme", Role.reader), auth.admin("globex")
        items = [{"id": f"q{i}", "f1": i / 10} for i in range(10)]
        run = record_eval_run(engine, kind="qa", config={}, metrics={"f1": 0.45}, items=items, tenant="acme")
        yield {"client": client, "admin": admin, "reader": reader, "other": other, "run": run}


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_public_shells_without_inline_code(world: dict[str, Any], path: str) -> None:
    r = world["client"].get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, "inline script"
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    assert "http://" not in html and "https://" not in html, "nothing is loaded from elsewhere"


def test_static_assets_are_served_and_unknown_ones_404(world: dict[str, Any]) -> None:
    c = world["client"]
    assert c.get("/ui/static/console.js").status_code == 200
    assert c.get("/ui/static/console.css").status_code == 200
    assert c.get("/ui/static/nope.js").status_code == 404
    assert c.get("/ui/static/../__init__.py").status_code == 404
    assert c.get("/ui/nope").status_code == 404


def test_console_script_never_uses_inner_html() -> None:
    js = (Path(__file__).resolve().parents[2] / "ragd/api/console/static/console.js").read_text()
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink


def test_eval_report_download(world: dict[str, Any]) -> None:
    c, run = world["client"], world["run"]
    r = c.get(f"/ui/api/evals/report?runs={run.id}", headers=world["reader"].headers)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert run.id in r.text and "<svg" in r.text


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 422),
        ("?runs=", 422),
        ("?runs=zzzzzzzz", 400),
        ("?runs=abc", 422),
        ("?runs=" + ",".join(["abcdef"] * 5), 400),
        ("?runs=" + "a" * 5000, 422),
        ("?runs=<script>alert(1)</script>", 400),
        ("?runs=abcdef0123", 404),
    ],
)
def test_eval_report_bad_input(world: dict[str, Any], query: str, status: int) -> None:
    r = world["client"].get("/ui/api/evals/report" + query, headers=world["reader"].headers)
    assert r.status_code in (status, 414) and r.json()["error"]["message"]


def test_eval_report_of_another_tenant_is_not_found(world: dict[str, Any]) -> None:
    r = world["client"].get(f"/ui/api/evals/report?runs={world['run'].id}", headers=world["other"].headers)
    assert r.status_code == 404


def test_drift_history_is_for_admins(world: dict[str, Any]) -> None:
    c = world["client"]
    assert c.get("/ui/api/drift/history").status_code == 401
    assert c.get("/ui/api/drift/history", headers=world["reader"].headers).status_code == 403
    r = c.get("/ui/api/drift/history", headers=world["admin"].headers)
    assert r.status_code == 200 and r.json() == []
    for bad in ("?limit=0", "?limit=-1", "?limit=99999", "?limit=abc"):
        assert c.get("/ui/api/drift/history" + bad, headers=world["admin"].headers).status_code == 422
