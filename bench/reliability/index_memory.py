"""Resident memory the embedded (local-mode) index holds per 1,000 chunks. Prints figures.

    python -m bench.reliability.index_memory [--chunks 4000] [--dim 384] [--no-mirror] [--staged]

Writes SciFact abstracts (real text and real BM25 vectors, random unit dense vectors) into a
local-mode :class:`~ragd.retrieval.qdrant_index.QdrantIndex` 1,000 at a time, searches once after
each batch (so the search mirror catches up), and prints RSS over the starting level after a
``gc.collect()`` and a ``malloc_trim``. A soak's ``rss_mb_per_1000_chunks`` at or below this
figure is the index holding its data, not a leak. ``--staged`` hands each batch through the
:class:`~ragd.ingestion.staging.StagingArea` JSON file first, as a scale-out server receives a
Celery worker's records.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import uuid
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from ragd.api.heap import resident_bytes, trim_heap
from ragd.ingestion.staging import StagedRecords, StagingArea
from ragd.retrieval.base import ChunkRecord, SearchFilter
from ragd.retrieval.bm25_encoder import BM25Encoder
from ragd.retrieval.qdrant_index import QdrantIndex

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact" / "corpus.jsonl"
BATCH = 1000
#: The packaged default embedder's (all-MiniLM-L6-v2) vector size; ``--dim`` for another model.
DEFAULT_DIM = 384


def _rss_mb() -> float:
    gc.collect()
    trim_heap()
    return (resident_bytes() or 0) / 2**20  # None where /proc is missing, as memtrace treats it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=4000)
    ap.add_argument("--dim", type=int, default=DEFAULT_DIM, help="Dense vector size of the embedder.")
    ap.add_argument("--no-mirror", action="store_true", help="Measure Qdrant local mode alone.")
    ap.add_argument("--staged", action="store_true", help="Records go through a staged JSON file.")
    args = ap.parse_args()
    with open(CORPUS, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for _, line in zip(range(args.chunks), fh, strict=False)]
    sparse = BM25Encoder()
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="ragd-index-memory-"))
    client = QdrantClient(path=str(work / "qdrant"))
    staging = StagingArea(work / "staging")
    index = QdrantIndex(client, "memory", args.dim, accelerate_local=not args.no_mirror)
    index.ensure_collection()
    flt = SearchFilter(tenant="t", collection_ids=["c"])
    query = rng.standard_normal(args.dim).astype(np.float32)

    def search() -> None:
        index.query(flt, mode="hybrid", limit=10, dense=query, sparse=sparse.encode_query("cell"))

    search()
    base = _rss_mb()
    growth = []
    for start in range(0, len(texts), BATCH):
        records = []
        for text in texts[start : start + BATCH]:
            dense = rng.standard_normal(args.dim).astype(np.float32)
            payload = {
                "tenant": "t",
                "collection_id": "c",
                "document_id": str(uuid.uuid4()),
                "version": 1,
                "chunk_index": 0,
                "text": text,
                "section": None,
                "page": None,
                "source": "scifact.txt",
                "acl": ["*"],
                "metadata": {},
                "created_at": 0.0,
            }
            records.append(
                ChunkRecord(
                    point_id=str(uuid.uuid4()),
                    dense=dense / np.linalg.norm(dense),
                    sparse=sparse.encode_documents([text])[0],
                    payload=payload,
                )
            )
        if args.staged:
            job_id = uuid.uuid4().hex
            staging.save(job_id, StagedRecords(records=records, acl=["*"]))
            records = staging.load(job_id).records
            staging.delete(job_id)
        index.upsert(records)
        del records
        search()
        growth.append(round(_rss_mb() - base, 1))
    per_1000 = [round(b - a, 1) for a, b in zip([0.0, *growth], growth, strict=False)]
    print(
        f"{'Qdrant local mode' if args.no_mirror else 'Qdrant local mode + search mirror'}"
        f"{' (records staged)' if args.staged else ''}: "
        f"{len(texts)} chunks of {int(np.mean([len(t) for t in texts]))} characters on average; "
        f"RSS over start after each {BATCH}: {growth} MB; per {BATCH}: {per_1000} MB"
    )
    client.close()


if __name__ == "__main__":
    main()
