"""Eval suites: several evaluations with thresholds, run as a CI/CD gate (``ragd eval run``).

A suite file (YAML)::

    name: nightly
    evals:
      - name: scifact-retrieval
        command: [ragd, eval, retrieval, --dataset, data/scifact]   # records one run of `kind`
        kind: retrieval
        timeout_s: 3600
        thresholds:                       # absolute bounds on the run's aggregate metrics
          ndcg@10: {min: 0.60}
          latency_ms: {max: 80}
        baseline: previous                # or a run id: the reference for max_regression
        max_regression: {ndcg@10: 0.02}   # tolerated drop (rise, for lower-is-better metrics)
        require_significance: false       # true: a regression also needs a CI excluding zero
      - name: rag-answers
        ragas: {data: answers.jsonl}      # in-process ragas scoring of a JSONL file
        thresholds: {rouge_l: {min: 0.3}}
      - name: last-guardrails
        run: 3f2a9c...                    # gate an already stored run

``command`` runs without a shell (``ragd`` means this interpreter's ragd); the step's run is the
32-hex run id the command prints last, else the newest run of ``kind`` recorded while it ran.
``baseline: previous`` is this step's run in the newest earlier suite run where it passed.
Every suite run is stored as an eval run of kind ``suite``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Engine

from ragd.config import Settings
from ragd.db.models import EvalRun
from ragd.errors import BadRequest, NotFound
from ragd.evals.compare import compare_runs
from ragd.evals.records import get_eval_run, list_eval_runs, lower_is_better, record_eval_run, sha256_text

MAX_SUITE_BYTES = 1024 * 1024
RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")


class Bound(BaseModel):
    """Absolute bounds on one metric."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = None
    max: float | None = None


class SuiteStep(BaseModel):
    """One evaluation of a suite and its gates."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    command: list[str] | None = Field(default=None, min_length=1)
    kind: str | None = Field(default=None, max_length=32)
    run: str | None = Field(default=None, max_length=32)
    ragas: dict[str, Any] | None = None
    timeout_s: float = Field(default=3600, gt=0)
    thresholds: dict[str, Bound] = Field(default_factory=dict)
    baseline: str | None = Field(default=None, max_length=32)
    max_regression: dict[str, float] = Field(default_factory=dict)
    require_significance: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> SuiteStep:
        sources = [s for s in (self.command, self.run, self.ragas) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of command, run, ragas")
        if self.command is not None and not self.kind:
            raise ValueError("a command step needs `kind` (the eval kind it records)")
        if self.max_regression and not self.baseline:
            raise ValueError("max_regression needs a baseline (`previous` or a run id)")
        return self


class Suite(BaseModel):
    """A named list of evaluation steps."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    evals: list[SuiteStep] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        names = [s.name for s in self.evals]
        if len(names) != len(set(names)):
            raise ValueError("step names must be unique")
        return self


class Check(BaseModel):
    """One gate on one metric."""

    metric: str
    rule: Literal["min", "max", "max_regression", "present"]
    threshold: float | None
    value: float | None
    passed: bool
    detail: str = ""


class StepResult(BaseModel):
    """What one step produced and whether its gates passed."""

    name: str
    run_id: str | None = None
    baseline_id: str | None = None
    checks: list[Check] = Field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)


class SuiteResult(BaseModel):
    """The outcome of a suite run; ``passed`` is the gate."""

    suite: str
    run_id: str | None = None
    steps: list[StepResult]

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.steps)


