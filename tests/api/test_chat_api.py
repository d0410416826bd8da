"""Chat over HTTP: /v1/chat (JSON and SSE), /v1/sessions, and the OpenAI-compatible routes with
the official ``openai`` client against the live app (uvicorn on a loopback port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragd.agents.qa_ingest import ingest_paragraphs
from ragd.api.app import create_app
from ragd.db.models import Permission, Role
from tests.agents.conftest import DOCS
from tests.conftest import make_settings
from tests.fixtures.auth import Actor, AuthFactory
from tests.fixtures.live_server import serve_in_thread


def _settings(tmp: Path) -> Any:
    return make_settings(
        tmp,
        qdrant={"mode": "memory"},
        llm={"load_on_startup": False},
        auth={"auth_failures_per_minute": 1000},
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The app served by uvicorn on 127.0.0.1 with a small collection and three actors."""
    app = create_app(_settings(tmp_path_factory.mktemp("chatapi")))
    with serve_in_thread(app) as port:
        state = app.state.ragd
        auth = AuthFactory(state.engine)
        owner = auth.user("acme", Role.editor)
        coll = auth.collection("acme", "kb", owner=owner)
        reader = auth.user("acme", Role.reader)
        auth.grant(coll, reader, permission=Permission.read)
        stranger = auth.user("acme", Role.reader)
        ingest_paragraphs(
            state.settings, state.engine, state.qdrant, coll.id, DOCS, lambda _: None, tenant="acme"
        )
        client = TestClient(app, base_url=f"http://127.0.0.1:{port}")
        yield {
            "url": f"http://127.0.0.1:{port}",
            "client": client,
            "reader": reader,
            "owner": owner,
            "stranger": stranger,
        }


def _post(live: dict[str, Any], actor: Actor, body: Any, path: str = "/v1/chat") -> Any:
    import httpx

    return httpx.post(live["url"] + path, json=body, headers=actor.headers, timeout=300)


def test_chat_json_and_session_lifecycle(live: dict[str, Any]) -> None:
    import httpx

    reader: Actor = live["reader"]
    r = _post(live, reader, {"message": "Who designed the Zorblax Bridge?", "collections": ["kb"]})
    assert r.status_code == 200, r.text
    body = r.json()
    for key in (
        "answer",
        "citations",
        "guard_decisions",
        "backend",
        "usage",
        "latency_ms",
        "trace_id",
        "session_id",
    ):
        assert key in body
    assert body["guard_decisions"], "input guards ran and their decisions are returned"
    stages = body["timings_ms"]
    assert list(stages)[:2] == ["prepare", "input_guard"]
    assert {"retrieve", "answer", "output_guard"} <= set(stages)
    assert all(ms >= 0 for ms in stages.values())
    # The stages are parts of the turn: together no longer than it, and most of it.
    assert 0.5 * body["latency_ms"] <= sum(stages.values()) <= body["latency_ms"] + 1
    sid = body["session_id"]
    got = httpx.get(f"{live['url']}/v1/sessions/{sid}", headers=reader.headers)
    assert got.status_code == 200 and [m["role"] for m in got.json()["messages"]] == ["user", "assistant"]
    assert got.json()["messages"][1]["guard_decisions"]
    for other in (live["owner"], live["stranger"]):  # even the collection's owner cannot read it
        assert httpx.get(f"{live['url']}/v1/sessions/{sid}", headers=other.headers).status_code == 404
        assert httpx.delete(f"{live['url']}/v1/sessions/{sid}", headers=other.headers).status_code == 404
    assert httpx.delete(f"{live['url']}/v1/sessions/{sid}", headers=reader.headers).status_code == 204
    assert httpx.get(f"{live['url']}/v1/sessions/{sid}", headers=reader.headers).status_code == 404


def test_chat_stream_sends_tokens_then_a_final_event(live: dict[str, Any]) -> None:
    import httpx

    events: list[tuple[str, Any]] = []
    with httpx.stream(
        "POST",
        live["url"] + "/v1/chat",
        headers=live["reader"].headers,
        timeout=300,
        json={"message": "When did the Zorblax Bridge open?", "stream": True},
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[0] == "token" and kinds[-1] == "final" and kinds.count("final") == 1
    final = events[-1][1]
    assert final["answer"] and "citations" in final and final["trace_id"]
    assert "answer" in final["timings_ms"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"message": ""}, 400),
        ({"message": "   "}, 400),
        ({"message": "x" * 200_000}, 422),
        ({"message": "hi", "unknown": 1}, 422),
        ({"message": 5}, 422),
        ({}, 422),
        ({"message": "hi", "collections": ["nope"]}, 404),
        ({"message": "hi", "session_id": "../../etc"}, 404),
        ({"message": "hi", "session_id": "x" * 40}, 422),
        ({"message": "a\x00b"}, 400),
        ({"message": "hi", "collections": ["kb"] * 60}, 422),
    ],
)
def test_bad_chat_requests_get_a_clear_4xx(live: dict[str, Any], body: Any, status: int) -> None:
    r = _post(live, live["reader"], body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"]


def test_malformed_and_unauthenticated_requests(live: dict[str, Any]) -> None:
    import httpx

    r = httpx.post(
        live["url"] + "/v1/chat",
        content=b"{not json",
        headers={**live["reader"].headers, "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert httpx.post(live["url"] + "/v1/chat", json={"message": "hi"}).status_code == 401
    assert httpx.get(live["url"] + "/v1/models").status_code == 401
    assert _post(live, live["stranger"], {"message": "hi", "collections": ["kb"]}).status_code == 404


def test_openai_client_against_the_live_app(live: dict[str, Any]) -> None:
    import openai

    client = openai.OpenAI(
        base_url=live["url"] + "/v1", api_key=live["reader"].key, max_retries=0, timeout=300
    )
    assert "ragd-agent" in [m.id for m in client.models.list()]
    done = client.chat.completions.create(
        model="ragd-agent",
        messages=[{"role": "user", "content": "Who designed the Zorblax Bridge?"}],
        extra_body={"collections": ["kb"]},
    )
    assert done.choices[0].message.content
    extra = done.model_extra or {}
    assert "citations" in extra and "ragd" in extra and extra["ragd"]["trace_id"]
    assert "retrieve" in extra["ragd"]["timings_ms"]
    chunks = list(
        client.chat.completions.create(
            model="ragd-agent",
            stream=True,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 6 * 7?"},
            ],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "42" in text and chunks[-1].choices[0].finish_reason == "stop"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ragd-agent", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="ragd-agent", messages=[])
