"""``GET /v1/evals``, ``GET /v1/evals/{run_id}`` and ``GET /v1/evals/{a}/compare/{b}``.

Runs are tenant-scoped: a caller sees its tenant's runs (the CLI records with ``--tenant``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from ragd.api.deps import ReaderPrincipal
from ragd.api.state import StateDep
from ragd.api.timestamps import UTCDateTime
from ragd.db.models import EvalRun
from ragd.evals.compare import compare_runs
from ragd.evals.records import get_eval_run, list_eval_runs

router = APIRouter(prefix="/v1/evals", tags=["evals"])

RunId = Annotated[
    str, Path(min_length=6, max_length=32, pattern=r"^[0-9a-f]+$", description="Run id or prefix.")
]


class EvalRunSummary(BaseModel):
    """A stored eval run without its per-item results."""

    id: str
    kind: str
    created_at: UTCDateTime
    created_by: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    n_items: int


class EvalRunPublic(EvalRunSummary):
    """A stored eval run with its per-item results."""

    items: list[dict[str, Any]]


class MetricDeltaPublic(BaseModel):
    """One metric's change from run A to run B with its paired-bootstrap interval."""

    metric: str
    a: float | None
    b: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_pairs: int
    lower_is_better: bool
    verdict: str = Field(description="better / worse (interval excludes zero), same, or n/a.")


class Comparison(BaseModel):
    """Per-metric deltas B - A."""

    a: str
    b: str
    confidence: float
    deltas: list[MetricDeltaPublic]


def _summary(run: EvalRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "created_at": run.created_at,
        "created_by": run.created_by,
        "metrics": run.metrics,
        "config": run.config,
        "n_items": len(run.items),
    }


@router.get("", response_model=list[EvalRunSummary])
async def list_runs(
    principal: ReaderPrincipal,
    state: StateDep,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[EvalRunSummary]:
    """The caller's tenant's eval runs, newest first."""
    runs = await asyncio.to_thread(
        list_eval_runs, state.engine, tenant=principal.tenant, kind=kind, limit=limit, offset=offset
    )
    return [EvalRunSummary.model_validate(_summary(r)) for r in runs]


@router.get("/{run_id}", response_model=EvalRunPublic)
async def get_run(
    run_id: RunId,
    principal: ReaderPrincipal,
    state: StateDep,
    items: Annotated[bool, Query(description="Include per-item results.")] = True,
) -> EvalRunPublic:
    """One eval run: exact configuration, metrics and per-item results."""
    run = await asyncio.to_thread(get_eval_run, state.engine, run_id, tenant=principal.tenant)
    return EvalRunPublic.model_validate({**_summary(run), "items": run.items if items else []})


@router.get("/{run_a}/compare/{run_b}", response_model=Comparison)
async def compare(
    run_a: RunId,
    run_b: RunId,
    principal: ReaderPrincipal,
    state: StateDep,
    confidence: Annotated[float, Query(ge=0.5, le=0.999)] = 0.95,
) -> Comparison:
    """Per-metric deltas B - A with paired-bootstrap confidence intervals."""
    a = await asyncio.to_thread(get_eval_run, state.engine, run_a, tenant=principal.tenant)
    b = await asyncio.to_thread(get_eval_run, state.engine, run_b, tenant=principal.tenant)
    deltas = await asyncio.to_thread(compare_runs, a, b, confidence=confidence)
    return Comparison(
        a=a.id,
        b=b.id,
        confidence=confidence,
        deltas=[MetricDeltaPublic.model_validate(d.as_dict()) for d in deltas],
    )
