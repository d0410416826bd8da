"""The shipped Prometheus rules and Grafana dashboard refer only to metrics ragd exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from ragd.config import EvalSettings
from ragd.db import build_engine, migrate
from ragd.evals.drift_monitor import DriftMonitor
from ragd.evals.monitoring import Monitor
from ragd.security.principal import Principal
from tests.conftest import make_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bragd_[a-z_]+\b")
FROM_OTHER_MODULES = {"ragd_http_requests_total", "ragd_http_request_seconds"}  # the request middleware


def _exported(tmp_path: Path) -> set[str]:
    engine = build_engine(make_settings(tmp_path))
    migrate(engine)
    registry = CollectorRegistry()
    cfg = EvalSettings(
        alert_webhook_url="http://127.0.0.1:9/none",
        alert_timeout_s=0.2,
        drift_reference_size=20,
        drift_window_size=20,
    )
    monitor, drift = Monitor(engine, cfg, registry), DriftMonitor(engine, cfg, registry)
    drift.alerter.retries = 0  # type: ignore[union-attr]
    rng = np.random.default_rng(0)
    for i in range(40):
        monitor.record_turn(
            tenant="t",
            subject="u",
            message_id=f"m{i}",
            query_embedding=rng.normal(size=8) + (i >= 20) * 5,
            retrieval_scores=[0.5],
            guard_decisions=[{"guard": "pii", "stage": "output", "action": "allow"}],
            grounding_score=0.7,
            backend="b",
            latency_ms=10.0,
        )
    monitor.record_feedback(Principal(id="u", tenant="t", role="reader"), "m1", -1)  # type: ignore[arg-type]
    drift.check("t")
    text = generate_latest(registry).decode()
    names = set(re.findall(r"^(ragd_[a-z_]+)", text, re.M))
    drift.close()
    engine.dispose()
    return names | FROM_OTHER_MODULES


def test_rules_and_dashboard_use_exported_metrics(tmp_path: Path) -> None:
    exported = _exported(tmp_path)
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "grafana/ragd-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert "ragd_drift_alarm" in used and "ragd_alerts_total" in exported
    assert used <= exported, f"not exported: {sorted(used - exported)}"


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_accepts_and_unit_tests_the_rules() -> None:
    for argv in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run(
            ["promtool", *argv],
            cwd=DEPLOY / "prometheus",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
