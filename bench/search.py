"""Search latency on the SciFact index: ragd's HTTP API vs a plain QdrantVectorStore.

    python bench/search.py [--data DIR] [--queries N] [--embedder NAME_OR_PATH]

1. Builds (or reuses) the SciFact evaluation index with ``ragd eval retrieval``'s code, then
   copies its points (vectors included, no re-embedding) into a fresh ragd data dir as one ragd
   collection of one tenant, with an admin API key.
2. Starts ``ragd serve`` on that data dir (Qdrant local mode, SQLite) and sends the dev queries
   to ``POST /v1/search`` in dense, sparse and hybrid mode at concurrency 1 and 16 (httpx).
3. Stops the server and runs the same queries through ``langchain_qdrant.QdrantVectorStore.
   similarity_search`` (dense, MiniLM via langchain-huggingface) on the same Qdrant storage.

Prints p50 / p95 latency per configuration. Query embedding is included everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
TENANT = "bench"
COLLECTION = "scifact"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def synthetic_points(n_chunks: int = 9070) -> list[tuple[str, list[float], object, dict[str, object]]]:
    """SciFact-sized chunks with real BM25 vectors and random unit dense vectors.

    Latency depends on the index size and vector shapes, not on what the vectors mean, so this
    measures search speed without the ~10 CPU-minutes of embedding the corpus.
    """
    import json
    import uuid

    import numpy as np

    from ragd.retrieval.bm25_encoder import BM25Encoder

    docs = [json.loads(line) for line in open(DATA / "corpus.jsonl", encoding="utf-8")]
    texts = [f"{d['title']}\n{d['text']}" for d in docs]
    texts = (texts + [t[len(t) // 2 :] for t in texts])[:n_chunks]
    sparse = BM25Encoder().encode_documents(texts)
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(len(texts), 384)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    return [
        (
            str(uuid.uuid5(uuid.NAMESPACE_OID, str(i))),
            dense[i].tolist(),
            sparse[i],
            {
                "text": texts[i][:2000],
                "document_id": str(i),
                "version": 1,
                "chunk_index": 0,
                "acl": ["*"],
                "source": f"{i}.txt",
            },
        )
        for i in range(len(texts))
    ]


def prepare(
    data_dir: Path, cache_dir: Path, embedder_model: str | None, synthetic: bool = False
) -> tuple[str, list[str], str]:
    """Index (cached), copy into a ragd data dir; returns (api key, queries, qdrant collection)."""
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qm
    from sqlmodel import Session

    from ragd.config import Settings
    from ragd.db.engine import build_engine, migrate
    from ragd.db.models import Collection, Role
    from ragd.retrieval.beir_eval import load_beir, open_cached_index, split_query_ids
    from ragd.retrieval.registry import build_embedder, build_index, build_sparse_encoder, resolve_embedder
    from ragd.security.api_keys import create_key

    cache_settings = Settings(data_dir=cache_dir)
    data = load_beir(DATA / "corpus.jsonl", DATA / "queries.train.jsonl", DATA / "qrels.train.tsv")
    _, dev = split_query_ids(data.queries)
    model = embedder_model or cache_settings.embedding.model
    emb = build_embedder(cache_settings, model=model)
    path, _ = resolve_embedder(model)
    if not synthetic:
        src_client, src, _ = open_cached_index(
            cache_settings,
            DATA / "corpus.jsonl",
            data.corpus,
            emb,
            path,
            build_sparse_encoder(cache_settings),
        )

    serve_dir = data_dir / "serve"
    shutil.rmtree(serve_dir, ignore_errors=True)
    settings = Settings(data_dir=serve_dir, embedding={"model": str(path) if embedder_model else model})
    engine = build_engine(settings)
    migrate(engine)
    with Session(engine, expire_on_commit=False) as s:
        coll = Collection(tenant=TENANT, name=COLLECTION)
        s.add(coll)
        s.flush()
        key = create_key(s, tenant=TENANT, role=Role.admin, name="bench").plaintext
        s.commit()
    dst_client = QdrantClient(path=str(settings.qdrant_path))
    dst = build_index(settings, dst_client, emb)
    dst.ensure_collection()
    offset = None
    copied = 0
    if synthetic:
        batch = [
            qm.PointStruct(
                id=pid,
                vector={"dense": vec, "bm25": qm.SparseVector(indices=sv.indices, values=sv.values)},  # type: ignore[attr-defined]
                payload={**payload, "tenant": TENANT, "collection_id": coll.id},
            )
            for pid, vec, sv, payload in synthetic_points()
        ]
        for start in range(0, len(batch), 512):
            dst_client.upsert(dst.name, points=batch[start : start + 512], wait=True)
        copied = len(batch)
    while not synthetic:
        points, offset = src_client.scroll(
            src.name, limit=512, offset=offset, with_payload=True, with_vectors=True
        )
        batch = [
            qm.PointStruct(
                id=p.id,
                vector=p.vector,
                payload={**(p.payload or {}), "tenant": TENANT, "collection_id": coll.id},
            )
            for p in points
        ]
        if batch:
            dst_client.upsert(dst.name, points=batch, wait=True)
            copied += len(batch)
        if offset is None:
            break
    if not synthetic:
        src_client.close()
    dst_client.close()
    engine.dispose()
    print(f"copied {copied} chunks into {serve_dir}", file=sys.stderr)
    return key, [data.queries[q] for q in dev], dst.name


async def run_http(
    base: str, key: str, queries: list[str], mode: str, concurrency: int
) -> tuple[list[float], float]:
    """Per-request latencies (ms) and requests/s for one mode and concurrency."""
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as client:

        async def one(q: str) -> None:
            async with sem:
                t = time.perf_counter()
                r = await client.post("/v1/search", json={"query": q, "mode": mode, "top_k": 10})
                latencies.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()

        for q in queries[:5]:  # warm-up
            await one(q)
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(q) for q in queries))
        return latencies, len(queries) / (time.perf_counter() - started)


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAGD_DATA_DIR": str(data_dir / "serve"), "RAGD_LLM__LOAD_ON_STARTUP": "false"}
    env["RAGD_AUTH__RATE_LIMIT_PER_MINUTE"] = "100000"
    env["RAGD_AUTH__MAX_CONCURRENT_PER_KEY"] = "64"
    env["HF_HUB_OFFLINE"] = "1"
    cmd = [sys.executable, "-m", "ragd.cli", "serve", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(base: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("ragd serve did not come up")


def run_langchain(data_dir: Path, collection: str, queries: list[str], model_dir: str) -> list[float]:
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_qdrant import QdrantVectorStore, RetrievalMode
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(data_dir / "serve" / "qdrant"))
    emb = HuggingFaceEmbeddings(model_name=model_dir, encode_kwargs={"normalize_embeddings": True})
    store = QdrantVectorStore(
        client=client,
        collection_name=collection,
        embedding=emb,
        retrieval_mode=RetrievalMode.DENSE,
        vector_name="dense",
        content_payload_key="text",
        metadata_payload_key="metadata",
    )
    for q in queries[:5]:
        store.similarity_search(q, k=10)
    out = []
    for q in queries:
        t = time.perf_counter()
        store.similarity_search(q, k=10)
        out.append((time.perf_counter() - t) * 1000)
    client.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/ragd-bench-search"))
    ap.add_argument("--queries", type=int, default=162, help="dev queries to send per configuration")
    ap.add_argument("--cache", type=Path, default=None, help="eval-cache data dir (default DATA/cache)")
    ap.add_argument("--embedder", default=None, help="embedder (default: the configured one)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--synthetic",
        action="store_true",
        help="SciFact-sized index with random dense vectors (no embedding)",
    )
    args = ap.parse_args()
    if args.prepare_only:  # run in a child process: local Qdrant's file lock is only freed at exit
        key, queries, collection = prepare(
            args.data, args.cache or args.data / "cache", args.embedder, args.synthetic
        )
        (args.data / "prepared.json").write_text(json.dumps([key, queries, collection]))
        return
    if not (args.data / "prepared.json").exists():  # delete it to rebuild the serving data dir
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--prepare-only"], check=True)
    key, queries, collection = json.loads((args.data / "prepared.json").read_text())
    queries = queries[: args.queries]
    base = f"http://127.0.0.1:{args.port}"
    proc = serve(args.data, args.port)
    rows = []
    try:
        wait_ready(base)
        for mode in ("dense", "sparse", "hybrid"):
            for conc in (1, 16):
                lat, rps = asyncio.run(run_http(base, key, queries, mode, conc))
                rows.append((f"http {mode}", conc, pct(lat, 0.5), pct(lat, 0.95), rps))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    from ragd.llm_serving.model_files import minilm_dir

    lat = run_langchain(args.data, collection, queries, args.embedder or str(minilm_dir()))
    rows.append(
        (
            "QdrantVectorStore.similarity_search (dense)",
            1,
            pct(lat, 0.5),
            pct(lat, 0.95),
            1000 / statistics.mean(lat),
        )
    )
    print(f"{'configuration':48} {'conc':>4} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}")
    for name, conc, p50, p95, rps in rows:
        print(f"{name:48} {conc:>4} {p50:8.1f} {p95:8.1f} {rps:7.1f}")


if __name__ == "__main__":
    main()