def load_suite(path: Path) -> Suite:
    """Parse and validate a suite file; :class:`BadRequest` with one line on any problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadRequest(f"cannot read suite file {path}: {exc.strerror}") from exc
    if len(raw) > MAX_SUITE_BYTES:
        raise BadRequest(f"suite file {path} is over {MAX_SUITE_BYTES} bytes")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise BadRequest(f"suite file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"suite file {path} must be a mapping with `name` and `evals`")
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "suite"
        raise BadRequest(f"suite file {path}: {where}: {err['msg']}") from exc


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _run_command(engine: Engine, step: SuiteStep, cwd: Path, tenant: str) -> EvalRun:
    argv = list(step.command or [])
    if argv[0] == "ragd":
        argv = [sys.executable, "-m", "ragd.cli", *argv[1:]]
    started = datetime.now(UTC)
    try:
        proc = subprocess.run(  # noqa: S603 - argv from the operator's suite file, no shell
            argv, cwd=cwd, capture_output=True, text=True, timeout=step.timeout_s, check=False
        )
    except FileNotFoundError as exc:
        raise BadRequest(f"command not found: {argv[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BadRequest(f"command timed out after {step.timeout_s:g} s") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1][:300]
        raise BadRequest(f"command exited with status {proc.returncode}: {last}")
    for candidate in reversed(RUN_ID.findall(proc.stdout)):
        try:
            return get_eval_run(engine, candidate)
        except NotFound:
            continue
    for run in list_eval_runs(engine, kind=step.kind, tenant=tenant, limit=20):
        if _aware(run.created_at) >= started:
            return run
    raise BadRequest(f"the command recorded no `{step.kind}` run")


def _step_run(engine: Engine, step: SuiteStep, cwd: Path, tenant: str, settings: Settings | None) -> EvalRun:
    if step.run is not None:
        return get_eval_run(engine, step.run, tenant=tenant)
    if step.ragas is not None:
        from ragd.evals.ragas_eval import ragas_step

        return ragas_step(engine, step.ragas, cwd=cwd, tenant=tenant, settings=settings or Settings())
    return _run_command(engine, step, cwd, tenant)


def _previous_baseline(engine: Engine, suite: str, step: str, tenant: str) -> str | None:
    for run in list_eval_runs(engine, kind="suite", tenant=tenant, limit=100):
        if run.config.get("suite") != suite:
            continue
        for item in run.items:
            if item.get("id") == step and item.get("passed") == 1 and item.get("run_id"):
                return str(item["run_id"])
    return None


def check_run(run: EvalRun, step: SuiteStep, baseline: EvalRun | None) -> list[Check]:
    """Apply a step's thresholds (and regression tolerances against ``baseline``) to ``run``."""
    checks: list[Check] = []
    metrics = run.metrics
    for metric, bound in step.thresholds.items():
        value = metrics.get(metric)
        if not isinstance(value, int | float):
            checks.append(
                Check(
                    metric=metric,
                    rule="present",
                    threshold=None,
                    value=None,
                    passed=False,
                    detail="metric missing from the run",
                )
            )
            continue
        if bound.min is not None:
            checks.append(
                Check(metric=metric, rule="min", threshold=bound.min, value=value, passed=value >= bound.min)
            )
        if bound.max is not None:
            checks.append(
                Check(metric=metric, rule="max", threshold=bound.max, value=value, passed=value <= bound.max)
            )
    if baseline is None:
        checks.extend(
            Check(
                metric=metric,
                rule="max_regression",
                threshold=tolerance,
                value=None,
                passed=True,
                detail="no baseline yet (first passing run becomes it)",
            )
            for metric, tolerance in step.max_regression.items()
        )
    elif step.max_regression:
        deltas = {d.metric: d for d in compare_runs(baseline, run)}
        for metric, tolerance in step.max_regression.items():
            d = deltas.get(metric)
            if d is None or d.delta is None:
                checks.append(
                    Check(
                        metric=metric,
                        rule="max_regression",
                        threshold=tolerance,
                        value=None,
                        passed=False,
                        detail="metric missing from the run or its baseline",
                    )
                )
                continue
            loss = d.delta if lower_is_better(metric) else -d.delta
            regressed = loss > tolerance
            ci = "" if d.ci_low is None else f", 95% CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
            if regressed and step.require_significance:
                regressed = d.verdict == "worse"
            checks.append(
                Check(
                    metric=metric,
                    rule="max_regression",
                    threshold=tolerance,
                    value=d.delta,
                    passed=not regressed,
                    detail=f"baseline {d.a:.4f} -> {d.b:.4f}{ci}",
                )
            )
    return checks


def run_suite(
    engine: Engine,
    suite: Suite,
    *,
    cwd: Path,
    tenant: str = "",
    created_by: str = "cli",
    settings: Settings | None = None,
) -> SuiteResult:
    """Run every step in order, apply the gates, store the outcome (kind ``suite``)."""
    results: list[StepResult] = []
    for step in suite.evals:
        t0 = time.monotonic()
        result = StepResult(name=step.name)
        try:
            run = _step_run(engine, step, cwd, tenant, settings)
            result.run_id = run.id
            baseline_id = step.baseline
            if baseline_id == "previous":
                baseline_id = _previous_baseline(engine, suite.name, step.name, tenant)
            baseline = get_eval_run(engine, baseline_id, tenant=tenant) if baseline_id else None
            result.baseline_id = baseline.id if baseline else None
            result.checks = check_run(run, step, baseline)
        except (BadRequest, NotFound) as exc:
            result.error = exc.message
        result.seconds = round(time.monotonic() - t0, 3)
        results.append(result)
    outcome = SuiteResult(suite=suite.name, steps=results)
    stored = record_eval_run(
        engine,
        kind="suite",
        config={"suite": suite.name, "suite_hash": sha256_text(suite.model_dump_json())[:16]},
        metrics={
            "passed": int(outcome.passed),
            "failed_checks": sum(not c.passed for s in results for c in s.checks),
            "failed_steps": sum(not s.passed for s in results),
        },
        items=[
            {
                "id": s.name,
                "passed": int(s.passed),
                "run_id": s.run_id,
                "baseline_id": s.baseline_id,
                "error": s.error,
                "checks": [c.model_dump() for c in s.checks],
                "seconds_total": s.seconds,
            }
            for s in results
        ],
        tenant=tenant,
        created_by=created_by,
    )
    outcome.run_id = stored.id
    return outcome


def format_suite_result(result: SuiteResult) -> str:
    """Human-readable gate outcome, one line per check."""
    lines = []
    for step in result.steps:
        mark = "PASS" if step.passed else "FAIL"
        lines.append(f"[{mark}] {step.name}  run={step.run_id or '-'}  ({step.seconds:.1f} s)")
        if step.error:
            lines.append(f"       error: {step.error}")
        for c in step.checks:
            value = "-" if c.value is None else f"{c.value:.4f}"
            bound = "-" if c.threshold is None else f"{c.threshold:g}"
            extra = f"  {c.detail}" if c.detail else ""
            lines.append(f"       {'ok ' if c.passed else 'BAD'} {c.metric} {c.rule} {bound}: {value}{extra}")
    verdict = "PASSED" if result.passed else "FAILED"
    lines.append(f"suite {result.suite}: {verdict} (record {result.run_id})")
    return "\n".join(lines)
