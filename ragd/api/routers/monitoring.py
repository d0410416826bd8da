"""Production monitoring: drift status (``GET /v1/monitoring/drift``), baseline reset, and the
monitoring services the chat route uses (``get_monitor`` / ``MonitorDep``).

The app factory calls :func:`start_monitoring` after building its state and
:func:`stop_monitoring` on shutdown; a background task runs the drift detectors of every tenant
with recorded turns every ``evals.drift_check_interval_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from ragd.api.deps import AdminPrincipal, AuditDep
from ragd.api.routers.search import SEARCH_KEY
from ragd.api.state import AppState, StateDep
from ragd.api.timestamps import UTCDateTime
from ragd.evals.drift_monitor import DriftMonitor
from ragd.evals.monitoring import Monitor

log = logging.getLogger(__name__)

MONITOR_KEY = "monitor"
DRIFT_KEY = "drift"
_TASK_KEY = "drift_task"

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])


async def start_monitoring(state: AppState) -> None:
    """Build the monitor and drift services and start the periodic drift checks."""
    cfg = state.settings.evals
    # Reuse the search embedder so turns recorded with only their query text still feed the
    # query-distribution drift test.
    embedder = getattr(state.extras.get(SEARCH_KEY), "embedder", None)
    state.extras[MONITOR_KEY] = Monitor(state.engine, cfg, state.metrics, embedder=embedder)
    drift = DriftMonitor(state.engine, cfg, state.metrics)
    state.extras[DRIFT_KEY] = drift
    if cfg.drift_check_interval_s > 0:
        state.extras[_TASK_KEY] = asyncio.create_task(_drift_loop(drift, cfg.drift_check_interval_s))


async def stop_monitoring(state: AppState) -> None:
    """Stop the drift checks and release the webhook client."""
    task: asyncio.Task[None] | None = state.extras.pop(_TASK_KEY, None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    drift: DriftMonitor | None = state.extras.get(DRIFT_KEY)
    if drift is not None:
        drift.close()


async def _drift_loop(drift: DriftMonitor, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            for tenant in await asyncio.to_thread(drift.tenants):
                await asyncio.to_thread(functools.partial(drift.check, tenant, only_if_new=True))
        except Exception:  # a failed check must not end the loop; it is logged in full
            log.exception("drift check failed")


def get_monitor(state: StateDep) -> Monitor:
    """The app's :class:`Monitor` (the chat route records turns through it)."""
    monitor: Monitor = state.extras[MONITOR_KEY]
    return monitor


def get_drift(state: StateDep) -> DriftMonitor:
    """The app's :class:`DriftMonitor`."""
    drift: DriftMonitor = state.extras[DRIFT_KEY]
    return drift


MonitorDep = Annotated[Monitor, Depends(get_monitor)]
DriftDep = Annotated[DriftMonitor, Depends(get_drift)]


class DetectorStatus(BaseModel):
    """The latest result of one drift detector."""

    detector: str
    ts: UTCDateTime
    statistic: float | None
    p_value: float | None
    alarm: bool
    reference_n: int
    window_n: int
    detail: dict[str, Any] = Field(default_factory=dict)


class DriftStatus(BaseModel):
    """Drift of the caller's tenant: the reference window, its settings and every detector."""

    tenant: str
    turns: int = Field(description="Turns recorded for the tenant.")
    baseline_since: UTCDateTime | None = Field(
        description="Start of the reference window (None: first turn)."
    )
    alpha: float
    reference_size: int
    window_size: int
    alarm: bool = Field(description="True when any detector alarms.")
    detectors: list[DetectorStatus]


class BaselineReset(BaseModel):
    """A new reference window starts now."""

    tenant: str
    since: UTCDateTime


@router.get("/drift", response_model=DriftStatus)
async def drift_status(
    principal: AdminPrincipal,
    drift: DriftDep,
    refresh: Annotated[
        bool, Query(description="Run the detectors now instead of reading the last check.")
    ] = False,
) -> DriftStatus:
    """Drift detectors of the caller's tenant (latest results; ``refresh=true`` checks now)."""
    if refresh:
        await asyncio.to_thread(drift.check, principal.tenant)
    status = await asyncio.to_thread(drift.status, principal.tenant)
    status["detectors"] = [
        DetectorStatus.model_validate(r, from_attributes=True) for r in status["detectors"]
    ]
    return DriftStatus.model_validate(status)


@router.post("/drift/baseline", response_model=BaselineReset)
async def reset_baseline(principal: AdminPrincipal, drift: DriftDep, auditor: AuditDep) -> BaselineReset:
    """Start a new reference window (after a deliberate change of model, corpus or users)."""
    since = await asyncio.to_thread(drift.reset_baseline, principal.tenant, principal.id)
    auditor.record("monitoring.drift_baseline", principal=principal, target=principal.tenant)
    return BaselineReset(tenant=principal.tenant, since=since)
