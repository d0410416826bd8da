"""Durable jobs: the ``jobs`` table is the source of truth, workers lease rows from it.

A job is claimed with a conditional UPDATE (optimistic, works on SQLite and PostgreSQL), runs
under a lease that its progress reports renew, and is retried with exponential backoff until
``max_attempts``; then it is ``failed`` with its error kept. A job whose worker died is claimed
again once its lease has expired, and a restarted server simply finds its queued rows again, so
nothing accepted is ever lost. A worker that starts on the machine where the holder died does not
wait for the lease: it sees that the holder's process is gone (:func:`release_dead_leases`). A job
whose worker dies on every attempt (a document that crashes the process) ends ``failed`` instead
of running forever. Running a job twice must be harmless: handlers are idempotent.

:class:`InProcessJobQueue` is the embedded default (a thread pool inside the server). The Celery
backend (scale-out) reuses :func:`claim_job` and :func:`run_claimed_job`, so both run the very
same job function.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, or_, update
from sqlmodel import Session, col, select

from ragd.db.models import Job, JobStatus, utcnow
from ragd.health import ComponentHealth
from ragd.retrieval.embedder import background_work

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled or its lease was taken over."""


class HandOff(Exception):
    """Raised by a handler whose part is done: the job continues as ``kind`` in another worker.

    Celery workers parse and embed, then hand the job to the process that owns a local-mode
    Qdrant index (only one process may open it), which claims the ``kind`` jobs and writes.
    """

    def __init__(self, kind: str, step: str) -> None:
        super().__init__(f"continue as {kind}")
        self.kind = kind
        self.step = step


@dataclass
class JobContext:
    """What a job handler gets: its job row (a snapshot) and a way to report progress."""

    job: Job
    engine: Engine
    worker_id: str
    lease_s: float

    def progress(self, step: str, done: int | None = None, total: int | None = None) -> None:
        """Record the current step and counts, renewing the lease; raise if the lease was lost."""
        values: dict[str, object] = {
            "step": step,
            "updated_at": utcnow(),
            "lease_expires_at": utcnow() + timedelta(seconds=self.lease_s),
        }
        if done is not None:
            values["progress_done"] = done
        if total is not None:
            values["progress_total"] = total
        with self.engine.begin() as conn:
            res = conn.execute(
                update(Job)
                .where(col(Job.id) == self.job.id)
                .where(col(Job.lease_owner) == self.worker_id)
                .where(col(Job.status) == JobStatus.running)
                .values(**values)
            )
        if res.rowcount != 1:
            raise JobCancelled(f"job {self.job.id} is no longer leased by {self.worker_id}")


JobHandler = Callable[[JobContext], None]
#: Runs several claimed jobs of one kind together: ``(jobs, worker_id, lease_s) -> statuses``.
BatchRunner = Callable[[Sequence[Job], str, float], list[JobStatus]]


class JobQueue(Protocol):
    """Where new jobs are announced and by whom they are run."""

    def submit(self, job_id: str) -> None:
        """Announce a committed ``queued`` job row to the workers."""
        ...

    def start(self) -> None:
        """Start consuming (resumes jobs left queued or orphaned by a previous run)."""
        ...

    def stop(self) -> None:
        """Stop consuming; running jobs keep their leases and resume elsewhere if cut short."""
        ...

    def health(self) -> ComponentHealth:
        """Whether jobs are being consumed."""
        ...


def worker_identity() -> str:
    """A worker id unique to this host, process and thread: ``host:node:pid:thread``.

    The node names the kernel boot and pid namespace the process runs in, so another process can
    tell whether the holder of a lease is still alive (:func:`holder_is_dead`).
    """
    return f"{socket.gethostname()}:{_pid_node()}:{os.getpid()}:{threading.get_native_id()}"


