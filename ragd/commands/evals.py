"""``ragd eval run|compare|report|list|show|ragas``: stored eval runs, gates and reports.

The retrieval, QA and guardrails evaluations add their own ``ragd eval <kind>`` commands in
their modules and store their results with :func:`ragd.evals.records.record_eval_run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError, RagdError

if TYPE_CHECKING:
    from sqlalchemy import Engine

Tenant = Annotated[str, typer.Option(help="Tenant whose runs to use (CLI runs use '').")]


def _engine() -> Engine:
    from ragd.db.engine import build_engine, check_connection, migrate

    settings = load_settings()
    engine = build_engine(settings)
    try:
        check_connection(engine)
    except ConfigError as exc:
        fail(str(exc))
    migrate(engine)
    return engine


def run_cmd(
    suite: Annotated[Path, typer.Option("--suite", help="Suite file (YAML) with evals and thresholds.")],
    tenant: Tenant = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Run a suite of evaluations; exit 1 when a threshold or regression gate fails (CI/CD gate)."""
    from ragd.evals.suite import format_suite_result, load_suite, run_suite

    try:
        parsed = load_suite(suite)
        result = run_suite(
            _engine(), parsed, cwd=suite.resolve().parent, tenant=tenant, settings=load_settings()
        )
    except RagdError as exc:
        fail(exc.message)
    if as_json:
        typer.echo(json.dumps({"passed": result.passed, **result.model_dump()}, indent=2))
    else:
        typer.echo(format_suite_result(result))
    if not result.passed:
        raise typer.Exit(1)


def compare_cmd(
    run_a: Annotated[str, typer.Argument(help="Baseline run id (or a unique prefix).")],
    run_b: Annotated[str, typer.Argument(help="Candidate run id (or a unique prefix).")],
    tenant: Tenant = "",
    resamples: Annotated[int, typer.Option(min=100, max=100_000, help="Bootstrap resamples.")] = 2000,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Interval coverage.")] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="Print the deltas as JSON.")] = False,
) -> None:
    """Per-metric deltas B - A with paired-bootstrap confidence intervals over per-item results."""
    from ragd.evals.compare import compare_runs, format_comparison
    from ragd.evals.records import get_eval_run

    engine = _engine()
    try:
        a, b = get_eval_run(engine, run_a, tenant=tenant), get_eval_run(engine, run_b, tenant=tenant)
    except RagdError as exc:
        fail(exc.message)
    deltas = compare_runs(a, b, n_boot=resamples, confidence=confidence)
    if as_json:
        typer.echo(json.dumps({"a": a.id, "b": b.id, "deltas": [d.as_dict() for d in deltas]}, indent=2))
        return
    typer.echo(f"A = {a.id} ({a.kind}, {a.created_at:%Y-%m-%d %H:%M})")
    typer.echo(f"B = {b.id} ({b.kind}, {b.created_at:%Y-%m-%d %H:%M})")
    if a.config.get("fingerprint") == b.config.get("fingerprint"):
        typer.echo("note: both runs have the same configuration fingerprint")
    typer.echo(format_comparison(deltas, confidence))


def report_cmd(
    runs: Annotated[list[str], typer.Argument(help="Run ids (or unique prefixes) to include.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("eval-report.html"),
    tenant: Tenant = "",
) -> None:
    """Write a self-contained HTML report (metric bars with intervals, distributions, latency)."""
    from ragd.evals.records import get_eval_run
    from ragd.evals.report import render_report

    if len(runs) > 12:
        fail("at most 12 runs per report")
    engine = _engine()
    try:
        loaded = [get_eval_run(engine, r, tenant=tenant) for r in runs]
    except RagdError as exc:
        fail(exc.message)
    try:
        out.write_text(render_report(loaded), encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    typer.echo(f"wrote {out} ({out.stat().st_size // 1024} KiB, {len(loaded)} runs)")


def list_cmd(
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind.")] = None,
    tenant: Tenant = "",
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """List stored eval runs, newest first."""
    from ragd.evals.records import list_eval_runs

    for run in list_eval_runs(_engine(), tenant=tenant, kind=kind, limit=limit):
        shown = ", ".join(
            f"{k}={v:.4g}" for k, v in list(run.metrics.items())[:4] if isinstance(v, int | float)
        )
        typer.echo(f"{run.id}  {run.created_at:%Y-%m-%d %H:%M}  {run.kind:<12} {shown}")


def show_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    tenant: Tenant = "",
    items: Annotated[bool, typer.Option("--items", help="Include per-item results.")] = False,
) -> None:
    """Print one run (configuration and metrics) as JSON."""
    from ragd.evals.records import get_eval_run

    try:
        run = get_eval_run(_engine(), run_id, tenant=tenant)
    except RagdError as exc:
        fail(exc.message)
    data = run.model_dump(mode="json")
    if not items:
        data["items"] = f"{len(run.items)} items (--items to show)"
    typer.echo(json.dumps(data, indent=2))


def ragas_cmd(
    data: Annotated[Path, typer.Option("--data", help="JSONL: question, answer, contexts, reference, ...")],
    tenant: Tenant = "",
    limit: Annotated[int | None, typer.Option(min=1, help="Score only the first N rows.")] = None,
) -> None:
    """Score answers with ragas (non-LLM metrics; faithfulness/relevancy with a judge) and store the run."""
    from ragd.evals.ragas_eval import run_ragas_eval

    settings = load_settings()
    try:
        run = run_ragas_eval(_engine(), settings, data, tenant=tenant, limit=limit)
    except RagdError as exc:
        fail(exc.message)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in run.metrics.items() if isinstance(v, int | float))
    typer.echo(f"{shown}\nrun {run.id}")


def register(app: typer.Typer, groups: CommandGroups) -> None:
    """Attach this module's commands."""
    group = groups.group("eval", "Offline evaluations, stored runs, gates and reports.")
    group.command("run")(run_cmd)
    group.command("compare")(compare_cmd)
    group.command("report")(report_cmd)
    group.command("list")(list_cmd)
    group.command("show")(show_cmd)
    group.command("ragas")(ragas_cmd)
