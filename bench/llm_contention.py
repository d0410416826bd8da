"""How fast the embedded model answers while the encoder works on the same CPU.

    .venv/bin/python bench/llm_contention.py [--repeats 4] [--query-rate 4] [--threads 1,2]

The embedded server runs llama.cpp (the chat answer) and MiniLM on onnxruntime (search's query,
the agent's evidence scoring, ingestion) in one process on the same cores. This times one chat
answer the way the agent asks for it (the system prompt, about 450 tokens of numbered evidence
and a question; then up to 48 tokens) with llama.cpp on each of ``--threads`` while:

- ``idle``: nothing else runs;
- ``search``: another thread embeds SciFact claims one at a time, ``1 / --query-rate`` s apart;
- ``ingest``: another thread embeds SciFact abstracts as the ingestion worker does (bulk passes);
- ``ingest@niceN``: the same on an onnxruntime session of its own, created by that thread after
  it lowered its own CPU priority by N (the session's threads inherit it);
- ``ingest@tN``: the same on a session of its own with N intra-op threads;

with onnxruntime's intra-op threads spinning between ops (its default) and sleeping instead
(``search`` and ``ingest``).
Prints per cell the medians of prefill time and decode speed, and the background's own figures
(query p95, passages embedded per second).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
sys.path.insert(0, str(ROOT))

EVIDENCE_PASSAGES = 4
EVIDENCE_CHARS = 420  # per passage: the agent shows its best sentences, about this much
MAX_TOKENS = 48


def answer_prompts(docs: list[dict[str, Any]], claims: list[str], n: int) -> list[list[dict[str, str]]]:
    """``n`` agent-style answer prompts, each over different evidence (no KV-cache reuse
    beyond the shared system prompt, as between two users' turns)."""
    from ragd.agents.prompts import SYSTEM_PROMPT

    out = []
    for i in range(n):
        picked = docs[i * EVIDENCE_PASSAGES : (i + 1) * EVIDENCE_PASSAGES]
        lines = [f"[{k + 1}] {d['title']}: {d['text'][:EVIDENCE_CHARS]}" for k, d in enumerate(picked)]
        user = "Evidence:\n" + "\n".join(lines) + f"\n\nQuestion: {claims[i]}"
        out.append([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}])
    return out


def time_answer(llm: Any, messages: list[dict[str, str]]) -> tuple[float, float, int]:
    """(prefill ms, decode tokens/s, prompt tokens) of one streamed answer."""
    started = time.perf_counter()
    first: float | None = None
    pieces = 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=MAX_TOKENS, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            pieces += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    first = first or end
    prompt_tokens = llm.n_tokens - pieces
    decode = (pieces - 1) / (end - first) if pieces > 1 and end > first else 0.0
    return (first - started) * 1000, decode, prompt_tokens


class Background:
    """Encoder work on another thread until stopped."""

    def __init__(self, work: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=work, args=(self.stop,), daemon=True)

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4, help="Answers timed per cell.")
    ap.add_argument("--query-rate", type=float, default=4.0, help="Search queries per second.")
    ap.add_argument("--threads", default="1,2", help="llama.cpp thread counts to try.")
    ap.add_argument("--loads", default="idle,search,ingest")
    args = ap.parse_args()

    from llama_cpp import Llama

    from bench.encoder_contention import embed_queries_until
    from ragd.config import Settings
    from ragd.llm_serving.model_files import smollm2_gguf
    from ragd.privacy import disable_telemetry
    from ragd.retrieval.embedder import bulk_embedding
    from ragd.retrieval.onnx_embedder import OnnxEmbedder, export_onnx
    from ragd.retrieval.registry import build_embedder

    disable_telemetry()
    docs = [json.loads(line) for line in (DATA / "corpus.jsonl").open()][:2000]
    claims = [json.loads(line)["text"] for line in (DATA / "queries.train.jsonl").open()][:400]
    passages = [f"{d['title']}\n\n{d['text']}" for d in docs[1000:1512]]
    settings = Settings(  # type: ignore[arg-type]
        env="test", data_dir=Path(tempfile.mkdtemp(prefix="bench-llm-contention-")), log_json=False
    )
    reference = build_embedder(settings)
    assert isinstance(reference, OnnxEmbedder), "the default embedder runs on onnxruntime"
    onnx_path = export_onnx(
        reference.path, settings.onnx_cache_dir, int8=False, max_seq_length=reference.max_seq_length
    )
    embedders = {
        spin: OnnxEmbedder(reference.path, onnx_path, name="bench", spinning=spin) for spin in (True, False)
    }

    def search_load(emb: OnnxEmbedder, record: dict[str, Any]) -> Callable[[threading.Event], None]:
        def run(stop: threading.Event) -> None:
            lat = embed_queries_until(emb, claims, stop, gap_s=1 / args.query_rate)
            record["query_p95_ms"] = round(float(np.percentile(lat, 95)), 1) if lat else None

        return run

    def ingest_load(
        emb: OnnxEmbedder | None, record: dict[str, Any], nice: int = 0, threads: int = 0
    ) -> Callable[[threading.Event], None]:
        def run(stop: threading.Event) -> None:
            if nice:  # this thread, and the onnxruntime threads it creates below, run niced
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            encoder = emb or OnnxEmbedder(reference.path, onnx_path, name="bench", threads=threads)
            encoder.embed_documents(passages[:2])
            done, t0 = 0, time.perf_counter()
            with bulk_embedding():
                while not stop.is_set():
                    # Blocks of 16 (the worker's are 64): throughput counted finely enough for
                    # a cell of a few answers.
                    start = done % len(passages)
                    encoder.embed_documents(passages[start : start + 16])
                    done += len(passages[start : start + 16])
            record["passages_per_s"] = round(done / (time.perf_counter() - t0), 1)

        return run

    prompts = answer_prompts(docs, claims, 200)
    used = 0
    print(
        f"{'threads':>7} {'load':<7} {'spin':<5} {'prefill ms':>11} {'decode tok/s':>13} "
        f"{'prompt tok':>11}  background"
    )
    for n_threads in (int(t) for t in args.threads.split(",")):
        llm = Llama(model_path=str(smollm2_gguf()), n_ctx=2048, n_threads=n_threads, verbose=False)
        time_answer(llm, prompts[-1])  # warm up: the system prompt is in the KV cache from here on
        for load in args.loads.split(","):
            for spin in (True, False) if load in ("search", "ingest") else (True,):
                record: dict[str, Any] = {}
                emb = embedders[spin]
                work: Callable[[threading.Event], None] | None = None
                if load == "search":
                    work = search_load(emb, record)
                elif load == "ingest":
                    work = ingest_load(emb, record)
                elif load.startswith("ingest@nice"):  # a session of its own, made in the niced thread
                    work = ingest_load(None, record, nice=int(load.removeprefix("ingest@nice")))
                elif load.startswith("ingest@t"):  # a session of its own with this many threads
                    work = ingest_load(None, record, threads=int(load.removeprefix("ingest@t")))
                figures = []
                with Background(work) if work else nullcontext():
                    for _ in range(args.repeats):
                        figures.append(time_answer(llm, prompts[used % (len(prompts) - 1)]))
                        used += 1
                prefill = statistics.median(f[0] for f in figures)
                decode = statistics.median(f[1] for f in figures)
                tokens = round(statistics.median(f[2] for f in figures))
                print(
                    f"{n_threads:>7} {load:<7} {'on' if spin else 'off':<5} {prefill:>11.0f} "
                    f"{decode:>13.1f} {tokens:>11}  {record or ''}",
                    flush=True,
                )
        del llm


if __name__ == "__main__":
    main()
