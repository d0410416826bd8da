"""Monitoring records, feedback, and drift detection on real MiniLM embeddings with a local webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine

from ragd.config import EvalSettings, Settings
from ragd.db import build_engine, migrate, session_scope
from ragd.db.models import ChatMessage, ChatSession, Role
from ragd.errors import BadRequest, NotFound
from ragd.evals.alerts import WebhookAlerter
from ragd.evals.drift import mmd_permutation_test
from ragd.evals.drift_monitor import DriftMonitor
from ragd.evals.monitoring import Monitor, decode_embedding, encode_embedding
from ragd.guardrails.base import GuardDecision
from ragd.security.principal import Principal
from tests.conftest import make_settings

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture
def engine(db_settings: Settings) -> Iterator[Engine]:
    eng = build_engine(db_settings)
    migrate(eng)
    yield eng
    eng.dispose()


def _principal(pid: str = "u1", tenant: str = "t", role: Role = Role.reader) -> Principal:
    return Principal(id=pid, tenant=tenant, role=role)


def test_record_turn_and_feedback(engine: Engine) -> None:
    registry = CollectorRegistry()
    monitor = Monitor(engine, EvalSettings(), registry)
    with session_scope(engine) as s:
        chat = ChatSession(tenant="t", owner="u1")
        s.add(chat)
        s.flush()
        msg = ChatMessage(session_id=chat.id, role="assistant", content="answer")
        s.add(msg)
    decision = GuardDecision(guard="pii", stage="output", action="redact", redacted_text="secret", score=0.9)
    turn_id = monitor.record_turn(
        tenant="t",
        subject="u1",
        message_id=msg.id,
        query="what?",
        query_embedding=np.ones(384),
        retrieval_scores=[0.2, 0.7],
        grounding_score=0.8,
        guard_decisions=[decision],
        backend="llamacpp",
        latency_ms=1500.0,
    )
    assert turn_id
    metrics = generate_latest(registry).decode()
    assert 'ragd_turns_total{backend="llamacpp",outcome="answered"} 1.0' in metrics
    assert 'ragd_guard_actions_total{action="redact",guard="pii"} 1.0' in metrics
    fb = monitor.record_feedback(_principal(), msg.id, 1, "good")
    again = monitor.record_feedback(_principal(), msg.id, -1, "actually wrong")
    assert again.id == fb.id and again.rating == -1  # one feedback per user and message
    with pytest.raises(NotFound):  # another user's conversation
        monitor.record_feedback(_principal("u2"), msg.id, 1)
    with pytest.raises(NotFound):  # another tenant
        monitor.record_feedback(_principal(tenant="other"), msg.id, 1)
    monitor.record_feedback(_principal("admin", role=Role.admin), msg.id, 1)
    for bad in (0, 5):
        with pytest.raises(BadRequest):
            monitor.record_feedback(_principal(), msg.id, bad)
    with pytest.raises(BadRequest):
        monitor.record_feedback(_principal(), msg.id, 1, "x" * 5000)
    with pytest.raises(NotFound):
        monitor.record_feedback(_principal(), "x" * 500, 1)
    with pytest.raises(BadRequest):
        monitor.record_turn(tenant="t", query_embedding=[float("nan")] * 3)
    with pytest.raises(BadRequest):
        monitor.record_turn(tenant="t", latency_ms=float("inf"))


def test_embedding_summary_round_trip() -> None:
    v = np.random.default_rng(0).normal(size=384)
    v /= np.linalg.norm(v)
    text = encode_embedding(v)
    assert len(text) == 512
    assert float(decode_embedding(text) @ v) == pytest.approx(1.0, abs=0.01)


def test_mmd_separates_distributions_and_not_samples_of_one() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 8)), rng.normal(size=(60, 8))
    assert mmd_permutation_test(x, y, permutations=300)[1] > 0.01
    assert mmd_permutation_test(x, y + 0.8, permutations=300)[1] < 0.01


class _Hook(BaseHTTPRequestHandler):
    events: list[dict[str, Any]] = []
    status = 204

    def do_POST(self) -> None:
        _Hook.events.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(_Hook.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.events, _Hook.status = [], 204
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def minilm_queries() -> tuple[np.ndarray, np.ndarray]:
    from sentence_transformers import SentenceTransformer

    from ragd.llm_serving.model_files import minilm_dir

    # The file is sorted by claim text (numbers first): in file order, it drifts. Shuffle it.
    claims = [json.loads(line)["text"] for line in (DATA / "scifact/queries.train.jsonl").open()]
    claims = [claims[i] for i in np.random.default_rng(0).permutation(len(claims))[:160]]
    questions = [json.loads(line)["question"] for line in (DATA / "hotpotqa/dev100.jsonl").open()][:40]
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    return (
        model.encode(claims, normalize_embeddings=True),
        model.encode(questions, normalize_embeddings=True),
    )


@pytest.mark.slow
def test_drift_alarm_fires_on_a_query_shift_and_not_before(
    tmp_path: Path, webhook: str, minilm_queries: tuple[np.ndarray, np.ndarray]
) -> None:
    claims, questions = minilm_queries
    settings = make_settings(
        tmp_path,
        evals={
            "drift_reference_size": 100,
            "drift_window_size": 40,
            "drift_permutations": 500,
            "drift_alpha": 0.005,
            "alert_webhook_url": webhook,
        },
    )
    engine = build_engine(settings)
    migrate(engine)
    registry = CollectorRegistry()
    monitor, drift = Monitor(engine, settings.evals), DriftMonitor(engine, settings.evals, registry)
    assert drift.check("t") == []  # nothing recorded yet
    for e in claims[:100]:
        monitor.record_turn(tenant="t", query_embedding=e, retrieval_scores=[0.6])
    assert drift.check("t") == []  # the reference window is full, the rolling one empty
    for e in claims[100:160]:
        monitor.record_turn(tenant="t", query_embedding=e, retrieval_scores=[0.6])
    same = drift.check("t")
    assert same and not any(r.alarm for r in same)
    fired_after = None
    for k, e in enumerate(questions, start=1):
        monitor.record_turn(tenant="t", query_embedding=e, retrieval_scores=[0.6])
        if k % 5 == 0 and any(r.alarm for r in drift.check("t") if r.detector == "query_embedding"):
            fired_after = k
            break
    assert fired_after is not None and fired_after <= 30
    assert [(e["status"], e["detector"]) for e in _Hook.events] == [("firing", "query_embedding")]
    assert 'ragd_drift_alarm{detector="query_embedding",tenant="t"} 1.0' in generate_latest(registry).decode()
    status = drift.status("t")
    assert status["alarm"] and status["turns"] == 160 + fired_after
    # After a deliberate change the operator resets the reference window: no alarm until it refills.
    drift.reset_baseline("t", "ops")
    assert drift.check("t") == []
    drift.close()
    engine.dispose()


def test_webhook_does_not_retry_4xx_and_never_raises(webhook: str) -> None:
    _Hook.status = 400
    alerter = WebhookAlerter(webhook, retries=2)
    assert alerter.send({"status": "firing"}) is False
    assert len(_Hook.events) == 1 and _Hook.events[0]["source"] == "ragd"
    alerter.close()
    down = WebhookAlerter("http://127.0.0.1:9/none", retries=0, timeout_s=0.5)
    assert down.send({"status": "firing"}) is False
    down.close()


def test_periodic_checks_skip_idle_tenants_and_alert_on_resolution(engine: Engine, webhook: str) -> None:
    cfg = EvalSettings(
        drift_reference_size=20,
        drift_window_size=20,
        drift_permutations=500,
        drift_alpha=0.01,
        alert_webhook_url=webhook,
    )
    monitor, drift = Monitor(engine, cfg), DriftMonitor(engine, cfg)
    rng = np.random.default_rng(0)
    for _ in range(20):
        monitor.record_turn(tenant="t", query_embedding=rng.normal(size=8))
    for _ in range(20):
        monitor.record_turn(tenant="t", query_embedding=rng.normal(size=8) + 3)
    assert any(r.alarm for r in drift.check("t", only_if_new=True))
    assert drift.check("t", only_if_new=True) == []  # nothing new since the last check
    for _ in range(20):
        monitor.record_turn(tenant="t", query_embedding=rng.normal(size=8))
    assert not any(r.alarm for r in drift.check("t", only_if_new=True))
    assert [e["status"] for e in _Hook.events if e["detector"] == "query_embedding"] == ["firing", "resolved"]
    assert drift.tenants() == ["t"]
    drift.close()
