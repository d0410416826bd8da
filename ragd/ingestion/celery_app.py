"""Scale-out ingestion on Celery + Redis, running the very same job function as the embedded pool.

The ``jobs`` table stays the source of truth; a Celery message only says "job X may be due".
A worker claims the row under a lease (so a duplicate or redelivered message is a no-op), runs
the handler and records the outcome. Messages are acknowledged late and rejected when a worker
dies, and the server's dispatcher re-sends jobs that are due or whose lease expired, so a job
whose worker was killed is finished by another worker, once.

Writes to Qdrant: with ``qdrant.mode=server`` workers write themselves; in local (or memory)
mode only the server may open the index, so workers stop after embedding and hand the job over
(``ingest.index``), and the server's index pool writes it (:mod:`ragd.ingestion.staging`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from ragd.db.models import Job, JobStatus, utcnow
from ragd.health import ComponentHealth
from ragd.ingestion.job_queue import (
    InProcessJobQueue,
    JobHandler,
    claim_job,
    release_dead_leases,
    run_claimed_job,
    worker_identity,
)
from ragd.ingestion.pipeline import INGEST

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy import Engine

    from ragd.config import Settings
    from ragd.ingestion.pipeline import IngestPipeline

log = logging.getLogger(__name__)

TASK_NAME = "ragd.ingest"
QUEUE_NAME = "ragd.ingest"


def make_celery(settings: Settings) -> Celery:
    """The Celery app for ``settings`` (broker only: results live in the jobs table)."""
    from celery import Celery

    app = Celery("ragd", broker=settings.queue.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # a message is acknowledged only after its job ran...
        task_reject_on_worker_lost=True,  # ...and goes back to the queue if the worker dies
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE_NAME,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": max(1.0, settings.queue.lease_s * 2)},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


class _WorkerRuntime:
    """What one worker process builds on its first job (never at import time)."""

    def __init__(self, settings: Settings) -> None:
        from ragd.db.engine import build_engine
        from ragd.ingestion.components import build_pipeline, worker_writes_index

        self.settings = settings
        self.engine = build_engine(settings)
        qdrant = None
        if worker_writes_index(settings):
            from ragd.retrieval.qdrant_connection import open_qdrant

            qdrant = open_qdrant(settings)
        self.pipeline: IngestPipeline = build_pipeline(settings, self.engine, qdrant)
        self.handlers: dict[str, JobHandler] = {INGEST: self.pipeline.run}


_runtime_lock = threading.Lock()
_runtime: _WorkerRuntime | None = None


def register_task(app: Celery, settings: Settings) -> None:
    """Attach the ingestion task to ``app``; the worker builds its runtime on the first job."""

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def ingest(task: Any, job_id: str) -> str:
        global _runtime
        with _runtime_lock:
            if _runtime is None:
                _runtime = _WorkerRuntime(settings)
        rt = _runtime
        lease_s = settings.queue.lease_s
        worker_id = f"celery:{worker_identity()}"
        job = claim_job(rt.engine, job_id, worker_id, lease_s, kinds=[INGEST])
        if job is None:
            return "not claimable"  # done, running under a live lease elsewhere, or not due yet
        status = run_claimed_job(rt.engine, job, rt.handlers, worker_id, lease_s)
        if status == JobStatus.queued and job.kind == INGEST:
            with Session(rt.engine) as s:
                row = s.get(Job, job_id)
            if row is not None and row.kind == INGEST and row.not_before is not None:
                delay = max(0.0, (row.not_before - utcnow()).total_seconds())
                task.app.send_task(TASK_NAME, args=[job_id], countdown=delay)
        return str(status)


class CeleryJobQueue:
    """The server side of the Celery backend: sends jobs, re-sends due or orphaned ones, and
    (local Qdrant) runs the index pool that writes what workers staged."""

    def __init__(self, settings: Settings, engine: Engine, index_handlers: dict[str, JobHandler]) -> None:
        self._settings = settings
        self._engine = engine
        self._celery = make_celery(settings)
        self._index_pool = (
            InProcessJobQueue(
                engine,
                index_handlers,
                workers=1,
                lease_s=settings.queue.lease_s,
                poll_s=0.5,
                nice=settings.queue.worker_nice,
            )
            if index_handlers
            else None
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent: dict[str, float] = {}
        self._last_error: str = ""

    def submit(self, job_id: str) -> None:
        """Send the job to the workers (the dispatcher re-sends it if this is lost)."""
        try:
            self._celery.send_task(TASK_NAME, args=[job_id])
            self._sent[job_id] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - the broker may be down; the row is durable
            self._last_error = type(exc).__name__
            log.warning("could not send job to the broker", extra={"job_id": job_id, "error": repr(exc)})

    def start(self) -> None:
        self._stopping.clear()
        if self._index_pool is not None:
            self._index_pool.start()
        self._thread = threading.Thread(target=self._dispatch_loop, name="ragd-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._index_pool is not None:
            self._index_pool.stop()

    def health(self) -> ComponentHealth:
        alive = self._thread is not None and self._thread.is_alive()
        index_ok = self._index_pool is None or self._index_pool.health().ok
        ok = alive and index_ok and not self._last_error
        detail = "" if ok else (self._last_error or "dispatcher not running")
        return ComponentHealth("job_queue", ok, detail, {"backend": "celery"})

    def dispatch_due(self) -> int:
        """Send every ingest job that is due (or orphaned) and was not sent within a lease."""
        now = utcnow()
        due = or_(
            (col(Job.status) == JobStatus.queued)
            & or_(col(Job.not_before).is_(None), col(Job.not_before) <= now),
            (col(Job.status) == JobStatus.running) & (col(Job.lease_expires_at) < now),
        )
        with Session(self._engine) as s:
            ids = list(s.exec(select(Job.id).where(col(Job.kind) == INGEST).where(due).limit(1000)))
        sent = 0
        horizon = time.monotonic() - self._settings.queue.lease_s
        # Forget sends older than a lease: they no longer hold a job back, and a long-running
        # server would otherwise keep one entry per job it ever sent.
        for job_id, at in list(self._sent.items()):  # a copy: request threads add entries meanwhile
            if at < horizon:
                self._sent.pop(job_id, None)
        for job_id in ids:
            # Remembered means sent within a lease: its message is still queued (or its worker alive).
            if job_id not in self._sent:
                self.submit(job_id)
                sent += 1
        return sent

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.dispatch_due()
                self._last_error = ""
            except Exception as exc:  # noqa: BLE001 - keep dispatching; health reports it
                self._last_error = type(exc).__name__
                log.warning("dispatching jobs failed", extra={"error": repr(exc)})
            self._stopping.wait(self._settings.queue.dispatch_interval_s)


def _resend_jobs_of_dead_workers(app: Celery, settings: Settings) -> None:
    """A worker restarted on the machine where its predecessor died sends that one's jobs again
    at once (their messages wait for the broker's visibility timeout, the dispatcher for the
    lease to expire)."""
    from ragd.db.engine import build_engine

    engine = build_engine(settings)
    try:
        for job_id in release_dead_leases(engine, [INGEST]):
            app.send_task(TASK_NAME, args=[job_id])
    except Exception as exc:  # noqa: BLE001 - the database or broker is down: the leases expire
        log.warning("re-sending the jobs of dead workers failed", extra={"error": repr(exc)})
    finally:
        engine.dispose()


def run_worker(settings: Settings, concurrency: int, loglevel: str = "INFO") -> None:
    """Run a Celery worker for ingestion jobs in this process (blocks)."""
    app = make_celery(settings)
    register_task(app, settings)
    # One job at a time runs in the worker's own process ("solo"); more use threads: the
    # embedder (torch) releases the GIL, and forking a process that loaded torch is unsafe.
    pool = "solo" if concurrency == 1 else "threads"
    # A worker does nothing but background work: the whole process (and every thread it starts)
    # runs below the server's requests when both share a machine.
    if settings.queue.worker_nice and hasattr(os, "nice"):
        os.nice(settings.queue.worker_nice)
    _resend_jobs_of_dead_workers(app, settings)
    app.worker_main(
        [
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "-Q",
            QUEUE_NAME,
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
