"""Retries on transient upstream errors only, against a scripted loopback HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragd.config import OpenAIBackendSettings
from ragd.errors import BackendUnavailable, BadRequest, NotFound
from ragd.llm_serving.base import GenerationParams, Message
from ragd.llm_serving.openai_backend import OpenAIChatModel
from tests.llm_serving.conftest import run

OK_BODY = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


class Script:
    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.hits = 0


@pytest.fixture
def upstream() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            script.hits += 1
            status = script.statuses.pop(0) if script.statuses else 200
            body = OK_BODY if status == 200 else {"error": {"message": f"status {status}", "type": "x"}}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", script
    srv.shutdown()
    srv.server_close()


def _model(url: str, retries: int) -> OpenAIChatModel:
    return OpenAIChatModel(OpenAIBackendSettings(base_url=url, model="m", max_retries=retries, timeout_s=5))


def _call(model: OpenAIChatModel) -> str:
    async def go() -> str:
        try:
            return (await model.generate([Message("user", "hi")], GenerationParams(max_tokens=4))).text
        finally:
            await model.aclose()

    return run(go())


def test_transient_5xx_and_429_are_retried(upstream: tuple[str, Script]) -> None:
    url, script = upstream
    script.statuses = [503, 429]
    assert _call(_model(url, retries=2)) == "hi" and script.hits == 3


def test_retries_are_bounded_then_unavailable(upstream: tuple[str, Script]) -> None:
    url, script = upstream
    script.statuses = [502, 502, 502, 502]
    with pytest.raises(BackendUnavailable):
        _call(_model(url, retries=1))
    assert script.hits == 2


@pytest.mark.parametrize(("status", "error"), [(400, BadRequest), (404, NotFound), (422, BadRequest)])
def test_client_errors_are_never_retried(
    upstream: tuple[str, Script], status: int, error: type[Exception]
) -> None:
    url, script = upstream
    script.statuses = [status]
    with pytest.raises(error):
        _call(_model(url, retries=3))
    assert script.hits == 1
