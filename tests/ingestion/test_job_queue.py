"""Durable job queue contract, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col

from ragd.config import Settings
from ragd.db import Job, JobStatus, build_engine, migrate, session_scope, utcnow
from ragd.ingestion.job_queue import (
    InProcessJobQueue,
    JobContext,
    PermanentJobError,
    claim_job,
    holder_is_dead,
    release_dead_leases,
    run_claimed_job,
    worker_identity,
)
from ragd.retrieval.embedder import is_bulk_embedding, is_niced_background


@pytest.fixture
def engine(db_settings: Settings) -> Iterator[Engine]:
    eng = build_engine(db_settings)
    migrate(eng)
    yield eng
    eng.dispose()


def add_job(engine: Engine, kind: str = "t", max_attempts: int = 3) -> str:
    with session_scope(engine) as s:
        job = Job(kind=kind, tenant="t", max_attempts=max_attempts)
        s.add(job)
    return job.id


def get(engine: Engine, job_id: str) -> Job:
    with Session(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_claim_is_exclusive(engine: Engine) -> None:
    jid = add_job(engine)
    assert claim_job(engine, jid, "w1", 60) is not None
    assert claim_job(engine, jid, "w2", 60) is None
    assert claim_job(engine, None, "w2", 60) is None
    assert get(engine, jid).lease_owner == "w1"


def test_expired_lease_is_reclaimed(engine: Engine) -> None:
    jid = add_job(engine)
    assert claim_job(engine, jid, "dead-worker", 60) is not None
    with engine.begin() as conn:
        conn.execute(
            update(Job).where(col(Job.id) == jid).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    job = claim_job(engine, None, "w2", 60)
    assert job is not None and job.id == jid and job.attempts == 2


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _identity_of(pid: int) -> str:
    """The worker id a thread of process ``pid`` on this machine would have."""
    host, node, _, thread = worker_identity().split(":")
    return f"{host}:{node}:{pid}:{thread}"


def test_a_lease_holder_is_dead_only_when_this_machine_can_tell() -> None:
    host, node, _, _ = worker_identity().split(":")
    assert len(node) == 8 and worker_identity().split(":")[2] == str(os.getpid())
    gone = _exited_pid()
    assert holder_is_dead(_identity_of(gone))
    assert holder_is_dead(f"celery:{_identity_of(gone)}")  # the prefixes other runners add
    assert not holder_is_dead(worker_identity())  # this process
    assert not holder_is_dead(_identity_of(1))  # alive (init, another user's on most machines)
    assert not holder_is_dead(f"elsewhere:{node}:{gone}:1")  # another machine with our namespace
    assert not holder_is_dead(f"{host}:0badcafe:{gone}:1")  # another pid namespace or boot
    for unknown in (f"{host}:{gone}", "w1", "", ":::", f"{host}:{node}:x:1"):
        assert not holder_is_dead(unknown)  # ids of the old form or of tests: wait for the lease

    # Killed but not yet reaped by its parent: a zombie holds nothing.
    proc = subprocess.Popen(["sleep", "60"])
    try:
        assert not holder_is_dead(_identity_of(proc.pid))
        proc.kill()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not holder_is_dead(_identity_of(proc.pid)):
            time.sleep(0.02)
        assert holder_is_dead(_identity_of(proc.pid))
    finally:
        proc.kill()
        proc.wait()


def _lease(engine: Engine, worker: str, *, attempts_left: int = 2, lease_s: float = 300) -> str:
    """A job running under ``worker``'s unexpired lease, with ``attempts_left`` attempts to go."""
    jid = add_job(engine, max_attempts=1 + attempts_left)
    assert claim_job(engine, jid, worker, lease_s) is not None
    return jid


