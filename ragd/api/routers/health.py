"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from ragd.api.state import AppState, StateDep
from ragd.db.engine import check_connection
from ragd.errors import ConfigError
from ragd.health import ComponentHealth
from ragd.retrieval.qdrant_connection import qdrant_health

router = APIRouter(tags=["health"])


class ComponentStatus(BaseModel):
    """One dependency's readiness."""

    ok: bool
    detail: str = ""
    info: dict[str, object] = Field(default_factory=dict)


class Readiness(BaseModel):
    """Readiness of every component, by name."""

    status: str = Field(description="'ok' when every component is ok, else 'degraded'.")
    components: dict[str, ComponentStatus]


class Liveness(BaseModel):
    """The process is up."""

    status: str = "ok"


def _database_health(engine: Engine) -> ComponentHealth:
    try:
        check_connection(engine)
    except ConfigError as exc:
        return ComponentHealth("database", False, exc.problem)
    return ComponentHealth("database", True, "", {"dialect": engine.dialect.name})


async def check_components(state: AppState) -> list[ComponentHealth]:
    """Check database, vector store, job queue and LLM backend, concurrently."""
    checks = await asyncio.gather(
        asyncio.to_thread(_database_health, state.engine),
        asyncio.to_thread(qdrant_health, state.qdrant),
        asyncio.to_thread(state.jobs.health),
        state.llm.health(),
        return_exceptions=True,
    )
    names = ["database", "vector_store", "job_queue", "llm"]
    out: list[ComponentHealth] = []
    for name, result in zip(names, checks, strict=True):
        if isinstance(result, BaseException):
            out.append(ComponentHealth(name, False, type(result).__name__))
        else:
            assert isinstance(result, ComponentHealth)
            out.append(ComponentHealth(name, result.ok, result.detail, result.info))
    return out


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """Liveness: the process answers."""
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A component is not ready."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    """Readiness: every component is checked and reported by name."""
    results = await check_components(state)
    ok = all(r.ok for r in results)
    body = Readiness(
        status="ok" if ok else "degraded",
        components={r.name: ComponentStatus(ok=r.ok, detail=r.detail, info=r.info) for r in results},
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(state.metrics), media_type=CONTENT_TYPE_LATEST)
