"""Ingestion throughput: ragd's pipeline vs a plain LangChain pipeline, same corpus, same run.

    nice -n 10 .venv/bin/python bench/ingest.py [--limit N] [--precision fp32|onnx|onnx-int8]
        [--bf16 auto|on|off]

ragd: every SciFact abstract is a document (title + abstract as plain text) going through the
real job function (sniff, unstructured parse, token-bounded chunking, BM25 + MiniLM embedding,
Qdrant local-mode upsert + publish, metadata store), one job per document as the server runs
them. LangChain: RecursiveCharacterTextSplitter (1000/200) + HuggingFaceEmbeddings (the same
MiniLM files) + QdrantVectorStore.add_documents into Qdrant local mode.

Prints documents/s, chunks/s and peak memory (RSS high-water mark of a child process per
pipeline, so the two do not share caches), and nDCG@10 of dense retrieval on SciFact train
queries for both indexes (a document's score is its best chunk), to show quality is unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"


def load_corpus(limit: int | None) -> list[dict[str, str]]:
    docs = [json.loads(line) for line in (DATA / "corpus.jsonl").open()]
    return docs[:limit] if limit else docs


def load_queries(doc_ids: set[str], n: int) -> tuple[dict[str, str], dict[str, set[str]]]:
    qrels: dict[str, set[str]] = defaultdict(set)
    for line in (DATA / "qrels.train.tsv").open():
        parts = line.strip().split("\t")
        if len(parts) >= 3 and parts[0] != "query-id" and parts[1] in doc_ids and parts[2] != "0":
            qrels[parts[0]].add(parts[1])
    queries = {}
    for line in (DATA / "queries.train.jsonl").open():
        q = json.loads(line)
        if q["_id"] in qrels:
            queries[q["_id"]] = q["text"]
    ids = sorted(queries)[:n]
    return {i: queries[i] for i in ids}, {i: qrels[i] for i in ids}


def ndcg10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def _cpu() -> float:
    """CPU seconds of this process, all threads (robust to other load on a shared machine)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def doc_text(d: dict[str, str]) -> str:
    return f"{d['title']}\n\n{d['text']}"


