"""ragd.allocator: the malloc settings reach glibc, the kernel cache size reaches oneDNN, and an
operator's environment wins.

Each case runs in a fresh interpreter: mallopt changes the whole process, glibc's sliding mmap
threshold depends on what the process freed before, and oneDNN reads its cache size once.
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

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
#: Variables the probes control themselves (the operator's knobs under test).
OWN_VARS = ("MALLOC_", "GLIBC_TUNABLES", "ONEDNN_", "DNNL_")

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


def run_probe(script: str, settings: dict[str, int | None], env: dict[str, str] | None) -> list[str]:
    """``script``'s output lines, run in a fresh interpreter with ``settings`` as its argument and
    only ``env`` among the knobs under test."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARS)}
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(settings)],
        env={**base, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.splitlines()


def probe(settings: dict[str, int | None], env: dict[str, str] | None = None) -> dict[str, object]:
    result: dict[str, object] = json.loads(run_probe(PROBE, settings, env)[-1])
    return result


@glibc_only
def test_the_defaults_cap_the_arenas_and_keep_the_sliding_threshold() -> None:
    got = probe({})
    assert got["applied"] == {"MALLOC_ARENA_MAX": 2, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": 16}
    assert got["heaps"] <= 2
    assert got["mapped"] == 0  # after a 4 MB free, a 2 MB block comes from the heap (glibc's way)


@glibc_only
def test_a_fixed_threshold_maps_big_blocks() -> None:
    got = probe({"malloc_mmap_threshold_bytes": 1 << 20, "onednn_primitive_cache_capacity": None})
    assert got["applied"] == {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 1 << 20}
    assert got["mapped"] == 1  # 2 MB is over the fixed 1 MB threshold: mapped, unmapped on free


@glibc_only
def test_without_settings_glibc_keeps_its_sliding_threshold() -> None:
    nothing: dict[str, int | None] = dict.fromkeys(
        ("malloc_arena_max", "malloc_mmap_threshold_bytes", "onednn_primitive_cache_capacity")
    )
    got = probe(nothing)
    assert got["applied"] == {}
    assert got["mapped"] == 0  # after a 4 MB free, a 2 MB block comes from the heap


@glibc_only
def test_an_operators_environment_wins() -> None:
    got = probe(
        {"malloc_mmap_threshold_bytes": 1 << 20, "onednn_primitive_cache_capacity": None},
        env={"MALLOC_MMAP_THRESHOLD_": str(8 << 20)},
    )
    assert got["applied"] == {"MALLOC_ARENA_MAX": 2}
    assert got["mapped"] == 0  # glibc read the operator's 8 MB threshold, ragd left it alone


def test_out_of_range_settings_are_refused() -> None:
    from pydantic import ValidationError

    from ragd.config import MemorySettings

    with pytest.raises(ValidationError):
        MemorySettings(malloc_arena_max=0)
    with pytest.raises(ValidationError):
        MemorySettings(malloc_mmap_threshold_bytes=1 << 30)
    with pytest.raises(ValidationError):
        MemorySettings(onednn_primitive_cache_capacity=-1)


@glibc_only
def test_an_operators_glibc_tunable_wins_too() -> None:
    got = probe(
        {"malloc_mmap_threshold_bytes": 1 << 20, "onednn_primitive_cache_capacity": None},
        env={"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"},
    )
    assert got["applied"] == {"MALLOC_MMAP_THRESHOLD_": 1 << 20}


# Runs one oneDNN kernel twice (an fp32 inner product on oneDNN tensors: oneDNN's own path on any
# x86 CPU, whose kernels share the primitive cache with the bf16 encoder's) and reports oneDNN's
# verbose log of kernel creations: "create:cache_hit" is a kernel taken from the cache.
ONEDNN_PROBE = r"""
import json, sys
from ragd.allocator import tune_allocator
from ragd.config import MemorySettings

applied = tune_allocator(MemorySettings(**json.loads(sys.argv[1])))
import torch
import torch.utils.mkldnn

layer = torch.utils.mkldnn.to_mkldnn(torch.nn.Linear(8, 8))
with torch.inference_mode():
    for _ in range(2):
        layer(torch.ones(4, 8).to_mkldnn())
print(json.dumps({"applied": applied}))
"""


def onednn_probe(
    settings: dict[str, int | None], env: dict[str, str] | None = None
) -> tuple[dict[str, int], int]:
    """The knobs ``tune_allocator`` set, and how many kernels oneDNN took from its cache."""
    lines = run_probe(ONEDNN_PROBE, settings, {"ONEDNN_VERBOSE": "all", **(env or {})})
    applied: dict[str, int] = json.loads(lines[-1])["applied"]
    return applied, sum("create:cache_hit" in line for line in lines)


def test_the_kernel_cache_size_reaches_onednn() -> None:
    applied, hits = onednn_probe({"onednn_primitive_cache_capacity": 0})
    assert applied["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == 0
    assert hits == 0  # no cache: the second run creates its kernels again

    applied, hits = onednn_probe({})
    assert applied["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == 16
    assert hits > 0  # the second run reuses the first run's kernels


def test_an_operators_kernel_cache_size_wins() -> None:
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"):
        applied, hits = onednn_probe({"onednn_primitive_cache_capacity": 0}, env={name: "1024"})
        assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in applied
        assert hits > 0  # oneDNN read the operator's 1024, ragd did not set 0


def test_an_empty_variable_hands_a_knob_back_to_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragd.config import Settings

    monkeypatch.setenv("RAGD_MEMORY__MALLOC_ARENA_MAX", "")
    monkeypatch.setenv("RAGD_MEMORY__ONEDNN_PRIMITIVE_CACHE_CAPACITY", " ")
    memory = Settings().memory
    assert memory.malloc_arena_max is None
    assert memory.onednn_primitive_cache_capacity is None
    assert memory.malloc_mmap_threshold_bytes is None

    monkeypatch.setenv("RAGD_MEMORY__MALLOC_ARENA_MAX", "abc")
    with pytest.raises(ValueError, match="malloc_arena_max"):
        Settings()
