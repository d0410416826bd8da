"""Native memory settings for ragd's long-running processes: glibc's malloc and oneDNN's cache.

Why: the server's native memory (onnxruntime, torch, numpy, llama.cpp, libpq) comes from glibc's
malloc, whose defaults suit short programs. With them, a long-running ragd's resident memory
drifted and swung by hundreds of MB in the reliability soak (``bench/load.py soak``); capping the
arenas and fixing the mmap threshold together held it flat and about 250 MB lower (their shares
were not measured apart):

- **Arenas**: up to 8 per core, one per thread that allocates while another holds the lock.
  The server's request, encoder, model and job threads spread their frees over many arenas,
  whose free pages stay in the process.
- **The sliding mmap threshold**: a freed mapping raises the threshold (up to 32 MB), so from
  then on the encoder's activations and numpy arrays of that size come from the heap, where
  freeing them rarely gives the pages back.

:func:`tune_allocator` sets them through ``mallopt`` before the process starts its threads. By
default only the arena cap: a fixed 1 MB threshold held about 900 MB less after the bf16 encoder
had run every shape of its grid (253 vs 1,137 MB over 158 shapes, ``bench/encoder_memory.py``),
but it maps and zero-fills every big activation afresh, and those passes ran 2x slower (32 vs
17 s a sweep), so it is the operator's trade (``RAGD_MEMORY__MALLOC_MMAP_THRESHOLD_BYTES``).

- **oneDNN's primitive cache**: torch's bf16 passes (the encoder's big batches on CPUs with AMX
  or AVX512-BF16) run oneDNN kernels, and oneDNN keeps its last 1,024 kernels with their
  buffers: a new set for every input shape. After the encoder had run each of its 158 grid
  shapes, the process held 795 MB more, 197 MB of it still after a ``malloc_trim`` (which the
  server calls every minute); keeping 16 kernels, it held 264 MB more, 120 MB after the trim, at
  the same speed (``bench/encoder_memory.py --trim``, AVX512-BF16). ragd sets the size through the
  environment variable oneDNN reads when torch first runs a kernel, so before that.

A ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` or ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` in the
environment (or the same malloc knob in ``GLIBC_TUNABLES``) is the operator's choice: the library
has already read it, and ragd leaves that knob alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

from ragd.config import MemorySettings

log = logging.getLogger(__name__)

# <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: What oneDNN reads for its primitive cache size, the current name first (DNNL_ is the old one).
ONEDNN_CACHE_VARS = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")


def tune_allocator(settings: MemorySettings) -> dict[str, int]:
    """Apply ``settings`` to this process's malloc and oneDNN; return the knobs set.

    Call it first thing in a process's main thread: an arena limit cannot take back arenas that
    threads already made, and oneDNN reads its cache size once, at torch's first kernel.
    """
    applied: dict[str, int] = {}
    capacity = settings.onednn_primitive_cache_capacity
    if capacity is not None and not any(name in os.environ for name in ONEDNN_CACHE_VARS):
        os.environ[ONEDNN_CACHE_VARS[0]] = str(capacity)
        applied[ONEDNN_CACHE_VARS[0]] = capacity
    if platform.libc_ver()[0] != "glibc":
        return applied
    wanted = {
        "MALLOC_ARENA_MAX": (M_ARENA_MAX, "glibc.malloc.arena_max", settings.malloc_arena_max),
        "MALLOC_MMAP_THRESHOLD_": (
            M_MMAP_THRESHOLD,
            "glibc.malloc.mmap_threshold",
            settings.malloc_mmap_threshold_bytes,
        ),
    }
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    for env_name, (param, tunable, value) in wanted.items():
        if value is None or env_name in os.environ or f"{tunable}=" in tunables:
            continue
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
            applied[env_name] = value
        else:  # mallopt returns 0 on error (and sets no errno): glibc's default stays
            log.warning("mallopt refused a setting", extra={"setting": env_name, "value": value})
    return applied
