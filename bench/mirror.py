"""How the local-mode search mirror keeps up with writes. Prints figures.

    python bench/mirror.py [--points 9000] [--uploads 200] [--chunks 3]

Builds a local-mode collection of ``--points`` SciFact abstracts (real BM25 sparse vectors;
random unit dense vectors, since the mirror's cost does not depend on their values), then replays
ingestion's write pattern for ``--uploads`` documents: upsert the new version unpublished, publish
it by id and retire other versions by filter (one ``batch_update_points``), and after every
upload one hybrid search, as a live server interleaves them. Reports the search latency while
writes land (the mirror's catch-up included), the full rebuild it replaced, and the mirror's
counters (full scrolls, incremental refreshes, compactions).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reliability.stats import percentile
from ragd.retrieval.base import ChunkRecord, SearchFilter
from ragd.retrieval.bm25_encoder import BM25Encoder
from ragd.retrieval.qdrant_index import HybridParams, QdrantIndex

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"
DIM = 384


def _records(
    texts: list[str], enc: BM25Encoder, rng: np.random.Generator, doc: str, version: int, acl: list[str]
) -> list[ChunkRecord]:
    dense = rng.standard_normal((len(texts), DIM)).astype(np.float32)
    return [
        ChunkRecord(
            point_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc}/{version}/{i}")),
            dense=list(map(float, dense[i])),
            sparse=sv,
            payload={
                "tenant": "t",
                "collection_id": "c",
                "document_id": doc,
                "version": version,
                "chunk_index": i,
                "text": t,
                "acl": acl,
                "created_at": time.time(),
            },
        )
        for i, (t, sv) in enumerate(zip(texts, enc.encode_documents(texts), strict=True))
    ]


def ms(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (seconds), in milliseconds."""
    value = percentile(values, q)
    return round(1000 * value, 2) if value is not None else math.nan


def main() -> None:
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qm

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=9000)
    p.add_argument("--uploads", type=int, default=200)
    p.add_argument("--chunks", type=int, default=3, help="Chunks per uploaded document.")
    args = p.parse_args()
    corpus = []
    with DATA.open() as f:
        for line in f:
            row = json.loads(line)
            corpus.append(f"{row.get('title', '')} {row.get('text', '')}".strip())
    # SciFact has 5,183 abstracts; a larger index reuses them (as chunks of a longer corpus would).
    wanted = args.points + args.uploads * args.chunks
    texts = [corpus[i % len(corpus)] for i in range(wanted)]
    rng = np.random.default_rng(0)
    enc = BM25Encoder()
    client = QdrantClient(location=":memory:")
    index = QdrantIndex(client, "bench_mirror", DIM)
    base = texts[: args.points]
    for start in range(0, len(base), 1000):
        index.upsert(_records(base[start : start + 1000], enc, rng, f"base{start}", 1, ["*"]))
    assert index._mirror is not None
    mirror = index._mirror
    flt = SearchFilter(tenant="t", collection_ids=["c"])
    hp = HybridParams()

    def search(q: str) -> float:
        t0 = time.perf_counter()
        index.query(
            flt,
            mode="hybrid",
            limit=10,
            dense=rng.standard_normal(DIM).astype(np.float32),
            sparse=enc.encode_query(q),
            hybrid=hp,
        )
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    search("warm up")
    first = time.perf_counter() - t0
    quiet = [search(t[:80]) for t in base[:50]]
    after_write = []
    extra = texts[args.points :]
    for u in range(args.uploads):
        doc = f"up{u % max(1, args.uploads // 2)}"  # the second half re-uploads: new versions retire old
        version = 1 + u // max(1, args.uploads // 2)
        chunk_texts = extra[u * args.chunks : (u + 1) * args.chunks]
        recs = _records(chunk_texts, enc, rng, doc, version, [])
        index.upsert(recs)
        conds = [
            qm.FieldCondition(key="tenant", match=qm.MatchValue(value="t")),
            qm.FieldCondition(key="document_id", match=qm.MatchValue(value=doc)),
        ]
        ops: list[object] = [
            qm.SetPayloadOperation(
                set_payload=qm.SetPayload(payload={"acl": ["*"]}, points=[r.point_id for r in recs])
            )
        ]
        if version > 1:
            ops.append(
                qm.DeleteOperation(
                    delete=qm.FilterSelector(
                        filter=qm.Filter(
                            must=conds,
                            must_not=[qm.FieldCondition(key="version", match=qm.MatchValue(value=version))],
                        )
                    )
                )
            )
        client.batch_update_points("bench_mirror", update_operations=ops)  # type: ignore[arg-type]
        after_write.append(search(chunk_texts[0][:80]))
    print(f"points {args.points}, uploads {args.uploads} x {args.chunks} chunks (second half re-uploads)")
    print(f"first search (full scroll + pack): {1000 * first:.0f} ms")
    print(f"hybrid search, no writes:        p50 {ms(quiet, 50)} ms, p95 {ms(quiet, 95)} ms")
    print(
        f"hybrid search after each upload: p50 {ms(after_write, 50)} ms, p95 {ms(after_write, 95)} ms, "
        f"max {ms(after_write, 100)} ms, mean {1000 * statistics.fmean(after_write):.1f} ms"
    )
    print(f"mirror: {getattr(mirror, 'stats', '(no counters: rebuilt on every write)')}")


if __name__ == "__main__":
    main()
