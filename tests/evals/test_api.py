"""HTTP routes of evals and monitoring: tenant scoping, roles, bad input, drift, experiments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ragd.api.app import create_app
from ragd.db import session_scope
from ragd.db.models import ChatMessage, ChatSession, Role
from ragd.evals.records import record_eval_run
from tests.conftest import make_settings
from tests.fixtures.auth import Actor, AuthFactory


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("evals-api"),
        llm={"load_on_startup": False},
        evals={"drift_reference_size": 20, "drift_window_size": 20, "drift_check_interval_s": 0},
        auth={"rate_limit_per_minute": 100_000},
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def auth(client: TestClient) -> AuthFactory:
    return AuthFactory(client.app.state.ragd.engine)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def actors(auth: AuthFactory) -> dict[str, Actor]:
    return {
        "admin": auth.admin("acme"),
        "reader": auth.user("acme", Role.reader),
        "outsider": auth.admin("globex"),
    }


def _engine(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app.state.ragd.engine  # type: ignore[attr-defined]


def test_eval_runs_are_tenant_scoped(client: TestClient, actors: dict[str, Actor]) -> None:
    items_a = [{"id": str(i), "f1": 0.5 + 0.001 * i} for i in range(30)]
    items_b = [{"id": str(i), "f1": 0.6 + 0.001 * i} for i in range(30)]
    a = record_eval_run(
        _engine(client), kind="qa", config={}, metrics={"f1": 0.51}, items=items_a, tenant="acme"
    )
    b = record_eval_run(
        _engine(client), kind="qa", config={}, metrics={"f1": 0.61}, items=items_b, tenant="acme"
    )
    reader = actors["reader"].headers
    listed = client.get("/v1/evals", headers=reader).json()
    assert {r["id"] for r in listed} >= {a.id, b.id} and "items" not in listed[0]
    got = client.get(f"/v1/evals/{a.id}", headers=reader).json()
    assert len(got["items"]) == 30 and got["config"]["code"]
    cmp = client.get(f"/v1/evals/{a.id}/compare/{b.id}", headers=reader).json()
    f1 = next(d for d in cmp["deltas"] if d["metric"] == "f1")
    assert f1["verdict"] == "better" and f1["ci_low"] > 0
    other = client.get(f"/v1/evals/{a.id}", headers=actors["outsider"].headers)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert client.get("/v1/evals", headers=actors["outsider"].headers).json() == []
    assert client.get("/v1/evals").status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/v1/evals/xyz",
        "/v1/evals/" + "a" * 40,
        "/v1/evals/abc",
        "/v1/evals?limit=0",
        "/v1/evals?limit=99999",
        "/v1/evals?kind=" + "k" * 100,
        "/v1/evals/abcdef0/compare/zz",
    ],
)
def test_eval_routes_reject_bad_input(client: TestClient, actors: dict[str, Actor], path: str) -> None:
    response = client.get(path, headers=actors["reader"].headers)
    assert response.status_code in (404, 422), response.text
    assert "error" in response.json()


def _assistant_message(client: TestClient, owner: Actor) -> str:
    with session_scope(_engine(client)) as s:
        chat = ChatSession(tenant=owner.tenant, owner=owner.principal.id)
        s.add(chat)
        s.flush()
        msg = ChatMessage(session_id=chat.id, role="assistant", content="answer")
        s.add(msg)
        s.flush()
        return msg.id


def test_feedback(client: TestClient, actors: dict[str, Actor]) -> None:
    reader = actors["reader"]
    message = _assistant_message(client, reader)
    ok = client.post(
        "/v1/feedback",
        headers=reader.headers,
        json={"message_id": message, "rating": "up", "comment": "helpful"},
    )
    assert ok.status_code == 201 and ok.json()["rating"] == "up"
    again = client.post(
        "/v1/feedback", headers=reader.headers, json={"message_id": message, "rating": "down"}
    )
    assert again.json()["id"] == ok.json()["id"] and again.json()["rating"] == "down"
    assert (
        client.post(
            "/v1/feedback", headers=actors["outsider"].headers, json={"message_id": message, "rating": "up"}
        ).status_code
        == 404
    )
    for body in (
        {},
        {"message_id": message},
        {"message_id": message, "rating": "meh"},
        {"message_id": message, "rating": 1},
        {"message_id": "../../etc", "rating": "up"},
        {"message_id": "x" * 100, "rating": "up"},
        {"message_id": message, "rating": "up", "comment": "x" * 3000},
        {"message_id": message, "rating": "up", "extra": True},
        [1, 2],
    ):
        r = client.post("/v1/feedback", headers=reader.headers, json=body)
        assert r.status_code == 422, (body, r.text)
    r = client.post(
        "/v1/feedback", headers={**reader.headers, "content-type": "application/json"}, content=b"{not json"
    )
    assert r.status_code == 422
    assert client.post("/v1/feedback", json={"message_id": message, "rating": "up"}).status_code == 401


def test_drift_status_and_metrics(client: TestClient, actors: dict[str, Actor]) -> None:
    monitor = client.app.state.ragd.extras["monitor"]  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    for i in range(40):
        shift = 0.0 if i < 30 else 3.0
        monitor.record_turn(
            tenant="acme",
            subject="u",
            query_embedding=rng.normal(size=16) + shift,
            retrieval_scores=[0.5],
            backend="llamacpp",
            latency_ms=100.0,
        )
    admin = actors["admin"].headers
    assert client.get("/v1/monitoring/drift", headers=actors["reader"].headers).status_code == 403
    body = client.get("/v1/monitoring/drift?refresh=true", headers=admin).json()
    assert body["turns"] == 40 and {d["detector"] for d in body["detectors"]} >= {"query_embedding"}
    assert client.get("/v1/monitoring/drift?refresh=maybe", headers=admin).status_code == 422
    outsider = client.get("/v1/monitoring/drift", headers=actors["outsider"].headers).json()
    assert outsider["turns"] == 0 and outsider["detectors"] == []
    metrics = client.get("/metrics").text
    assert "ragd_turns_total" in metrics and "ragd_drift_p_value" in metrics
    reset = client.post("/v1/monitoring/drift/baseline", headers=admin)
    assert reset.status_code == 200 and reset.json()["tenant"] == "acme"


def test_experiments_routes(client: TestClient, actors: dict[str, Actor]) -> None:
    admin = actors["admin"].headers
    spec = {
        "name": "prompt-v2",
        "metric": "grounding_score",
        "variants": [
            {"name": "control", "config": {"prompt": "v1"}},
            {"name": "v2", "config": {"prompt": "v2"}},
        ],
    }
    created = client.post("/v1/experiments", headers=admin, json=spec)
    assert created.status_code == 201, created.text
    exp_id = created.json()["id"]
    assert [v["config"] for v in created.json()["variants"]] == [{"prompt": "v1"}, {"prompt": "v2"}]
    assert client.post("/v1/experiments", headers=admin, json=spec).status_code == 409
    assert client.post("/v1/experiments", headers=actors["reader"].headers, json=spec).status_code == 403
    for bad in (
        {},
        {"name": "x", "variants": [{"name": "a"}]},
        {"name": "x", "variants": "ab"},
        {**spec, "name": "y", "metric": "revenue"},
    ):
        assert client.post("/v1/experiments", headers=admin, json=bad).status_code == 422
    results = client.get(f"/v1/experiments/{exp_id}", headers=admin).json()
    assert results["control"] == "control" and len(results["results"]) == 2
    assert client.get(f"/v1/experiments/{exp_id}", headers=actors["outsider"].headers).status_code == 404
    assert client.get("/v1/experiments/not-hex", headers=admin).status_code == 422
    assert (
        client.post(f"/v1/experiments/{exp_id}/stop", headers=admin, json={"winner": "nope"}).status_code
        == 400
    )
    stopped = client.post(f"/v1/experiments/{exp_id}/stop", headers=admin, json={"winner": "v2"})
    assert (
        stopped.status_code == 200
        and stopped.json()["winner"] == "v2"
        and stopped.json()["status"] == "stopped"
    )
    assert client.post(f"/v1/experiments/{exp_id}/stop", headers=admin, json={}).status_code == 409
    assert [e["id"] for e in client.get("/v1/experiments", headers=admin).json()] == [exp_id]


def test_report_path_is_not_served(client: TestClient, actors: dict[str, Actor], tmp_path: Path) -> None:
    # Reports are files written by the CLI, never served: no route reads paths from requests.
    assert client.get("/v1/evals/../../etc/passwd", headers=actors["reader"].headers).status_code == 404


def test_turns_with_only_query_text_get_an_embedding(client: TestClient) -> None:
    from sqlmodel import Session

    from ragd.db.models import MonitorTurn

    monitor = client.app.state.ragd.extras["monitor"]  # type: ignore[attr-defined]
    turn_id = monitor.record_turn(tenant="emb", subject="u", query="Does aspirin reduce heart attacks?")
    with Session(_engine(client)) as s:
        turn = s.get(MonitorTurn, turn_id)
        assert turn is not None and turn.query_chars == 34
        assert turn.query_embedding is not None and len(turn.query_embedding) == 512  # 384 int8, base64
