"""One live deployment for a run: processes up, tenants set up, traffic ready; torn down after.

``embedded``: ``ragd serve`` alone with its defaults (SQLite, local Qdrant, in-process workers).
``scaleout``: private PostgreSQL + private Redis + ``ragd worker`` processes (Celery).
Either may put an out-of-process OpenAI-compatible LLM in front of the embedded model
(``llm_proc=True``), which is what the LLM fault scenarios kill and slow down.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.reliability.corpus import TenantCorpus, load_corpora
from bench.reliability.fleet import create_keys, seed, setup_collections
from bench.reliability.isolation import IsolationChecker
from bench.reliability.procs import Deployment, LLMServer, PrivatePostgres, PrivateRedis, Ragd, TinyVolume
from bench.reliability.traffic import Recorder, Traffic, fetch_routes


@dataclass
class Live:
    """Everything a scenario needs."""

    work: Path
    ragd: Ragd
    traffic: Traffic
    corpora: dict[str, TenantCorpus]
    routes: set[str]
    redis: PrivateRedis | None = None
    pg: PrivatePostgres | None = None
    llm: LLMServer | None = None
    volume: TinyVolume | None = None
    notes: list[str] = field(default_factory=list)
    startup_s: float = 0.0
    seed_s: float = 0.0

    @property
    def rec(self) -> Recorder:
        return self.traffic.rec

    @property
    def checker(self) -> IsolationChecker:
        return self.traffic.checker

    def skipped_classes(self, wanted: tuple[str, ...]) -> list[str]:
        return [c for c in wanted if c not in self.traffic.available]


@contextlib.asynccontextmanager
async def live_ragd(
    kind: str = "embedded",
    *,
    llm_proc: bool = False,
    workers: int = 1,
    seed_docs: int = 4,
    volume_mb: int | None = None,
    extra_env: dict[str, str] | None = None,
    work: Path | None = None,
    memtrace_dir: Path | None = None,
) -> AsyncIterator[Live]:
    """Start a deployment, set up two tenants with their keys and seed documents; stop it after."""
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"ragd-rel-{kind}-")
        work = Path(tmp.name)
    stack: list[object] = []
    notes: list[str] = []
    volume = None
    try:
        dep = Deployment(kind, extra_env=dict(extra_env or {}), memtrace_dir=memtrace_dir)
        data_dir = None
        if volume_mb:
            volume = TinyVolume(work / "vol", volume_mb)
            volume.mount()
            stack.append(volume)
            data_dir = volume.path / "data"
        redis = pg = llm = None
        if kind == "scaleout":
            pg = PrivatePostgres(work)
            pg.start()
            stack.append(pg)
            redis = PrivateRedis(work)
            redis.start()
            stack.append(redis)
            dep.db_url, dep.redis_url = pg.url, redis.url
        if llm_proc:
            llm = LLMServer(work)
            llm.start()
            stack.append(llm)
            dep.llm_url = llm.url
        ragd = Ragd(work, dep, data_dir)
        stack.append(ragd)
        startup_s = ragd.start()
        for _ in range(workers if kind == "scaleout" else 0):
            ragd.start_worker()
        corpora = load_corpora()
        keys = create_keys(ragd, list(corpora))
        if Ragd.used_key_standin:
            notes.append("`ragd keys create` was missing: keys minted by bench.reliability.bootstrap_key")
        await setup_collections(ragd.base_url, keys)
        routes = await fetch_routes(ragd.base_url)
        traffic = Traffic(ragd.base_url, keys, corpora, IsolationChecker(corpora), Recorder(), routes)
        live = Live(work, ragd, traffic, corpora, routes, redis, pg, llm, volume, notes, startup_s)
        try:
            if seed_docs:
                live.seed_s = await seed(traffic, seed_docs)
            yield live
        finally:
            await traffic.aclose()
    finally:
        for item in reversed(stack):
            with contextlib.suppress(Exception):
                if isinstance(item, TinyVolume):
                    item.unmount()
                else:
                    item.stop()  # type: ignore[attr-defined]
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.cleanup()