def test_jobs_of_a_dead_worker_of_this_machine_are_handed_back_at_once(engine: Engine) -> None:
    gone = _identity_of(_exited_pid())
    dead = _lease(engine, gone)
    dead_celery = _lease(engine, f"celery:{gone}")
    dead_out_of_attempts = _lease(engine, gone, attempts_left=0)
    alive = _lease(engine, worker_identity())
    elsewhere = _lease(engine, "elsewhere:0badcafe:1234:1")
    old_form = _lease(engine, "myhost:1234")
    other_kind = add_job(engine, kind="other")
    assert claim_job(engine, other_kind, gone, 300) is not None

    assert sorted(release_dead_leases(engine, kinds=["t"])) == sorted([dead, dead_celery])
    for jid in (dead, dead_celery):
        job = get(engine, jid)
        assert (job.status, job.lease_owner, job.not_before, job.attempts) == (
            JobStatus.queued,
            None,
            None,
            1,
        )
    failed = get(engine, dead_out_of_attempts)
    assert failed.status == JobStatus.failed and failed.lease_owner is None
    assert (
        failed.error is not None
        and failed.error.startswith("WorkerLost:")
        and "its only attempt" in failed.error
    )
    for jid, owner in (
        (alive, worker_identity()),
        (elsewhere, "elsewhere:0badcafe:1234:1"),
        (other_kind, gone),
    ):
        assert (get(engine, jid).status, get(engine, jid).lease_owner) == (JobStatus.running, owner)
    assert get(engine, old_form).status == JobStatus.running
    # Handed back jobs are due now, and count the dead worker's run as an attempt.
    job = claim_job(engine, None, "w2", 60, kinds=["t"])
    assert job is not None and job.id in (dead, dead_celery) and job.attempts == 2
    assert release_dead_leases(engine) == [other_kind]  # no kinds: any


