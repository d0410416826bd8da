"""Paired-bootstrap comparison, the suite gate (through the real CLI) and the HTML report."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from ragd.cli import app
from ragd.config import Settings
from ragd.db import build_engine, migrate
from ragd.db.models import EvalRun
from ragd.errors import BadRequest
from ragd.evals.compare import compare_runs, paired_bootstrap
from ragd.evals.records import record_eval_run
from ragd.evals.report import render_report
from ragd.evals.suite import load_suite, run_suite
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = build_engine(settings)
    migrate(eng)
    yield eng
    eng.dispose()


def _run(engine: Engine, shift: float, seed: int, n: int = 200, kind: str = "retrieval") -> EvalRun:
    rng = random.Random(seed)
    items = [
        {
            "id": f"q{i}",
            "ndcg@10": min(1.0, max(0.0, 0.5 + shift + rng.gauss(0, 0.15))),
            "latency_ms": rng.lognormvariate(3, 0.3),
        }
        for i in range(n)
    ]
    metrics = {k: sum(float(it[k]) for it in items) / n for k in ("ndcg@10", "latency_ms")}
    return record_eval_run(
        engine, kind=kind, config={"params": {"shift": shift}}, metrics=metrics, items=items
    )


def test_paired_bootstrap_detects_a_real_difference_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.2, 300)
    low, high, p = paired_bootstrap(base + 0.03 + rng.normal(0, 0.02, 300) - base)
    assert 0 < low < 0.03 < high and p < 0.01
    low, high, p = paired_bootstrap(rng.normal(0, 0.05, 300))
    assert low < 0 < high and p > 0.01


def test_compare_pairs_items_by_id(engine: Engine) -> None:
    a, b = _run(engine, 0.0, 1), _run(engine, 0.05, 1)  # same noise, B shifted: a paired win
    deltas = {d.metric: d for d in compare_runs(a, b)}
    nd = deltas["ndcg@10"]
    assert nd.n_pairs == 200 and nd.verdict == "better" and nd.delta == pytest.approx(0.05, abs=0.01)
    assert deltas["latency_ms"].lower_is_better and deltas["latency_ms"].verdict == "same"


def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(body)
    return path


RECORDER = """
import sys
from ragd.config import Settings
from ragd.db import build_engine
from ragd.evals.records import record_eval_run
engine = build_engine(Settings(env="test", data_dir=sys.argv[1]))
v = float(sys.argv[2])
run = record_eval_run(engine, kind="qa", config={}, metrics={"f1": v},
                      items=[{"id": str(i), "f1": v + (i % 3 - 1) * 0.01} for i in range(30)])
print("recorded run", run.id)
"""


def test_gate_passes_then_fails_when_a_threshold_is_crossed(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "record.py").write_text(RECORDER)
    body = """
name: gate
evals:
  - name: qa
    command: [{py}, record.py, {data}, "{value}"]
    kind: qa
    thresholds: {{f1: {{min: 0.5}}}}
    baseline: previous
    max_regression: {{f1: 0.05}}
