"""Dense embedder backends side by side: torch fp32, ONNX fp32, ONNX int8.

    nice -n 10 .venv/bin/python bench/embedder.py [--docs 1000] [--queries 300]

For each ``RAGD_EMBEDDING__PRECISION`` (and onnx with ``RAGD_EMBEDDING__BF16=on``, which runs
big passes on torch bf16; its row is skipped where the CPU has no native bf16): one-query latency
p50/p95 (SciFact train claims, one at a time, as search and the guards embed them), passage
throughput (SciFact abstracts, title + text, batches of 64, 256-token limit), and agreement with
torch fp32 (cosine min/mean over the passages). Retrieval quality per backend: ``ragd eval
retrieval`` with the same variable.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()

    from ragd.config import Settings
    from ragd.privacy import disable_telemetry
    from ragd.retrieval.registry import build_embedder

    disable_telemetry()
    docs = [json.loads(line) for line in (DATA / "corpus.jsonl").open()][: args.docs]
    passages = [f"{d['title']}\n\n{d['text']}" for d in docs]
    queries = [json.loads(line)["text"] for line in (DATA / "queries.train.jsonl").open()][: args.queries]
    cache = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    reference = None
    print(f"{len(queries)} queries, {len(passages)} passages")
    print(
        f"{'precision':<13}{'load s':>9}{'query p50 ms':>14}{'p95 ms':>8}{'passages/s':>12}"
        f"{'cos min':>9}{'cos mean':>10}"
    )
    from ragd.retrieval.onnx_embedder import native_bf16

    variants = [("fp32", "off"), ("onnx", "off"), ("onnx-int8", "off")]
    variants += [("onnx", "on")] if native_bf16() else []
    for precision, bf16 in variants:
        settings = Settings(  # type: ignore[arg-type]
            env="test", data_dir=cache, log_json=False, embedding={"precision": precision, "bf16": bf16}
        )
        t = time.perf_counter()
        emb = build_embedder(settings)
        setup_s = time.perf_counter() - t
        for q in queries[:10]:
            emb.embed_query(q)
        lat = []
        for q in queries:
            t = time.perf_counter()
            emb.embed_query(q)
            lat.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        vecs = emb.embed_documents(passages)
        rate = len(passages) / (time.perf_counter() - t)
        if reference is None:
            reference = vecs
        cos = np.sum(reference * vecs, axis=1)
        print(
            f"{precision + ('+bf16' if bf16 == 'on' else ''):<13}{setup_s:>9.1f}"
            f"{np.percentile(lat, 50):>14.1f}{np.percentile(lat, 95):>8.1f}"
            f"{rate:>12.1f}{cos.min():>9.4f}{cos.mean():>10.4f}"
        )


if __name__ == "__main__":
    main()
