"""Query latency while ingestion shares the embedder: the encoder gate against a plain queue.

    nice -n 10 .venv/bin/python bench/encoder_contention.py [--docs 512] [--rounds 2]

One thread embeds SciFact abstracts in blocks of 64 (as the in-process ingestion worker does);
another embeds SciFact claims one at a time (as search does), 20 ms apart, until the abstracts
are done. Modes, interleaved for ``--rounds``:

- ``fifo``: the ingestion thread is not marked as bulk, so both share the gate as equals and
  each ingestion run holds the encoder for a whole block of 64 (what a plain lock did);
- ``gate/N``: the ingestion thread runs under :func:`~ragd.retrieval.embedder.bulk_embedding`
  (runs of N passages, queries first), as the server's ingestion workers do, for each N of
  ``--bulk-batches``.

Prints per mode: query latency p50/p95/p99 and ingestion throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from ragd.retrieval.base import Embedder


def embed_queries_until(
    emb: Embedder, queries: list[str], stop: threading.Event, gap_s: float
) -> list[float]:
    """Embed ``queries`` one at a time, ``gap_s`` apart, as search does, until ``stop`` is set;
    the latency of each in milliseconds."""
    lat: list[float] = []
    i = 0
    while not stop.is_set():
        t = time.perf_counter()
        emb.embed_query(queries[i % len(queries)])
        lat.append((time.perf_counter() - t) * 1000)
        i += 1
        stop.wait(gap_s)
    return lat


def run_mode(emb: Embedder, passages: list[str], queries: list[str], bulk: bool) -> dict[str, float]:
    """Ingest ``passages`` on one thread while another embeds queries; latency and throughput."""
    from ragd.retrieval.embedder import bulk_embedding

    done = threading.Event()

    def ingest() -> None:
        with bulk_embedding() if bulk else nullcontext():
            for start in range(0, len(passages), 64):
                emb.embed_documents(passages[start : start + 64])
        done.set()

    t0 = time.perf_counter()
    worker = threading.Thread(target=ingest)
    worker.start()
    lat = embed_queries_until(emb, queries, done, gap_s=0.02)
    worker.join()
    took = time.perf_counter() - t0
    return {
        "queries": len(lat),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "passages_per_s": round(len(passages) / took, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bulk-batches", default="16,8,4", help="Bulk run sizes to try.")
    args = ap.parse_args()

    from ragd.config import Settings
    from ragd.privacy import disable_telemetry
    from ragd.retrieval import embedder as embedder_module
    from ragd.retrieval.onnx_embedder import OnnxEmbedder
    from ragd.retrieval.registry import build_embedder

    disable_telemetry()
    docs = [json.loads(line) for line in (DATA / "corpus.jsonl").open()][: args.docs]
    passages = [f"{d['title']}\n\n{d['text']}" for d in docs]
    queries = [json.loads(line)["text"] for line in (DATA / "queries.train.jsonl").open()][:300]
    settings = Settings(  # type: ignore[arg-type]
        env="test", data_dir=Path(tempfile.mkdtemp(prefix="bench-gate-")), log_json=False
    )
    emb = build_embedder(settings)
    assert isinstance(emb, OnnxEmbedder), "the default embedder runs on onnxruntime"
    for q in queries[:10]:
        emb.embed_query(q)
    print(f"{len(passages)} passages in blocks of 64 on one thread; claims one at a time on another")
    print(f"{'mode':<11}{'round':>6}{'queries':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'passages/s':>12}")
    for r in range(args.rounds):
        for size in [0, *(int(b) for b in args.bulk_batches.split(","))]:
            mode = f"gate/{size}" if size else "fifo"
            embedder_module.BULK_BATCH_SIZE = size or embedder_module.BULK_BATCH_SIZE
            got = run_mode(emb, passages, queries, bulk=bool(size))
            print(
                f"{mode:<11}{r + 1:>6}{got['queries']:>9}{got['p50_ms']:>8}{got['p95_ms']:>8}"
                f"{got['p99_ms']:>8}{got['passages_per_s']:>12}",
                flush=True,
            )


if __name__ == "__main__":
    main()