"""
    good = _suite(tmp_path, body.format(py=sys.executable, data=tmp_path, value=0.7))
    first = run_suite(engine, load_suite(good), cwd=tmp_path, settings=settings)
    assert first.passed and first.steps[0].baseline_id is None
    # Above the absolute threshold, but 0.1 below the previous passing run: a regression.
    worse = _suite(tmp_path, body.format(py=sys.executable, data=tmp_path, value=0.6))
    second = run_suite(engine, load_suite(worse), cwd=tmp_path, settings=settings)
    assert not second.passed
    failed = [c for c in second.steps[0].checks if not c.passed]
    assert [c.rule for c in failed] == ["max_regression"] and failed[0].value == pytest.approx(-0.1)
    below = _suite(tmp_path, body.format(py=sys.executable, data=tmp_path, value=0.4))
    third = run_suite(engine, load_suite(below), cwd=tmp_path, settings=settings)
    assert {c.rule for c in third.steps[0].checks if not c.passed} == {"min", "max_regression"}
    # The baseline stays the last *passing* run.
    assert third.steps[0].baseline_id == first.steps[0].run_id


def test_cli_gate_exit_codes(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGD_ENV", "test")
    monkeypatch.setenv("RAGD_DATA_DIR", str(tmp_path))
    run = _run(engine, 0.0, 3)
    runner = CliRunner()
    ok = _suite(
        tmp_path,
        f"name: s\nevals:\n  - name: r\n    run: {run.id}\n    thresholds: {{ndcg@10: {{min: 0.4}}}}\n",
    )
    result = runner.invoke(app, ["eval", "run", "--suite", str(ok)])
    assert result.exit_code == 0, result.output
    assert "suite s: PASSED" in result.output
    bad = _suite(
        tmp_path,
        f"name: s\nevals:\n  - name: r\n    run: {run.id}\n    thresholds: {{ndcg@10: {{min: 0.9}}}}\n",
    )
    result = runner.invoke(app, ["eval", "run", "--suite", str(bad)])
    assert result.exit_code == 1 and "BAD ndcg@10 min 0.9" in result.output
    missing = _suite(tmp_path, "name: s\nevals:\n  - name: r\n    run: 0123456789abcdef0123456789abcdef\n")
    result = runner.invoke(app, ["eval", "run", "--suite", str(missing)])
    assert result.exit_code == 1 and "not found" in result.output


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "must be a mapping"),
        ("[1, 2]", "must be a mapping"),
        ("name: x\nevals: [", "not valid YAML"),
        ("name: x\nevals: []", "evals"),
        ("name: x\nevals:\n  - name: a\n", "exactly one of"),
        ("name: x\nevals:\n  - name: a\n    command: [ls]\n", "needs `kind`"),
        ("name: x\nevals:\n  - {name: a, run: abc}\n  - {name: a, run: abc}\n", "unique"),
        ("name: '../../etc'\nevals:\n  - {name: a, run: abc}\n", "name"),
        ("name: x\nevals:\n  - {name: a, run: abc, max_regression: {f1: 0.1}}\n", "needs a baseline"),
        ("name: x\n" + "#" * (1024 * 1024 + 1), "over"),
    ],
)
def test_bad_suite_files_give_one_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        load_suite(_suite(tmp_path, body))
    assert "\n" not in info.value.message


def test_cli_bad_input_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGD_ENV", "test")
    monkeypatch.setenv("RAGD_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    for argv in (
        ["eval", "run", "--suite", str(tmp_path / "nope.yaml")],
        ["eval", "compare", "x" * 5000, "y"],
        ["eval", "show", "'; drop table eval_runs; --"],
        ["eval", "report", "nope", "-o", str(tmp_path / "r.html")],
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output and result.output.strip().startswith("ragd:")


def test_report_is_self_contained_with_plots(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _run(engine, 0.0, 1), _run(engine, 0.05, 2)
    page = render_report([a, b])
    assert page.count("<svg") >= 3  # metric bars, distributions, latency histogram
    # Nothing is fetched: no links, sources, imports or remote hrefs (XML namespace ids are not fetched).
    for external in ("<link", "src=", "@import", "url(http", 'href="http', "<script"):
        assert external not in page
    assert "better" in page  # delta table against A
    monkeypatch.setenv("RAGD_ENV", "test")
    monkeypatch.setenv("RAGD_DATA_DIR", str(tmp_path))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["eval", "report", a.id, b.id[:10], "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!doctype html>")


def test_cli_compare_prints_intervals(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _run(engine, 0.0, 1), _run(engine, 0.05, 1)
    monkeypatch.setenv("RAGD_ENV", "test")
    monkeypatch.setenv("RAGD_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["eval", "compare", a.id, b.id, "--json"])
    assert result.exit_code == 0, result.output
    deltas = {d["metric"]: d for d in json.loads(result.output)["deltas"]}
    assert deltas["ndcg@10"]["verdict"] == "better" and deltas["ndcg@10"]["ci_low"] > 0