def test_a_job_whose_worker_dies_on_every_attempt_ends_failed(engine: Engine) -> None:
    """A document that kills its worker each time (here: leases that expire) is not re-run forever."""
    jid = add_job(engine, max_attempts=2)
    for attempt in (1, 2):
        job = claim_job(engine, None, f"crashing-{attempt}", 60)
        assert job is not None and job.attempts == attempt
        with engine.begin() as conn:
            conn.execute(
                update(Job).where(col(Job.id) == jid).values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
    assert claim_job(engine, None, "w3", 60) is None
    job = get(engine, jid)
    assert (job.status, job.step, job.lease_owner) == (JobStatus.failed, "failed", None)
    assert job.error is not None and "each of its 2 attempts" in job.error
    assert claim_job(engine, jid, "w3", 60) is None  # by id too (Celery's path)


def test_a_restarted_pool_runs_its_dead_predecessors_job_without_waiting_for_the_lease(
    engine: Engine,
) -> None:
    jid = _lease(engine, _identity_of(_exited_pid()), lease_s=3600)
    ran = threading.Event()
    queue = InProcessJobQueue(engine, {"t": lambda ctx: ran.set()}, poll_s=0.05)
    queue.start()
    try:
        assert ran.wait(30)
    finally:
        queue.stop()
    assert get(engine, jid).status == JobStatus.ready


def test_success_progress_and_lease_renewal(engine: Engine) -> None:
    jid = add_job(engine)
    seen: list[int] = []

    def handler(ctx: JobContext) -> None:
        ctx.progress("embedding", done=1, total=2)
        seen.append(get(engine, jid).progress_done)

    job = claim_job(engine, jid, "w", 60)
    assert job is not None
    assert run_claimed_job(engine, job, {"t": handler}, "w", 60) == JobStatus.ready
    done = get(engine, jid)
    assert (
        seen == [1] and done.status == JobStatus.ready and done.step == "ready" and done.lease_owner is None
    )


def test_transient_failure_retries_with_backoff_then_fails(engine: Engine) -> None:
    jid = add_job(engine, max_attempts=2)

    def boom(ctx: JobContext) -> None:
        raise OSError("disk hiccup")

    job = claim_job(engine, jid, "w", 60)
    assert job is not None
    assert run_claimed_job(engine, job, {"t": boom}, "w", 60) == JobStatus.queued
    queued = get(engine, jid)
    assert queued.error == "OSError: disk hiccup" and queued.not_before is not None
    assert claim_job(engine, None, "w", 60) is None  # not due yet
    with engine.begin() as conn:
        conn.execute(update(Job).where(col(Job.id) == jid).values(not_before=None))
    job = claim_job(engine, None, "w", 60)
    assert job is not None
    assert run_claimed_job(engine, job, {"t": boom}, "w", 60) == JobStatus.failed
    assert get(engine, jid).error == "OSError: disk hiccup"


def test_permanent_failure_is_not_retried(engine: Engine) -> None:
    jid = add_job(engine, max_attempts=5)

    def corrupt(ctx: JobContext) -> None:
        raise PermanentJobError("corrupt PDF")

    job = claim_job(engine, jid, "w", 60)
    assert job is not None
    assert run_claimed_job(engine, job, {"t": corrupt}, "w", 60) == JobStatus.failed
    assert get(engine, jid).attempts == 1


def test_lost_lease_stops_the_handler(engine: Engine) -> None:
    jid = add_job(engine)

    def slow(ctx: JobContext) -> None:
        # Another worker took the job over (e.g. after our lease expired).
        with engine.begin() as conn:
            conn.execute(update(Job).where(col(Job.id) == jid).values(lease_owner="other"))
        ctx.progress("parsing")

    job = claim_job(engine, jid, "w", 60)
    assert job is not None
    assert run_claimed_job(engine, job, {"t": slow}, "w", 60) == JobStatus.cancelled
    assert get(engine, jid).lease_owner == "other"


def test_unknown_kind_fails_with_error(engine: Engine) -> None:
    jid = add_job(engine, kind="mystery", max_attempts=1)
    job = claim_job(engine, jid, "w", 60)
    assert job is not None
    run_claimed_job(engine, job, {}, "w", 60)
    assert "no handler" in (get(engine, jid).error or "")


def test_inprocess_pool_runs_every_job_once(engine: Engine) -> None:
    ran: list[str] = []
    bulk: list[bool] = []
    lock = threading.Lock()

    niceness: list[int] = []
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def handler(ctx: JobContext) -> None:
        with lock:
            ran.append(ctx.job.id)
            bulk.append(is_niced_background())
            niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    ids = [add_job(engine) for _ in range(12)]
    queue = InProcessJobQueue(engine, {"t": handler}, workers=3, poll_s=0.05, nice=4)
    queue.start()
    try:
        assert queue.health().ok
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(ran) < len(ids):
            time.sleep(0.05)
    finally:
        queue.stop()
    assert sorted(ran) == sorted(ids)
    assert all(get(engine, i).status == JobStatus.ready for i in ids)
    assert not queue.health().ok
    # Jobs run as background work on lowered threads: requests sharing the cores go first.
    assert bulk == [True] * len(ids) and not is_bulk_embedding()
    assert niceness == [min(19, base + 4)] * len(ids)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # only the workers


def test_worker_survives_a_store_that_refuses_the_outcome(engine: Engine) -> None:
    """Disk full (or a database restart) while a job's outcome is written: the worker thread
    lives on, hands the job back once writes work again, and the job still ends ready."""
    if engine.dialect.name == "sqlite":
        refuse = (
            "CREATE TRIGGER refuse_ready BEFORE UPDATE ON jobs WHEN NEW.status = 'ready' "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        allow = "DROP TRIGGER refuse_ready"
    else:
        refuse = (
            "CREATE FUNCTION refuse_ready() RETURNS trigger AS $$ BEGIN IF NEW.status = 'ready' "
            "THEN RAISE EXCEPTION 'could not extend file: No space left on device'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql; CREATE TRIGGER refuse_ready BEFORE UPDATE ON jobs "
            "FOR EACH ROW EXECUTE FUNCTION refuse_ready()"
        )
        allow = "DROP TRIGGER refuse_ready ON jobs; DROP FUNCTION refuse_ready()"
    ran: list[str] = []

    def handler(ctx: JobContext) -> None:
        ran.append(ctx.job.id)

    with engine.begin() as conn:
        conn.exec_driver_sql(refuse)
    job_id = add_job(engine)
    queue = InProcessJobQueue(engine, {"t": handler}, workers=1, poll_s=0.05)
    queue.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ran:
            time.sleep(0.05)
        assert ran == [job_id]
        # The outcome was refused; the job is handed back (queued after a backoff), not left
        # leased to a dead thread until the lease expires.
        while time.monotonic() < deadline and get(engine, job_id).status != JobStatus.queued:
            time.sleep(0.05)
        assert get(engine, job_id).status == JobStatus.queued
        assert queue.health().ok
        with engine.begin() as conn:
            conn.exec_driver_sql(allow)
        with engine.begin() as conn:
            conn.execute(update(Job).where(col(Job.id) == job_id).values(not_before=None))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and get(engine, job_id).status != JobStatus.ready:
            time.sleep(0.05)
    finally:
        queue.stop()
    assert get(engine, job_id).status == JobStatus.ready
    assert ran[0] == job_id and len(ran) >= 2 and set(ran) == {job_id}


def test_due_jobs_of_the_batched_kind_run_together(engine: Engine) -> None:
    """Queued ingestion jobs are claimed in groups and run through the batch runner; other
    kinds run alone; a batch that blows up hands its unfinished jobs back, and they finish."""
    ran: list[str] = []
    batches: list[list[str]] = []
    explode = [True]

    def handler(ctx: JobContext) -> None:
        ran.append(ctx.job.id)

    def batch(jobs: Sequence[Job], worker_id: str, lease_s: float) -> list[JobStatus]:
        batches.append([j.id for j in jobs])
        statuses = [run_claimed_job(engine, jobs[0], {"b": handler}, worker_id, lease_s)]
        if explode[0]:
            explode[0] = False
            raise RuntimeError("the batch failed after its first job")
        return statuses + [run_claimed_job(engine, j, {"b": handler}, worker_id, lease_s) for j in jobs[1:]]

    batched = [add_job(engine, kind="b") for _ in range(7)]
    alone = add_job(engine, kind="t")
    queue = InProcessJobQueue(
        engine,
        {"b": handler, "t": handler},
        workers=1,
        poll_s=0.05,
        batch=batch,
        batch_kind="b",
        batch_size=4,
    )
    queue.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(get(engine, j).status != JobStatus.ready for j in batched):
            # The failed batch's jobs wait out a backoff; make them due at once.
            with engine.begin() as conn:
                conn.execute(update(Job).where(col(Job.status) == JobStatus.queued).values(not_before=None))
            time.sleep(0.05)
    finally:
        queue.stop()
    assert all(get(engine, j).status == JobStatus.ready for j in [*batched, alone])
    assert sorted(set(ran)) == sorted([*batched, alone]) and len(ran) == len(batched) + 1  # each once
    assert max(len(b) for b in batches) == 4 and alone not in {j for b in batches for j in b}


@pytest.mark.redis
def test_the_celery_dispatcher_resends_after_a_lease_and_forgets_old_sends(
    engine: Engine, db_settings: Settings
) -> None:
    import redis

    from ragd.ingestion.celery_app import CeleryJobQueue
    from ragd.ingestion.pipeline import INGEST

    url = "redis://127.0.0.1:6379/13"
    redis.Redis.from_url(url).flushdb()
    queue_settings = db_settings.queue.model_copy(
        update={"backend": "celery", "redis_url": url, "lease_s": 0.3}
    )
    q = CeleryJobQueue(db_settings.model_copy(update={"queue": queue_settings}), engine, {})
    try:
        waiting, done = add_job(engine, kind=INGEST), add_job(engine, kind=INGEST)
        q.submit(waiting)
        q.submit(done)
        with engine.begin() as conn:
            conn.execute(update(Job).where(col(Job.id) == done).values(status=JobStatus.ready))
        assert q.dispatch_due() == 0  # both were sent within a lease
        time.sleep(0.4)
        assert q.dispatch_due() == 1  # the queued one again; the finished one never
        assert redis.Redis.from_url(url).llen("ragd.ingest") == 3
        time.sleep(0.4)
        q.dispatch_due()
        # Only sends younger than a lease are remembered: a server up for months keeps no entry
        # per job it ever sent.
        assert set(q._sent) == {waiting}
    finally:
        redis.Redis.from_url(url).flushdb()
