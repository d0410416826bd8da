"""Resident memory the bf16 torch encoder keeps per input shape, over its whole shape grid.

    .venv/bin/python bench/encoder_memory.py [--sweeps 3] [--trim]
    MALLOC_MMAP_THRESHOLD_=1048576 .venv/bin/python bench/encoder_memory.py   # the allocator A/B
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=16 .venv/bin/python bench/encoder_memory.py   # ragd's default

Runs :class:`ragd.retrieval.onnx_embedder.Bf16Forward` once on every grid shape that takes the
bf16 path (rows of ``BF16_ROWS`` x tokens in ``BF16_TOKEN_STEP`` steps up to 256, at least
``BF16_MIN_TOKENS``), in a shuffled order, and prints RSS growth and seconds per sweep. Later
sweeps show whether the growth is bounded (it is, when they add nothing); ``--trim`` also prints
it after one ``malloc_trim(0)``, as the server calls every minute (what stays is live, not free
heap). This script does not apply ragd's own settings (``ragd.allocator``): the environment
decides, so one command per setting gives the A/B. Torch runs bf16 natively
only on CPUs with AMX or AVX512-BF16; elsewhere it runs but the figures mean little.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    from ragd.api.heap import resident_bytes

    return (resident_bytes() or 0) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--trim", action="store_true", help="Also print RSS after malloc_trim(0).")
    args = ap.parse_args()

    from ragd.api.heap import trim_heap
    from ragd.llm_serving.model_files import minilm_dir
    from ragd.retrieval import onnx_embedder as oe

    forward = oe.Bf16Forward(minilm_dir())
    shapes = [
        (r, t)
        for r in oe.BF16_ROWS
        for t in range(oe.BF16_TOKEN_STEP, 257, oe.BF16_TOKEN_STEP)
        if r * t >= oe.BF16_MIN_TOKENS
    ]
    random.Random(0).shuffle(shapes)
    knobs = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "ONEDNN_", "DNNL_"))}
    base = rss_mb()
    print(f"{len(shapes)} shapes, native bf16: {oe.native_bf16()}, {knobs or 'library defaults'}")
    print(f"start RSS {base:.0f} MB")
    for sweep in range(1, args.sweeps + 1):
        started = time.perf_counter()
        for rows, tokens in shapes:
            forward(
                {
                    "input_ids": np.full((rows, tokens), 2000, np.int64),
                    "attention_mask": np.ones((rows, tokens), np.int64),
                    "token_type_ids": np.zeros((rows, tokens), np.int64),
                }
            )
        line = f"sweep {sweep}: RSS +{rss_mb() - base:.0f} MB, {time.perf_counter() - started:.1f} s"
        if args.trim:
            trim_heap()
            line += f"; after malloc_trim +{rss_mb() - base:.0f} MB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
