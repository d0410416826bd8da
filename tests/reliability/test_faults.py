"""Short fault scenarios against live ragd processes started the way an operator starts them.

Each scenario runs while mixed two-tenant traffic flows and must show: nothing lost (every request
answered, answered by a labelled fallback, or refused with a clean error carrying a request id;
every accepted upload ready, or failed with its error and then ready after a retry; nothing
duplicated), no response to one tenant containing the other's data, and recovery without help.
Only processes the test starts are killed or restarted (its own ragd, workers, LLM server,
private Redis and private PostgreSQL cluster): the shared servers are never touched.
The long versions, with figures, are ``bench/load.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from bench.reliability.harness import Live, live_ragd
from bench.reliability.scenarios import (
    FaultResult,
    fill_volume,
    kill_llm_mid_stream,
    kill_worker_mid_document,
    restart_postgres,
    restart_redis,
    slow_llm,
)
from tests.reliability.conftest import need_binaries, need_postgres_binaries, need_root

pytestmark = pytest.mark.slow

# A killed worker's job is re-run once its lease expires; progress renews the lease at every
# step, so 12 s is safe for the small documents here and keeps the recovery wait short.
SHORT_LEASE = {"RAGD_QUEUE__LEASE_S": "12"}


def _start(loop: asyncio.AbstractEventLoop, cm: AbstractAsyncContextManager[Live]) -> Live:
    return loop.run_until_complete(cm.__aenter__())


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _deployment(loop: asyncio.AbstractEventLoop, **kwargs: Any) -> Iterator[Live]:
    cm: AbstractAsyncContextManager[Live] = live_ragd(**kwargs)
    live = _start(loop, cm)
    try:
        yield live
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))


@pytest.fixture(scope="module")
def embedded(loop: asyncio.AbstractEventLoop) -> Iterator[Live]:
    """Embedded defaults, data dir on a 256 MB tmpfs, an LLM server in front of llama.cpp."""
    need_root()
    yield from _deployment(
        loop, kind="embedded", llm_proc=True, seed_docs=2, volume_mb=256, extra_env=SHORT_LEASE
    )


@pytest.fixture(scope="module")
def scaleout(loop: asyncio.AbstractEventLoop) -> Iterator[Live]:
    """Private PostgreSQL + private Redis + one ``ragd worker`` (Celery)."""
    need_binaries("redis-server", "runuser")
    need_postgres_binaries()
    yield from _deployment(loop, kind="scaleout", seed_docs=2, extra_env=SHORT_LEASE)


def _check(res: FaultResult) -> None:
    if res.skipped:
        pytest.skip(res.skipped)
    assert res.lost == 0, res.lost_details
    assert res.leaks == 0
    assert res.recovery_s is not None, f"{res.name} did not recover: {res.notes}"
    assert res.uploads_accepted == res.uploads_ready + res.uploads_failed_with_error


def _run(loop: asyncio.AbstractEventLoop, coro: Any) -> FaultResult:
    res: FaultResult = loop.run_until_complete(coro)
    return res


# --- scale-out: Celery workers on Redis, PostgreSQL ---------------------------------------------


def test_killed_worker_job_finishes_once(loop: asyncio.AbstractEventLoop, scaleout: Live) -> None:
    _check(_run(loop, kill_worker_mid_document(scaleout, abstracts=15)))


def test_postgres_restart_loses_nothing(loop: asyncio.AbstractEventLoop, scaleout: Live) -> None:
    _check(_run(loop, restart_postgres(scaleout)))


def test_redis_restart_loses_no_job(loop: asyncio.AbstractEventLoop, scaleout: Live) -> None:
    _check(_run(loop, restart_redis(scaleout)))


# --- embedded defaults -------------------------------------------------------------------------


@pytest.mark.faults
def test_full_volume_fails_cleanly_and_recovers(loop: asyncio.AbstractEventLoop, embedded: Live) -> None:
    _check(_run(loop, fill_volume(embedded, hold_s=5)))


@pytest.mark.faults
def test_llm_killed_mid_stream_falls_back(loop: asyncio.AbstractEventLoop, embedded: Live) -> None:
    _check(_run(loop, kill_llm_mid_stream(embedded, down_s=3)))


@pytest.mark.faults
def test_slow_llm_still_answers(loop: asyncio.AbstractEventLoop, embedded: Live) -> None:
    _check(_run(loop, slow_llm(embedded, delay_s=4, hold_s=8)))


@pytest.mark.faults
def test_killed_server_resumes_its_job(loop: asyncio.AbstractEventLoop, embedded: Live) -> None:
    _check(_run(loop, kill_worker_mid_document(embedded, abstracts=15)))


@pytest.mark.faults
def test_no_cross_tenant_data_under_load(loop: asyncio.AbstractEventLoop, embedded: Live) -> None:
    async def hammer() -> None:
        mix = {"search": 3, "upload": 1, "job": 1, "probe": 2, "chat": 1, "session": 1}
        await embedded.traffic.run(mix, 15, think_s={"upload": 1.0, "probe": 0.2})

    before, t0 = embedded.checker.checked, embedded.rec.now()
    loop.run_until_complete(hammer())
    assert embedded.checker.checked - before > 20
    assert embedded.checker.leaks == []
    probes = [o for o in embedded.rec.window(t0, embedded.rec.now()) if o.cls == "probe"]
    assert probes and all(o.kind == "ok" for o in probes)  # every cross-tenant read was a 404
