"""LLM-judged ragas metrics against a local OpenAI-compatible judge (a fake at the process edge).

The fake answers instructor's JSON-mode requests with a minimal instance of the JSON schema that
ragas embeds in the system message: every NLI verdict 1, questions echoing the asked question.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from ragd.evals.ragas_eval import RagSample, score_samples
from tests.conftest import make_settings

QUESTION = "What is the capital of France?"


def _instance(schema: dict[str, Any], defs: dict[str, Any], name: str = "") -> Any:
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].split("/")[-1]], defs, name)
    kind = schema.get("type")
    if kind == "object":
        return {k: _instance(v, defs, k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [_instance(schema["items"], defs, name)]
    if kind == "integer":
        return 0 if name == "noncommittal" else 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    return QUESTION if name == "question" else "Paris is the capital of France."


class _Judge(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []
    garbage = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        _Judge.requests.append(body)
        system = body["messages"][0]["content"]
        match = re.search(r"json_schema:\s*(\{.*\})\s*Make sure", system, re.S)
        if _Judge.garbage or match is None:
            content = "I cannot answer that."
        else:
            schema = json.loads(match.group(1))
            content = json.dumps(_instance(schema, schema.get("$defs", {})))
        out = json.dumps(
            {
                "id": "judge-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def judge_url() -> Iterator[str]:
    _Judge.requests, _Judge.garbage = [], False
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


SAMPLE = RagSample(
    question=QUESTION,
    answer="Paris is the capital of France.",
    contexts=["Paris is the capital and largest city of France."],
    reference="Paris.",
)


@pytest.mark.slow
def test_judge_metrics_run_when_a_judge_is_configured(tmp_path: Path, judge_url: str) -> None:
    settings = make_settings(tmp_path, evals={"judge_base_url": judge_url, "judge_model": "judge-model"})
    metrics, items = score_samples([SAMPLE], settings)
    assert metrics["faithfulness"] == pytest.approx(1.0)
    assert metrics["answer_relevancy"] > 0.9  # the generated question is the asked one
    assert items[0]["rouge_l"] >= 0  # the non-LLM metrics still run
    assert {r["model"] for r in _Judge.requests} == {"judge-model"}


@pytest.mark.slow
def test_a_judge_that_returns_garbage_leaves_items_unscored(tmp_path: Path, judge_url: str) -> None:
    _Judge.garbage = True
    settings = make_settings(tmp_path, evals={"judge_base_url": judge_url, "judge_model": "judge-model"})
    metrics, items = score_samples([SAMPLE], settings)
    assert "faithfulness" not in metrics and "faithfulness" not in items[0]
    assert "string_similarity" in metrics
