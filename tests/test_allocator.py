"""ragd.allocator: the malloc settings reach glibc, and an operator's environment wins.

Each case runs in a fresh interpreter: mallopt changes the whole process, and glibc's sliding
mmap threshold depends on what the process freed before.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# Frees a 4 MB mapping (glibc then raises its sliding threshold above 4 MB), then reports whether
# a live 2 MB block is a mapping of its own (mallinfo2's hblks) and the heaps malloc_info lists
# after eight threads allocated at once.
PROBE = r"""
import ctypes, ctypes.util, json, os, sys, threading
from ragd.allocator import tune_allocator
from ragd.config import MemorySettings

applied = tune_allocator(MemorySettings(**json.loads(sys.argv[1])))
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.fdopen.restype = ctypes.c_void_p
libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2

libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)

start = threading.Barrier(8)
def churn():
    start.wait()
    for _ in range(2000):
        libc.free(libc.malloc(4096))
threads = [threading.Thread(target=churn) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
r, w = os.pipe()
fp = libc.fdopen(w, b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
xml = os.read(r, 1 << 20).decode()
print(json.dumps({"applied": applied, "mapped": mapped, "heaps": xml.count("<heap nr=")}))
"""


def probe(settings: dict[str, int | None], env: dict[str, str] | None = None) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(settings)],
        env={**base, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_defaults_cap_the_arenas_and_keep_the_sliding_threshold() -> None:
    got = probe({})
    assert got["applied"] == {"MALLOC_ARENA_MAX": 2}
    assert got["heaps"] <= 2
    assert got["mapped"] == 0  # after a 4 MB free, a 2 MB block comes from the heap (glibc's way)


def test_a_fixed_threshold_maps_big_blocks() -> None:
    got = probe({"malloc_mmap_threshold_bytes": 1 << 20})
    assert got["applied"] == {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 1 << 20}
    assert got["mapped"] == 1  # 2 MB is over the fixed 1 MB threshold: mapped, unmapped on free


def test_without_settings_glibc_keeps_its_sliding_threshold() -> None:
    got = probe({"malloc_arena_max": None, "malloc_mmap_threshold_bytes": None})
    assert got["applied"] == {}
    assert got["mapped"] == 0  # after a 4 MB free, a 2 MB block comes from the heap


def test_an_operators_environment_wins() -> None:
    got = probe({"malloc_mmap_threshold_bytes": 1 << 20}, env={"MALLOC_MMAP_THRESHOLD_": str(8 << 20)})
    assert got["applied"] == {"MALLOC_ARENA_MAX": 2}
    assert got["mapped"] == 0  # glibc read the operator's 8 MB threshold, ragd left it alone


def test_out_of_range_settings_are_refused() -> None:
    from pydantic import ValidationError

    from ragd.config import MemorySettings

    with pytest.raises(ValidationError):
        MemorySettings(malloc_arena_max=0)
    with pytest.raises(ValidationError):
        MemorySettings(malloc_mmap_threshold_bytes=1 << 30)


def test_an_operators_glibc_tunable_wins_too() -> None:
    got = probe({"malloc_mmap_threshold_bytes": 1 << 20}, env={"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
    assert got["applied"] == {"MALLOC_MMAP_THRESHOLD_": 1 << 20}
