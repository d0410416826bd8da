"""Freed heap goes back to the OS: ``trim_heap`` and the server's periodic ``HeapTrimmer``."""

from __future__ import annotations

import asyncio
import ctypes.util

import pytest
from prometheus_client import CollectorRegistry

from ragd.api.heap import HeapTrimmer, resident_bytes, trim_heap

MB = 1 << 20

pytestmark = pytest.mark.skipif(
    ctypes.util.find_library("c") is None or trim_heap() is None, reason="needs glibc's malloc_trim"
)


def _fragment(mb: int = 128) -> bytearray:
    """Allocate ``mb`` of 8 KB blocks from malloc's heap, free them all but the last one.

    The survivor sits above the freed ones, so glibc cannot shrink the heap by itself: the freed
    pages stay resident until something trims them.
    """
    blocks = [bytearray(8192) for _ in range(mb * MB // 8192)]
    for b in blocks:  # touch every page so it is really resident
        b[::4096] = b"\1" * len(b[::4096])
    pin = blocks[-1]
    del blocks
    return pin


def test_trim_heap_returns_freed_pages() -> None:
    trim_heap()  # start from a trimmed heap
    before = resident_bytes()
    assert before is not None
    pin = _fragment()
    held = resident_bytes()
    assert held is not None and held - before > 64 * MB  # freed, yet still resident
    released = trim_heap()
    assert released is not None and released > 64 * MB
    assert len(pin) == 8192


def test_trimmer_runs_on_its_interval_and_counts_what_it_released() -> None:
    registry = CollectorRegistry()

    async def run() -> None:
        trimmer = HeapTrimmer(0.05, registry)
        trimmer.start()
        pin = _fragment()
        await asyncio.sleep(0.5)
        await trimmer.stop()
        assert len(pin) == 8192

    trim_heap()
    asyncio.run(run())
    released = registry.get_sample_value("ragd_heap_trimmed_bytes_total")
    assert released is not None and released > 64 * MB


def test_interval_zero_turns_the_trimmer_off() -> None:
    async def run() -> bool:
        trimmer = HeapTrimmer(0, CollectorRegistry())
        trimmer.start()
        started = trimmer._task is not None
        await trimmer.stop()
        return started

    assert asyncio.run(run()) is False
