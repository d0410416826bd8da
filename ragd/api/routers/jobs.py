"""Ingestion job routes: status with step and progress, and retry of a failed job."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from ragd.api.deps import AuditDep, CurrentPrincipal, EditorPrincipal
from ragd.api.routers.documents import IngestionDep
from ragd.api.state import StateDep
from ragd.db.models import Collection, Job, Permission
from ragd.errors import Forbidden, NotFound
from ragd.ingestion.service import IngestionService
from ragd.security.policy import collection_permission
from ragd.security.principal import Principal
from ragd.security.rules import permission_at_least

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="Job id.")]


class JobPublic(BaseModel):
    """An ingestion job as clients see it."""

    id: str
    status: str = Field(description="queued | running | ready | failed | cancelled")
    step: str = Field(description="queued, parsing, chunking, embedding, indexing, ready or failed")
    progress_done: int
    progress_total: int
    attempts: int
    max_attempts: int
    error: str | None
    document_id: str | None
    version: int | None
    filename: str | None
    created_at: datetime
    updated_at: datetime


def _public(job: Job) -> JobPublic:
    p = job.payload
    return JobPublic(
        id=job.id,
        status=job.status,
        step=job.step,
        progress_done=job.progress_done,
        progress_total=job.progress_total,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        error=job.error,
        document_id=p.get("document_id"),
        version=p.get("version"),
        filename=p.get("name"),
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def _visible_job(
    service: IngestionService, state: StateDep, principal: Principal, job_id: str, needed: Permission
) -> Job:
    """The job if the caller may read (or ``needed``) its collection; else 404 / 403."""
    from sqlmodel import Session

    job = service.get_job(principal.tenant, job_id)
    with Session(state.engine) as s:
        coll = s.get(Collection, job.payload.get("collection_id", ""))
        perm = collection_permission(s, principal, coll) if coll is not None else None
    if perm is None:
        raise NotFound("job not found")
    if not permission_at_least(perm, needed):
        raise Forbidden(f"this needs {needed} permission on the job's collection")
    return job


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: JobId, principal: CurrentPrincipal, state: StateDep, service: IngestionDep) -> JobPublic:
    """A job's status, current step, progress counts and error."""
    return _public(_visible_job(service, state, principal, job_id, Permission.read))


@router.post("/{job_id}/retry", response_model=JobPublic, status_code=202)
def retry_job(
    job_id: JobId, principal: EditorPrincipal, state: StateDep, service: IngestionDep, auditor: AuditDep
) -> JobPublic:
    """Queue a failed (or cancelled) job again; 409 for any other state."""
    _visible_job(service, state, principal, job_id, Permission.write)
    job = service.retry_job(principal.tenant, job_id)
    auditor.record("job.retry", principal=principal, target=job_id)
    return _public(job)
