"""A/B experiments: ``POST/GET /v1/experiments``, ``GET /v1/experiments/{id}`` (per-variant
metrics and significance), ``POST /v1/experiments/{id}/stop`` (all traffic to the winner)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from ragd.api.deps import AdminPrincipal, AuditDep
from ragd.api.state import StateDep
from ragd.api.timestamps import UTCDateTime
from ragd.db.models import Experiment
from ragd.evals.experiments import (
    ExperimentSpec,
    create_experiment,
    experiment_results,
    get_experiment,
    list_experiments,
    stop_experiment,
)

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

ExperimentId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


class VariantPublic(BaseModel):
    """One arm and its configuration."""

    name: str
    weight: float
    config: dict[str, Any]


class ExperimentPublic(BaseModel):
    """An experiment (``winner`` receives all traffic once it is stopped)."""

    id: str
    name: str
    description: str
    metric: str
    status: str
    winner: str | None
    created_at: UTCDateTime
    stopped_at: UTCDateTime | None
    variants: list[VariantPublic] = Field(default_factory=list)


class VariantResult(BaseModel):
    """Per-variant metrics (per-user means) and the test against the control."""

    name: str
    weight: float
    users: int
    turns: int
    rated: int
    feedback_positive: float | None
    grounding_score: float | None
    abstention_rate: float | None
    latency_ms: float | None
    primary_users: int
    lift: float | None = Field(description="Primary metric minus the control's.")
    ci_low: float | None
    ci_high: float | None
    p_value: float | None = Field(description="Welch's t-test on per-user means, Bonferroni-adjusted.")
    significant: bool


class ExperimentResults(ExperimentPublic):
    """An experiment with its per-variant results."""

    control: str
    alpha: float
    lower_is_better: bool
    recommended: str | None = Field(description="The significantly best variant over the control, if any.")
    results: list[VariantResult]


class StopRequest(BaseModel):
    """Which variant gets all traffic (default: the recommended one, else the control)."""

    model_config = ConfigDict(extra="forbid")
    winner: str | None = Field(default=None, max_length=64)


def _public_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: c for k, c in config.items() if not k.startswith("_")}


def _public(exp: Experiment, variants: list[Any]) -> dict[str, Any]:
    return {
        **exp.model_dump(
            include={"id", "name", "description", "metric", "status", "winner", "created_at", "stopped_at"}
        ),
        "variants": [
            VariantPublic(
                name=v.name,
                weight=v.weight,
                config={k: c for k, c in v.config.items() if not k.startswith("_")},
            )
            for v in variants
        ],
    }


@router.post("", response_model=ExperimentPublic, status_code=status.HTTP_201_CREATED)
async def create(
    body: ExperimentSpec, principal: AdminPrincipal, state: StateDep, auditor: AuditDep
) -> ExperimentPublic:
    """Start an experiment; the first variant is the control."""
    exp = await asyncio.to_thread(create_experiment, state.engine, principal.tenant, body, principal.id)
    auditor.record("experiment.create", principal=principal, target=exp.id, detail={"name": body.name})
    exp, variants = await asyncio.to_thread(get_experiment, state.engine, principal.tenant, exp.id)
    return ExperimentPublic.model_validate(_public(exp, variants))


@router.get("", response_model=list[ExperimentPublic])
async def list_all(principal: AdminPrincipal, state: StateDep) -> list[ExperimentPublic]:
    """The tenant's experiments, newest first."""
    exps = await asyncio.to_thread(list_experiments, state.engine, principal.tenant)
    return [ExperimentPublic.model_validate(_public(e, [])) for e in exps]


@router.get("/{experiment_id}", response_model=ExperimentResults)
async def results(
    experiment_id: ExperimentId, principal: AdminPrincipal, state: StateDep
) -> ExperimentResults:
    """Per-variant metrics and a significance test of each variant against the control."""
    alpha = state.settings.evals.experiment_alpha
    res = await asyncio.to_thread(experiment_results, state.engine, principal.tenant, experiment_id, alpha)
    exp, variants = await asyncio.to_thread(get_experiment, state.engine, principal.tenant, experiment_id)
    return ExperimentResults.model_validate(
        {
            **_public(exp, variants),
            "control": res["control"],
            "alpha": alpha,
            "lower_is_better": res["lower_is_better"],
            "recommended": res["recommended"],
            "results": [VariantResult.model_validate(v, from_attributes=True) for v in res["variants"]],
        }
    )


@router.post("/{experiment_id}/stop", response_model=ExperimentPublic)
async def stop(
    experiment_id: ExperimentId,
    body: StopRequest,
    principal: AdminPrincipal,
    state: StateDep,
    auditor: AuditDep,
) -> ExperimentPublic:
    """Stop the experiment: from now on every user gets the winner."""
    alpha = state.settings.evals.experiment_alpha
    await asyncio.to_thread(
        stop_experiment, state.engine, principal.tenant, experiment_id, body.winner, alpha
    )
    exp, variants = await asyncio.to_thread(get_experiment, state.engine, principal.tenant, experiment_id)
    auditor.record("experiment.stop", principal=principal, target=exp.id, detail={"winner": exp.winner})
    return ExperimentPublic.model_validate(_public(exp, variants))
