"""Fault scenarios, each run while mixed traffic flows, each ending in a :class:`FaultResult`.

For every fault: requests *affected* (not a plain success while the fault lasted), requests
*lost* (no answer, no labelled fallback, no clean error with a request id; plus accepted uploads
that never reached ``ready`` or ``failed``-with-error-and-a-working-retry, or were duplicated)
and the *recovery time*: from the end of the fault (or its injection, for faults the system must
ride out) to the first request that succeeds again on the affected path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.reliability.fleet import drain, verify_ledger
from bench.reliability.harness import Live
from bench.reliability.traffic import GOOD_KINDS, TERMINAL, UploadRecord

#: Background traffic while a fault runs (users per class).
BACKGROUND = {"search": 2, "upload": 1, "job": 1, "chat": 1, "chat_stream": 1, "session": 1, "probe": 1}


@dataclass
class FaultResult:
    """One row of the fault table."""

    name: str
    deployment: str
    requests: int = 0
    affected: int = 0
    lost: int = 0
    recovery_s: float | None = None
    uploads_accepted: int = 0
    uploads_ready: int = 0
    uploads_failed_with_error: int = 0
    uploads_retried_ok: int = 0
    leaks: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    skipped: str = ""
    notes: list[str] = field(default_factory=list)
    lost_details: list[str] = field(default_factory=list)
    leak_details: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return asdict(self)


async def _until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.25
) -> float | None:
    """Seconds until ``check()`` is true (``None`` on timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        with contextlib.suppress(Exception):
            if await check():
                return time.monotonic() - t0
        await asyncio.sleep(interval_s)
    return None


async def _with_traffic(
    live: Live, body: Callable[[], Awaitable[None]], mix: dict[str, int] | None = None, settle_s: float = 3.0
) -> tuple[float, float]:
    """Run ``body`` while background traffic flows; return the (start, end) of the scenario."""
    stop = asyncio.Event()
    t0 = live.rec.now()
    runner = asyncio.create_task(live.traffic.run(mix or BACKGROUND, 3600, stop=stop))
    try:
        await asyncio.sleep(settle_s)
        await body()
        await asyncio.sleep(settle_s)
    finally:
        stop.set()
        await runner
    return t0, live.rec.now()


async def _finish(
    live: Live, res: FaultResult, t0: float, t1: float, fault_t: tuple[float, float], drain_s: float = 240.0
) -> FaultResult:
    """Drain uploads, verify the ledger, and count requests of the scenario window."""
    await drain(live.traffic, drain_s)
    led = await verify_ledger(live.traffic)
    window = live.rec.window(t0, t1 + 1e9)
    res.requests = len(window)
    fa, fb = fault_t
    res.affected = sum(1 for o in window if fa <= o.t <= fb and o.kind != "ok")
    lost = [o for o in window if o.kind == "lost"]
    res.lost = len(lost) + len(led.lost) + len(led.duplicated) + len(led.failed_without_error)
    res.lost_details = [f"{o.cls}: {o.detail}" for o in lost[:10]]
    res.lost_details += [f"upload lost: {j}" for j in led.lost[:5]]
    res.lost_details += [f"duplicated: {d}" for d in led.duplicated[:5]]
    res.lost_details += [f"failed without error: {j}" for j in led.failed_without_error[:5]]
    if led.unaccounted:
        res.notes.append(f"{len(led.unaccounted)} documents exist that no accepted upload explains")
    res.uploads_accepted, res.uploads_ready = led.accepted, led.ready
    res.uploads_failed_with_error, res.uploads_retried_ok = led.failed_with_error, led.retried_ok
    res.statuses = dict(Counter(f"{o.cls}:{o.status or o.kind}" for o in window if o.kind != "ok"))
    res.leaks = len(live.checker.leaks)
    res.leak_details = [
        f"{lk.tenant} got {lk.owner}'s {lk.kind} {lk.item!r} in {lk.where}" for lk in live.checker.leaks[:10]
    ]
    return res


async def _upload_ready(live: Live, tenant: str, timeout_s: float) -> bool:
    """Upload one document and wait for it to be ready (the ingestion path works end to end)."""
    before = set(live.rec.uploads)
    o = await live.traffic.upload(tenant)
    if o.kind != "ok":
        return False
    new = [live.rec.uploads[j] for j in set(live.rec.uploads) - before]
    if not new:
        return False
    return await _job_terminal(live, new[0], timeout_s) == "ready"


async def _job_terminal(live: Live, u: UploadRecord, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await live.traffic.poll_job(u.tenant, u)
        if u.status in TERMINAL:
            return u.status
        await asyncio.sleep(0.5)
    return u.status


def _big_document(live: Live, tenant: str, n: int = 40) -> tuple[str, bytes]:
    """A long document (``n`` abstracts), so ingestion takes long enough to be killed midway."""
    docs = live.corpora[tenant].docs[:n]
    body = "\n\n".join(d.body for d in docs)
    return f"big-{tenant}-{int(time.time() * 1000)}.md", body.encode()


# --- scenarios ---------------------------------------------------------------------------------


async def kill_worker_mid_document(live: Live, timeout_s: float = 900.0, abstracts: int = 40) -> FaultResult:
    """SIGKILL the process running an ingestion job mid-document: a ``ragd worker`` (Celery), or
    ``ragd serve`` itself in the embedded default (its in-process pool); a supervisor starts a new
    one at once. The job must finish ``ready`` exactly once."""
    scale = live.ragd.deployment.redis_url is not None
    res = FaultResult(
        "kill worker mid-document" if scale else "kill server (in-process worker) mid-document",
        live.ragd.deployment.name,
    )
    tenant = next(iter(live.traffic.keys))
    editor = next(k for k in live.traffic.keys[tenant] if k.role in ("editor", "admin"))
    marks: dict[str, float] = {}

    async def body() -> None:
        name, data = _big_document(live, tenant, abstracts)
        before = set(live.rec.uploads)
        await live.traffic.upload_file(tenant, editor, name, data)
        new = [live.rec.uploads[j] for j in set(live.rec.uploads) - before]
        if not new:
            res.skipped = "the big upload was not accepted"
            return
        job = new[0]

        async def running() -> bool:
            await live.traffic.poll_job(tenant, job)
            return job.status == "running"

        if await _until(running, 120, 0.1) is None:
            res.notes.append(f"job never seen running (status {job.status}); killed anyway")
        marks["kill"] = live.rec.now()
        if scale:
            for w in live.ragd.workers:
                w.kill()
            live.ragd.start_worker()
        else:
            live.rec.server_down = True
            await asyncio.to_thread(live.ragd.restart_server)
            live.rec.server_down = False
            res.notes.append(
                f"the server answered again {live.rec.now() - marks['kill']:.2f} s after the kill"
            )
        state = await _job_terminal(live, job, timeout_s)
        marks["ready"] = live.rec.now()
        res.recovery_s = round(marks["ready"] - marks["kill"], 2) if state == "ready" else None
        res.notes.append(f"the killed job ended {state}")

    t0, t1 = await _with_traffic(live, body)
    return await _finish(live, res, t0, t1, (marks.get("kill", t0), marks.get("ready", t1)))


async def restart_postgres(live: Live, timeout_s: float = 120.0) -> FaultResult:
    """Fast restart of the PostgreSQL server while traffic runs (every connection is cut)."""
    res = FaultResult("restart PostgreSQL", live.ragd.deployment.name)
    if live.pg is None:
        res.skipped = "no PostgreSQL in this deployment"
        return res
    pg = live.pg
    marks: dict[str, float] = {}

    async def body() -> None:
        marks["fault"] = live.rec.now()
        await asyncio.to_thread(pg.restart)
        marks["restored"] = live.rec.now()
        took = await _until(lambda: _search_ok(live), timeout_s)
        up = await _until(lambda: _upload_ready(live, next(iter(live.traffic.keys)), 60), timeout_s, 1.0)
        res.recovery_s = None if took is None or up is None else round(live.rec.now() - marks["restored"], 2)
        res.notes.append(
            f"search back {took and round(took, 2)} s after the restart returned; "
            f"an upload made ready by {res.recovery_s} s"
        )
        marks["end"] = live.rec.now()

    t0, t1 = await _with_traffic(live, body)
    return await _finish(live, res, t0, t1, (marks.get("fault", t0), marks.get("end", t1)))


async def restart_redis(live: Live, timeout_s: float = 180.0) -> FaultResult:
    """Kill Redis without saving (queued Celery messages are gone) and start it again."""
    res = FaultResult("restart Redis (nosave)", live.ragd.deployment.name)
    if live.redis is None:
        res.skipped = "no Redis in this deployment"
        return res
    redis = live.redis
    marks: dict[str, float] = {}

    async def body() -> None:
        marks["fault"] = live.rec.now()
        await asyncio.to_thread(redis.restart)
        marks["restored"] = live.rec.now()
        took = await _until(lambda: _upload_ready(live, next(iter(live.traffic.keys)), 90), timeout_s, 1.0)
        res.recovery_s = None if took is None else round(live.rec.now() - marks["restored"], 2)
        marks["end"] = live.rec.now()

    t0, t1 = await _with_traffic(live, body)
    return await _finish(live, res, t0, t1, (marks.get("fault", t0), marks.get("end", t1)))


async def fill_volume(live: Live, hold_s: float = 10.0, timeout_s: float = 600.0) -> FaultResult:
    """Fill the data volume (a tmpfs of a few MB) to the last byte, hold, then free it."""
    res = FaultResult("data volume full", live.ragd.deployment.name)
    if live.volume is None:
        res.skipped = "the data directory is not on a test volume"
        return res
    vol = live.volume
    marks: dict[str, float] = {}

    async def body() -> None:
        res.notes.append(f"data dir before filling (MB): {vol.usage()}")
        marks["fault"] = live.rec.now()
        filled = await asyncio.to_thread(vol.fill)
        res.notes.append(f"filled {filled / 2**20:.1f} MB")
        for tenant in live.traffic.keys:  # uploads while full: each must end ready or failed+error
            await live.traffic.upload(tenant)
        await asyncio.sleep(hold_s)
        vol.free()
        marks["restored"] = live.rec.now()
        # A wait as long as the whole timeout: on a slow machine under this traffic, ingestion
        # (nice 19) gets a small share of the cores and one upload can take minutes.
        took = await _until(
            lambda: _upload_ready(live, next(iter(live.traffic.keys)), timeout_s), timeout_s, 1.0
        )
        res.recovery_s = None if took is None else round(live.rec.now() - marks["restored"], 2)
        marks["end"] = live.rec.now()

    t0, t1 = await _with_traffic(live, body)
    return await _finish(live, res, t0, t1, (marks.get("fault", t0), marks.get("end", t1)))


def _chat_ready(live: Live, res: FaultResult) -> bool:
    if live.llm is None:
        res.skipped = "no out-of-process LLM in this deployment"
    elif not {"chat", "chat_stream"} & live.traffic.available:
        res.skipped = "POST /v1/chat is not on this server yet: chat traffic not measured"
    return not res.skipped


async def kill_llm_mid_stream(live: Live, down_s: float = 8.0, timeout_s: float = 120.0) -> FaultResult:
    """SIGKILL the LLM server while chat streams are running; the chain falls back to the
    embedded model; the server is started again and takes traffic back."""
    res = FaultResult("kill LLM backend mid-stream", live.ragd.deployment.name)
    if not _chat_ready(live, res):
        return res
    llm = live.llm
    assert llm is not None
    marks: dict[str, float] = {}
    mix = {"chat_stream": 2, "chat": 1, "search": 1}

    async def body() -> None:
        marks["fault"] = live.rec.now()
        llm.proc.kill()
        took = await _until(lambda: _chat_ok(live), timeout_s, 0.5)
        res.notes.append(f"first good chat {took and round(took, 2)} s after the kill (fallback)")
        await asyncio.sleep(down_s)
        await asyncio.to_thread(llm.start)
        marks["restored"] = live.rec.now()
        served = await _llm_ok_count(live, "llm-proc")

        async def primary_back() -> bool:
            await _chat_ok(live)
            return await _llm_ok_count(live, "llm-proc") > served

        back = await _until(primary_back, timeout_s, 0.5)
        res.recovery_s = None if took is None else round(took, 2)
        res.notes.append(f"primary backend serving again {back and round(back, 2)} s after its restart")
        marks["end"] = live.rec.now()

    t0, t1 = await _with_traffic(live, body, mix, settle_s=4.0)
    return await _finish(live, res, t0, t1, (marks.get("fault", t0), marks.get("end", t1)))


async def slow_llm(
    live: Live, delay_s: float = 6.0, hold_s: float = 20.0, timeout_s: float = 120.0
) -> FaultResult:
    """Make the LLM server wait ``delay_s`` before every answer for ``hold_s``, then stop."""
    res = FaultResult(f"slow LLM (+{delay_s:g} s per request)", live.ragd.deployment.name)
    if not _chat_ready(live, res):
        return res
    llm = live.llm
    assert llm is not None
    marks: dict[str, float] = {}
    mix = {"chat_stream": 1, "chat": 1, "search": 1}

    async def body() -> None:
        marks["fault"] = live.rec.now()
        await asyncio.to_thread(llm.set_delay, delay_s)
        await asyncio.sleep(hold_s)
        await asyncio.to_thread(llm.set_delay, 0.0)
        marks["restored"] = live.rec.now()
        # Recovered: a chat sent after the delay is gone comes back answered (undelayed).
        took = await _until(lambda: _chat_ok(live), timeout_s, 0.5)
        res.recovery_s = None if took is None else round(took, 2)
        marks["end"] = live.rec.now()
        before = [
            o.latency_s for o in live.rec.window(0, marks["fault"]) if o.cls == "chat" and o.kind == "ok"
        ]
        during = [
            o.latency_s
            for o in live.rec.window(marks["fault"], marks["restored"])
            if o.cls == "chat" and o.kind in GOOD_KINDS
        ]
        res.notes.append(
            f"chat p50 before {_p50(before)} s, while slow {_p50(during)} s "
            f"({len(during)} answered while slow)"
        )

    t0, t1 = await _with_traffic(live, body, mix)
    return await _finish(live, res, t0, t1, (marks.get("fault", t0), marks.get("end", t1)))


async def _llm_ok_count(live: Live, backend: str) -> float:
    """Generations ``backend`` completed, from ragd's own /metrics (the fallback chain's counter)."""
    r = await live.traffic.client.get("/metrics")
    total = 0.0
    for line in r.text.splitlines():
        if (
            line.startswith("ragd_llm_requests_total{")
            and f'backend="{backend}"' in line
            and 'outcome="ok"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _p50(xs: list[float]) -> float | None:
    return round(sorted(xs)[len(xs) // 2], 2) if xs else None


async def _search_ok(live: Live) -> bool:
    return (await live.traffic.search(next(iter(live.traffic.keys)))).kind == "ok"


async def _chat_ok(live: Live, backend: str | None = None, max_s: float | None = None) -> bool:
    cls = "chat" if "chat" in live.traffic.available else "chat_stream"
    o = await live.traffic.chat(next(iter(live.traffic.keys)), stream=cls == "chat_stream")
    if o.kind not in GOOD_KINDS:
        return False
    if backend is not None and f"backend={backend}" not in o.detail:
        return False
    return max_s is None or o.latency_s < max_s


SCENARIOS: dict[str, Callable[[Live], Awaitable[FaultResult]]] = {
    "kill_worker": kill_worker_mid_document,
    "restart_postgres": restart_postgres,
    "restart_redis": restart_redis,
    "fill_volume": fill_volume,
    "kill_llm": kill_llm_mid_stream,
    "slow_llm": slow_llm,
}
