"""Figures from recorded outcomes: rates, percentiles, error rates, resource slopes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.reliability.traffic import Outcome

GOOD = ("ok", "fallback")


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; ``None`` when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


@dataclass
class ClassStats:
    """One traffic class over one window."""

    cls: str
    n: int
    good: int
    errors: int
    lost: int
    rate_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return (self.errors + self.lost) / self.n if self.n else 0.0


def summarize(outcomes: list[Outcome], seconds: float) -> dict[str, ClassStats]:
    """Per-class stats; errors are clean errors (their latencies are excluded from percentiles)."""
    by: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by.setdefault(o.cls, []).append(o)
    out = {}
    for cls, os_ in sorted(by.items()):
        lat = [o.latency_s * 1000 for o in os_ if o.kind in GOOD]
        ttft = [o.ttft_s * 1000 for o in os_ if o.ttft_s is not None and o.kind in GOOD]
        out[cls] = ClassStats(
            cls,
            len(os_),
            sum(o.kind in GOOD for o in os_),
            sum(o.kind in ("clean_error", "down", "shed") for o in os_),
            sum(o.kind == "lost" for o in os_),
            sum(o.kind in GOOD for o in os_) / seconds if seconds > 0 else 0.0,
            _r(percentile(lat, 50)),
            _r(percentile(lat, 95)),
            _r(percentile(lat, 99)),
            _r(percentile(ttft, 50)),
        )
    return out


def stage_breakdown(outcomes: list[Outcome]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per chat class, where a turn's time went: for each stage its p50 and p95, and its mean
    over the slowest tenth of turns ("tail"), which says what made the slow ones slow."""
    by: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if o.stages_ms and o.kind in GOOD:
            by.setdefault(o.cls, []).append(o)
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for cls, os_ in sorted(by.items()):
        tail = sorted(os_, key=lambda o: o.latency_s)[-max(1, len(os_) // 10) :]
        stages = list(dict.fromkeys(k for o in os_ for k in o.stages_ms or {}))
        rows: dict[str, dict[str, float | None]] = {}
        for stage in [*stages, "unaccounted"]:

            def spent(o: Outcome, stage: str = stage) -> float:
                got = o.stages_ms or {}
                if stage == "unaccounted":  # queueing before the handler, transfer, the client
                    return o.latency_s * 1000 - sum(got.values())
                return got.get(stage, 0.0)

            values = [spent(o) for o in os_]
            rows[stage] = {
                "p50_ms": _r(percentile(values, 50)),
                "p95_ms": _r(percentile(values, 95)),
                "tail_mean_ms": _r(sum(spent(o) for o in tail) / len(tail)) if tail else None,
            }
        out[cls] = rows
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, value)`` points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return 60 * sum((t - mx) * (v - my) for t, v in points) / sxx


@dataclass
class ResourceSampler:
    """Samples a server's resident memory, open files, DB connections and queue depth."""

    pid: Callable[[], int | None]
    db_connections: Callable[[], int | None] | None = None
    queue_depth: Callable[[], int | None] | None = None
    chunks_written: Callable[[], int | None] | None = None
    interval_s: float = 5.0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def sample(self, t: float) -> dict[str, Any]:
        import psutil

        row: dict[str, Any] = {"t": t}
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                procs = [p, *p.children(recursive=True)]
                row["rss_mb"] = sum(q.memory_info().rss for q in procs) / 2**20
                row["open_files"] = sum(q.num_fds() for q in procs)
                row["threads"] = sum(q.num_threads() for q in procs)
        gauges = (
            ("db_connections", self.db_connections),
            ("queue_depth", self.queue_depth),
            ("chunks_written", self.chunks_written),
        )
        for name, fn in gauges:
            if fn is not None:
                with contextlib.suppress(Exception):
                    row[name] = fn()
        self.samples.append(row)
        return row

    async def run(self, stop: asyncio.Event, t0: float) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.sample, time.monotonic() - t0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    def slopes(self) -> dict[str, float | None]:
        keys = ("rss_mb", "open_files", "threads", "db_connections", "queue_depth", "chunks_written")
        return {
            k: _round(slope_per_min([(s["t"], float(s[k])) for s in self.samples if s.get(k) is not None]))
            for k in keys
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