@functools.cache
def _pid_node() -> str:
    """8 hex digits naming this boot and pid namespace ("" where Linux's /proc cannot tell).

    A hostname alone is not enough: two containers on the host network share it but not their
    pids, and cloned machines may share a name; a pid is only meaningful inside one namespace.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}:{namespace}".encode()).hexdigest()[:8]


def holder_is_dead(owner: str) -> bool:
    """Whether the worker id ``owner`` names a process of this machine's pid namespace that has
    exited. False whenever that cannot be known for sure: another machine or namespace, an id of
    another form, this very process, or a pid that some live process holds now."""
    parts = owner.rsplit(":", 4)[-4:]  # a prefix such as "celery:" may come first
    if len(parts) != 4 or sys.platform != "linux":
        return False
    host, node, pid_text, _thread = parts
    if not node or node != _pid_node() or host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    try:
        # A killed child its parent has not reaped yet is a zombie: it holds nothing any more.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # exited between the two looks
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _worker_lost(attempts: int) -> dict[str, object]:
    """The row values of a job failed because its worker stopped on every attempt."""
    which = "its only attempt" if attempts == 1 else f"each of its {attempts} attempts"
    error = (
        f"WorkerLost: the worker running this job stopped without recording an outcome on {which} "
        "(a crash, an out-of-memory kill, a lost machine, or a run longer than its lease); retry it "
        "once the cause is fixed"
    )
    return {"status": JobStatus.failed, "step": "failed", "error": error}


def release_dead_leases(engine: Engine, kinds: Collection[str] | None = None) -> list[str]:
    """Hand back the running jobs whose lease holder was a process of this machine that has
    exited (a crashed server or worker, now restarted), so they run again at once instead of
    when their lease expires; a job that has used all its attempts is ``failed`` instead.
    Returns the ids handed back to the queue."""
    query = select(Job.id, Job.lease_owner, Job.attempts, Job.max_attempts).where(
        (col(Job.status) == JobStatus.running) & col(Job.lease_owner).is_not(None)
    )
    if kinds is not None:
        query = query.where(col(Job.kind).in_(list(kinds)))
    with Session(engine) as session:
        rows = list(session.exec(query))
    released: list[str] = []
    for job_id, owner, attempts, max_attempts in rows:
        if owner is None or not holder_is_dead(owner):
            continue
        retry = attempts < max_attempts
        values = {"status": JobStatus.queued, "not_before": None} if retry else _worker_lost(attempts)
        with engine.begin() as conn:
            res = conn.execute(
                update(Job)
                .where((col(Job.id) == job_id) & (col(Job.lease_owner) == owner))
                .where(col(Job.status) == JobStatus.running)
                .values(lease_owner=None, lease_expires_at=None, updated_at=utcnow(), **values)
            )
        if res.rowcount == 1:
            log.warning(
                "job's worker died; handed back" if retry else "job's worker died; failed",
                extra={"job_id": job_id, "lease_owner": owner, "attempts": attempts},
            )
            if retry:
                released.append(job_id)
    return released


def claim_job(
    engine: Engine,
    job_id: str | None,
    worker_id: str,
    lease_s: float,
    kinds: Collection[str] | None = None,
) -> Job | None:
    """Lease ``job_id`` (or the oldest due job of ``kinds``) for ``worker_id``; None if nothing is
    claimable. ``kinds`` restricts which jobs this worker runs (None: any)."""
    now = utcnow()
    claimable = or_(
        (col(Job.status) == JobStatus.queued)
        & or_(col(Job.not_before).is_(None), col(Job.not_before) <= now),
        (col(Job.status) == JobStatus.running) & (col(Job.lease_expires_at) < now),
    )
    if kinds is not None:
        claimable = claimable & col(Job.kind).in_(list(kinds))
    # A job whose lease expired with every attempt used had its worker die each time: it is
    # failed, not run again (a document that kills the worker would otherwise loop forever).
    exhausted = (
        (col(Job.status) == JobStatus.running)
        & (col(Job.lease_expires_at) < now)
        & (col(Job.attempts) >= col(Job.max_attempts))
    )
    query = select(Job.id, Job.attempts, exhausted).where(claimable)
    query = query.where(col(Job.id) == job_id) if job_id is not None else query
    with Session(engine) as session:
        candidates = list(session.exec(query.order_by(col(Job.created_at)).limit(8)))
    for cid, attempts, is_exhausted in candidates:
        if is_exhausted:
            with engine.begin() as conn:
                conn.execute(
                    update(Job)
                    .where((col(Job.id) == cid) & exhausted)
                    .values(lease_owner=None, lease_expires_at=None, updated_at=now, **_worker_lost(attempts))
                )
            log.warning("job's worker died on every attempt; failed", extra={"job_id": cid})
            continue
        with engine.begin() as conn:
            res = conn.execute(
                update(Job)
                .where(col(Job.id) == cid)
                .where(claimable & ~exhausted)
                .values(
                    status=JobStatus.running,
                    lease_owner=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    attempts=Job.attempts + 1,
                    updated_at=now,
                )
            )
        if res.rowcount == 1:
            with Session(engine, expire_on_commit=False) as session:
                return session.get(Job, cid)
    return None


def backoff_s(attempt: int) -> float:
    """Delay before retry number ``attempt`` (2, 4, 8, ... seconds, capped at 5 minutes)."""
    return float(min(300, 2**attempt))


def run_claimed_job(
    engine: Engine, job: Job, handlers: dict[str, JobHandler], worker_id: str, lease_s: float
) -> JobStatus:
    """Run a leased job's handler and record the outcome; returns the job's new status."""
    handler = handlers.get(job.kind)
    ctx = JobContext(job=job, engine=engine, worker_id=worker_id, lease_s=lease_s)
    error: str | None = None
    try:
        if handler is None:
            raise LookupError(f"no handler for job kind {job.kind!r}")
        handler(ctx)
    except JobCancelled:
        log.info("job lost its lease", extra={"job_id": job.id})
        return JobStatus.cancelled
    except HandOff as hand_off:
        with engine.begin() as conn:
            res = conn.execute(
                update(Job)
                .where((col(Job.id) == job.id) & (col(Job.lease_owner) == worker_id))
                .values(
                    kind=hand_off.kind,
                    step=hand_off.step,
                    status=JobStatus.queued,
                    attempts=0,
                    error=None,
                    not_before=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=utcnow(),
                )
            )
        return JobStatus.queued if res.rowcount == 1 else JobStatus.cancelled
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        error = f"{type(exc).__name__}: {exc}"[:4000]
        log.warning("job failed", extra={"job_id": job.id, "error": error, "tb": traceback.format_exc()})
    now = utcnow()
    mine = (col(Job.id) == job.id) & (col(Job.lease_owner) == worker_id)
    if error is None:
        values: dict[str, object] = {"status": JobStatus.ready, "step": "ready", "error": None}
        new_status = JobStatus.ready
    elif job.attempts < job.max_attempts and not _permanent(error):
        values = {
            "status": JobStatus.queued,
            "error": error,
            "not_before": now + timedelta(seconds=backoff_s(job.attempts)),
        }
        new_status = JobStatus.queued
    else:
        values = {"status": JobStatus.failed, "step": "failed", "error": error}
        new_status = JobStatus.failed
    with engine.begin() as conn:
        conn.execute(
            update(Job).where(mine).values(lease_owner=None, lease_expires_at=None, updated_at=now, **values)
        )
    return new_status


def release_job(engine: Engine, job_id: str, worker_id: str) -> bool:
    """Give a job leased by ``worker_id`` back to the queue (due after a backoff); True once the
    row no longer holds that lease (released now, or already taken over or finished)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                update(Job)
                .where((col(Job.id) == job_id) & (col(Job.lease_owner) == worker_id))
                .values(
                    status=JobStatus.queued,
                    lease_owner=None,
                    lease_expires_at=None,
                    not_before=utcnow() + timedelta(seconds=backoff_s(1)),
                    updated_at=utcnow(),
                )
            )
    except Exception:  # noqa: BLE001 - still refused: try again on the next loop
        log.warning("releasing a job failed; will retry", extra={"job_id": job_id})
        return False
    return True