def run_ragd(
    docs: list[dict[str, str]], precision: str, bf16: str, batch: int, queries: dict[str, str], out: Any
) -> None:
    sys.path.insert(0, str(ROOT))
    from sqlmodel import Session, select

    from ragd.allocator import tune_allocator
    from ragd.config import Settings
    from ragd.db import build_engine, migrate
    from ragd.db.models import Collection, DocumentVersion, JobStatus
    from ragd.ingestion.components import blob_store, build_pipeline, build_service
    from ragd.ingestion.job_queue import claim_job
    from ragd.ingestion.service import UploadOptions
    from ragd.privacy import disable_telemetry
    from ragd.retrieval.base import SearchFilter
    from ragd.retrieval.qdrant_connection import open_qdrant

    disable_telemetry()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ragd-"))
    settings = Settings(  # type: ignore[arg-type]
        env="test", data_dir=tmp, log_json=False, embedding={"precision": precision, "bf16": bf16}
    )
    tune_allocator(settings.memory)  # as `ragd ingest` and the server's processes do
    engine = build_engine(settings)
    migrate(engine)
    client = open_qdrant(settings)
    pipeline = build_pipeline(settings, engine, client)

    class NoQueue:
        def submit(self, job_id: str) -> None: ...
        def start(self) -> None: ...
        def stop(self) -> None: ...
        def health(self) -> Any: ...

    service = build_service(settings, engine, NoQueue(), pipeline)  # type: ignore[arg-type]
    with Session(engine) as s:
        coll = Collection(tenant="bench", name="scifact")
        s.add(coll)
        s.commit()
        cid = coll.id
    blobs = blob_store(settings)
    # Warm-up outside the timed region: model load, first parse of a real abstract (imports
    # unstructured and its text classifiers), as LangChain's embedder is warmed.
    pipeline.embedder.embed_documents(["warm up"])
    from ragd.ingestion.parsers import parse
    from ragd.ingestion.sniffing import FileKind

    parse(doc_text(docs[0]).encode(), FileKind.text)
    t0, c0 = time.perf_counter(), _cpu()
    chunks = 0
    failed = 0
    # As `ragd ingest` does: register every file (blob + version + queued job), then run the
    # jobs in batches whose chunks are embedded together (IngestPipeline.run_batch).
    job_ids = []
    for d in docs:
        blob = blobs.put_bytes(doc_text(d).encode(), settings.ingestion.max_upload_bytes)
        res = service.accept(
            tenant="bench", collection_id=cid, filename=f"{d['_id']}.txt", blob=blob, options=UploadOptions()
        )
        job_ids.append(res.job_id)
    for start in range(0, len(job_ids), batch):
        jobs = [claim_job(engine, j, "bench", 600) for j in job_ids[start : start + batch]]
        statuses = pipeline.run_batch([j for j in jobs if j is not None], "bench", 600)
        failed += sum(1 for st in statuses if st != JobStatus.ready)
    with Session(engine) as s:
        chunks = sum(v.chunk_count for v in s.exec(select(DocumentVersion)))
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    # Quality: dense retrieval, a document's score is its best chunk.
    assert pipeline.index is not None
    names = {}
    scores = []
    for text in queries.values():
        vec = pipeline.embedder.embed_query(text)
        hits = pipeline.index.query(
            SearchFilter(tenant="bench", collection_ids=[cid]), mode="dense", limit=50, dense=vec.tolist()
        )
        ranked: list[str] = []
        for h in hits:
            doc_id = names.setdefault(h.document_id, h.source.removesuffix(".txt") if h.source else "")
            if doc_id not in ranked:
                ranked.append(doc_id)
        scores.append(ranked)
    out.put(
        {
            "name": f"ragd ({precision}{', bf16' if getattr(pipeline.embedder, 'bf16', False) else ''})",
            "docs": len(docs) - failed,
            "chunks": chunks,
            "seconds": elapsed,
            "cpu": cpu,
            "failed": failed,
            "rankings": scores,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    client.close()


def run_langchain(docs: list[dict[str, str]], queries: dict[str, str], out: Any) -> None:
    sys.path.insert(0, str(ROOT))
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_qdrant import QdrantVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qm

    from ragd.llm_serving.model_files import minilm_dir
    from ragd.privacy import disable_telemetry

    disable_telemetry()
    tmp = Path(tempfile.mkdtemp(prefix="bench-lc-"))
    embeddings = HuggingFaceEmbeddings(
        model_name=str(minilm_dir()), encode_kwargs={"normalize_embeddings": True}
    )
    embeddings.embed_documents(["warm up"])
    client = QdrantClient(path=str(tmp / "qdrant"))
    client.create_collection("lc", vectors_config=qm.VectorParams(size=384, distance=qm.Distance.COSINE))
    store = QdrantVectorStore(client=client, collection_name="lc", embedding=embeddings)
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    t0, c0 = time.perf_counter(), _cpu()
    pieces = splitter.split_documents(
        [Document(page_content=doc_text(d), metadata={"doc_id": d["_id"]}) for d in docs]
    )
    store.add_documents(pieces, batch_size=64)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    scores = []
    for text in queries.values():
        ranked: list[str] = []
        for doc in store.similarity_search(text, k=50):
            if doc.metadata["doc_id"] not in ranked:
                ranked.append(doc.metadata["doc_id"])
        scores.append(ranked)
    out.put(
        {
            "name": "LangChain plain",
            "docs": len(docs),
            "chunks": len(pieces),
            "seconds": elapsed,
            "cpu": cpu,
            "failed": 0,
            "rankings": scores,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    client.close()


def _result_of(proc: Any, q: Any) -> Any:
    """The child's report, or exit with its exit code when it died without one (a child that
    fails, on a bad RAGD_* variable for instance, would otherwise leave this waiting forever)."""
    import queue

    while True:
        try:
            return q.get(timeout=5)
        except queue.Empty:
            if not proc.is_alive():
                sys.exit(f"{proc.name} exited with code {proc.exitcode} before reporting")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="Only the first N abstracts.")
    ap.add_argument("--precision", default="onnx", choices=["fp32", "onnx", "onnx-int8"])
    ap.add_argument("--bf16", default="auto", choices=["auto", "on", "off"], help="RAGD_EMBEDDING__BF16.")
    ap.add_argument("--queries", type=int, default=300, help="Train queries for the quality check.")
    ap.add_argument("--batch", type=int, default=32, help="ragd: documents per run_batch (1 = one by one).")
    args = ap.parse_args()
    docs = load_corpus(args.limit)
    queries, qrels = load_queries({d["_id"] for d in docs}, args.queries)
    ctx = mp.get_context("spawn")
    results = []
    for target, extra in ((run_langchain, ()), (run_ragd, (args.precision, args.bf16, args.batch))):
        q = ctx.Queue()
        proc = ctx.Process(target=target, args=(docs, *extra, queries, q) if extra else (docs, queries, q))
        proc.start()
        results.append(_result_of(proc, q))
        proc.join()
    print(f"SciFact abstracts: {len(docs)}; quality on {len(queries)} train queries (dense nDCG@10)")
    print(
        f"{'pipeline':<22}{'docs/s':>9}{'chunks':>8}{'chunks/s':>10}{'docs/cpu-s':>11}"
        f"{'peak MB':>9}{'nDCG@10':>9}"
    )
    for r in results:
        nd = sum(ndcg10(rk, qrels[qid]) for rk, qid in zip(r["rankings"], queries, strict=True)) / max(
            1, len(queries)
        )
        print(
            f"{r['name']:<22}{r['docs'] / r['seconds']:>9.1f}{r['chunks']:>8}"
            f"{r['chunks'] / r['seconds']:>10.1f}{r['docs'] / r['cpu']:>11.2f}"
            f"{r['peak_rss_mb']:>9.0f}{nd:>9.3f}" + (f"  ({r['failed']} failed)" if r["failed"] else "")
        )
    base, ours = results[0], results[1]
    print(f"speed-up (docs/s): {(ours['docs'] / ours['seconds']) / (base['docs'] / base['seconds']):.2f}x")
    print(
        f"speed-up (docs per CPU-second): {(ours['docs'] / ours['cpu']) / (base['docs'] / base['cpu']):.2f}x"
    )


if __name__ == "__main__":
    main()
