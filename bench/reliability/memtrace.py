"""Run a ``ragd`` command with tracemalloc on, dumping a heap snapshot on each SIGUSR2.

    python -m bench.reliability.memtrace OUT_DIR serve

Tracing starts at the first signal, not at start-up (importing the server's libraries under
tracemalloc takes minutes), so the snapshots see what was allocated from then on: growth, not the
baseline. A soak started with ``--memtrace`` launches the server this way and signals it once a
minute; each signal writes ``snap-NNN.pickle`` (a :class:`tracemalloc.Snapshot`) and ``snap-NNN.json`` (traced
bytes, RSS, and live object counts per type) under ``OUT_DIR``. :func:`compare` diffs two of them:
the Python allocation sites and object types that grew. Memory that grows in RSS but not in the
traced total was allocated natively (llama.cpp, ONNX Runtime, Qdrant's numpy arrays are traced).

A diagnostic, not a deployment mode: tracing slows the server down (roughly 1.5-2x on the hot path).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import signal
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from ragd.api.heap import resident_bytes, trim_heap

FRAMES = int(os.environ.get("RAGD_BENCH_MEMTRACE_FRAMES", "12"))


def _rss_mb() -> float:
    return (resident_bytes() or 0) / 2**20


def _dump(out: Path, n: int) -> None:
    gc.collect()
    snap = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    types = Counter(type(o).__qualname__ for o in gc.get_objects())
    meta: dict[str, Any] = {
        "n": n,
        "time": time.time(),
        "traced_mb": current / 2**20,
        "traced_peak_mb": peak / 2**20,
        "rss_mb": _rss_mb(),
        "gc_objects": sum(types.values()),
        "types": dict(types.most_common(300)),
    }
    with (out / f"snap-{n:03d}.pickle").open("wb") as fh:
        pickle.dump(snap, fh)
    (out / f"snap-{n:03d}.json").write_text(json.dumps(meta))


def install(out: Path) -> None:
    """On every SIGUSR2: start tracing if it is off, and dump a snapshot (in a thread, one at a time)."""
    out.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    counter = iter(range(10**6))

    def dump_async(*_: object) -> None:
        n = next(counter)
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)

        def run() -> None:
            with lock:
                _dump(out, n)

        threading.Thread(target=run, name=f"memtrace-{n}", daemon=True).start()

    signal.signal(signal.SIGUSR2, dump_async)
    signal.signal(signal.SIGUSR1, lambda *_: _trim(out))


def _trim(out: Path) -> None:
    """The server's own :func:`~ragd.api.heap.trim_heap`, logged with RSS before and after.

    RSS that a trim gives back was free memory the allocator kept (fragmentation), not a leak.
    """
    before = _rss_mb()
    started = time.perf_counter()
    trim_heap()
    row = {
        "time": time.time(),
        "before_mb": before,
        "after_mb": _rss_mb(),
        "ms": 1000 * (time.perf_counter() - started),
    }
    with (out / "trims.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def _load(path: Path) -> tuple[tracemalloc.Snapshot, dict[str, Any]]:
    with path.open("rb") as fh:
        snap = pickle.load(fh)  # our own files, written by _dump
    return snap, json.loads(path.with_suffix(".json").read_text())


def compare(old_path: Path, new_path: Path, top: int = 20) -> dict[str, Any]:
    """What grew from one snapshot to another: totals, allocation sites and object types."""
    old, old_meta = _load(old_path)
    new, new_meta = _load(new_path)
    minutes = (new_meta["time"] - old_meta["time"]) / 60

    def sites(key: str, k: int) -> list[dict[str, Any]]:
        rows = []
        for stat in new.compare_to(old, key)[:k]:
            frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback]
            rows.append(
                {
                    "kb": round(stat.size_diff / 1024, 1),
                    "count": stat.count_diff,
                    "where": frames[-6:] if key == "traceback" else frames[:1],
                }
            )
        return rows

    types_diff = Counter(new_meta["types"])
    types_diff.subtract(Counter(old_meta["types"]))
    return {
        "minutes": round(minutes, 2),
        "rss_mb": [round(old_meta["rss_mb"], 1), round(new_meta["rss_mb"], 1)],
        "traced_mb": [round(old_meta["traced_mb"], 1), round(new_meta["traced_mb"], 1)],
        "rss_mb_per_min": round((new_meta["rss_mb"] - old_meta["rss_mb"]) / minutes, 2) if minutes else None,
        "traced_mb_per_min": (
            round((new_meta["traced_mb"] - old_meta["traced_mb"]) / minutes, 2) if minutes else None
        ),
        "gc_objects": [old_meta["gc_objects"], new_meta["gc_objects"]],
        "by_line": sites("lineno", top),
        "by_traceback": sites("traceback", 8),
        "types_grown": [(t, d) for t, d in types_diff.most_common(15) if d > 0],
    }


def main() -> None:
    out = Path(sys.argv[1])
    install(out)
    sys.argv = ["ragd", *sys.argv[2:]]
    from ragd.cli import run

    run()


if __name__ == "__main__":
    main()