class PermanentJobError(Exception):
    """A failure that retrying cannot fix (corrupt file, unsupported type): fail at once."""


def _permanent(error: str) -> bool:
    return error.startswith(f"{PermanentJobError.__name__}:")


class InProcessJobQueue:
    """A pool of worker threads in this process, polling the jobs table and woken on submit."""

    def __init__(
        self,
        engine: Engine,
        handlers: dict[str, JobHandler],
        *,
        workers: int = 1,
        lease_s: float = 300.0,
        poll_s: float = 1.0,
        batch: BatchRunner | None = None,
        batch_kind: str = "",
        batch_size: int = 8,
        nice: int = 0,
    ) -> None:
        self._engine = engine
        self._nice = nice  # worker threads run this far below requests (see background_work)
        self._handlers = handlers
        # Jobs of ``batch_kind`` that are due together run through ``batch`` (ingestion embeds
        # their chunks in one call: many small uploads are otherwise mostly per-call overhead).
        self._batch = batch
        self._batch_kind = batch_kind
        self._batch_size = max(1, batch_size)
        self._workers = workers
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def submit(self, job_id: str) -> None:
        """Wake a worker: the job row is already committed."""
        self._wake.set()

    def start(self) -> None:
        self._stopping.clear()
        try:
            # Jobs a crashed predecessor of this server was running: run them now, not a lease
            # (five minutes by default) after the restart.
            release_dead_leases(self._engine, self._handlers.keys())
        except Exception:  # their leases still expire: start regardless
            log.exception("handing back the jobs of dead workers failed")
        for i in range(self._workers):
            t = threading.Thread(target=self._loop, name=f"ragd-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()

    def health(self) -> ComponentHealth:
        alive = sum(t.is_alive() for t in self._threads)
        ok = alive == self._workers and not self._stopping.is_set()
        return ComponentHealth(
            "job_queue", ok, "" if ok else f"{alive}/{self._workers} workers alive", {"backend": "inprocess"}
        )

    def _loop(self) -> None:
        # Ingestion is background work: requests sharing the embedder and the cores go first.
        with background_work(self._nice):
            self._run_jobs()

    def _run_jobs(self) -> None:
        worker_id = worker_identity()
        # Jobs whose outcome could not be written (the database refused the write: disk full, a
        # restart). They stay leased to this worker; it hands them back as soon as it can,
        # instead of leaving them until the lease expires.
        unreleased: list[str] = []
        while not self._stopping.is_set():
            unreleased = [j for j in unreleased if not release_job(self._engine, j, worker_id)]
            try:
                job = claim_job(self._engine, None, worker_id, self._lease_s, kinds=self._handlers.keys())
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._wake.wait(self._poll_s)
                self._wake.clear()
                continue
            jobs = [job, *self._claim_batch_mates(job, worker_id)]
            try:
                if len(jobs) > 1 and self._batch is not None:
                    self._batch(jobs, worker_id, self._lease_s)
                else:
                    run_claimed_job(self._engine, job, self._handlers, worker_id, self._lease_s)
            except Exception:
                # The thread must outlive any one job: a dead worker would leave every later
                # job queued with nobody to run it. Jobs already finished hold no lease, so
                # releasing the whole batch only hands back the unfinished ones.
                log.exception("recording a job's outcome failed", extra={"job_id": job.id})
                unreleased.extend(j.id for j in jobs)
                self._stopping.wait(self._poll_s)

    def _claim_batch_mates(self, first: Job, worker_id: str) -> list[Job]:
        """More due jobs of the batched kind, claimed now to run with ``first``."""
        if self._batch is None or first.kind != self._batch_kind:
            return []
        mates: list[Job] = []
        while len(mates) + 1 < self._batch_size:
            try:
                job = claim_job(self._engine, None, worker_id, self._lease_s, kinds=[self._batch_kind])
            except Exception:
                log.warning("claiming more jobs for a batch failed", exc_info=True)
                break
            if job is None:
                break
            mates.append(job)
        return mates
