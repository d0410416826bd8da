"""Moving ragd collections to another embedder (e.g. a fine-tuned one) through the job queue.

Switching ``embedding.model`` (``RAGD_EMBEDDING__MODEL``) to a registry name such as
``scifact-minilm`` makes search and ingestion use that embedder's Qdrant collection (one per
embedder, see :mod:`ragd.retrieval.qdrant_index`), which starts empty. A ``retrieval.reembed``
job per ragd collection fills it: it reads the collection's chunks (text, payload and BM25 vector)
from the previous embedder's Qdrant collection, embeds the text with the new model and writes
the same point ids and payload, so nothing is parsed or chunked again and ACLs, versions and
flags carry over. Re-running a job is harmless (upserts by id).

The handler runs in the process that owns the index (the server in local mode), like indexing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ragd.retrieval.base import ChunkRecord, Embedder, SparseVector
from ragd.retrieval.qdrant_index import SPARSE, QdrantIndex
from ragd.retrieval.sentences import PAYLOAD_KEY as SENTENCE_KEY
from ragd.retrieval.sentences import embed_with_sentences

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from sqlalchemy import Engine

    from ragd.config import Settings
    from ragd.ingestion.job_queue import JobContext

REEMBED = "retrieval.reembed"


def reembed_collection(
    source: QdrantIndex,
    target: QdrantIndex,
    embedder: Embedder,
    tenant: str,
    collection_id: str,
    progress: Callable[[int], None] | None = None,
    batch: int = 128,
) -> int:
    """Copy one ragd collection's chunks from ``source`` to ``target`` with new dense vectors."""
    from qdrant_client.http import models as qm

    if not source.client.collection_exists(source.name):
        return 0
    target.ensure_collection()
    flt = qm.Filter(
        must=[
            qm.FieldCondition(key="tenant", match=qm.MatchValue(value=tenant)),
            qm.FieldCondition(key="collection_id", match=qm.MatchValue(value=collection_id)),
        ]
    )
    offset: Any = None
    done = 0
    while True:
        points, offset = source.client.scroll(
            source.name,
            scroll_filter=flt,
            limit=batch,
            offset=offset,
            with_payload=True,
            with_vectors=[SPARSE],
        )
        if points:
            payloads = [dict(p.payload or {}) for p in points]
            texts = [str(p.get("text", "")) for p in payloads]
            # The agent's sentence vectors come from the same pass, in the new model's space.
            dense, sentences = embed_with_sentences(embedder, texts)
            for payload, stored in zip(payloads, sentences, strict=True):
                payload.pop(SENTENCE_KEY, None)  # the old model's vectors are stale
                if stored is not None:
                    payload[SENTENCE_KEY] = stored
            records = []
            for i, p in enumerate(points):
                vec = p.vector.get(SPARSE) if isinstance(p.vector, dict) else None
                sparse = (
                    SparseVector(indices=list(vec.indices), values=list(vec.values))
                    if isinstance(vec, qm.SparseVector)
                    else SparseVector(indices=[], values=[])
                )
                records.append(ChunkRecord(str(p.id), dense[i], sparse, payloads[i]))
            target.upsert(records)
            done += len(records)
            if progress:
                progress(done)
        if offset is None:
            return done


def reembed_handler(settings: Settings, client: QdrantClient, engine: Engine) -> Callable[[JobContext], None]:
    """The ``retrieval.reembed`` job handler.

    Job payload: ``tenant``, ``collection_id``, ``from_model`` (the embedder the chunks are in)
    and optionally ``to_model`` (default: ``embedding.model``).
    """
    from ragd.retrieval.registry import build_embedder, build_index

    def run(ctx: JobContext) -> None:
        p = ctx.job.payload
        old = build_embedder(settings, engine, model=p["from_model"])
        new = build_embedder(settings, engine, model=p.get("to_model") or settings.embedding.model)
        total = reembed_collection(
            build_index(settings, client, old),
            build_index(settings, client, new),
            new,
            p["tenant"],
            p["collection_id"],
            progress=lambda n: ctx.progress("re-embedding", n, None),
        )
        ctx.progress("done", total, total)

    return run


def enqueue_reembed(
    engine: Engine, tenant: str, collection_id: str, from_model: str, to_model: str | None = None
) -> str:
    """Add a durable ``retrieval.reembed`` job (the owning process's workers run it); returns its id."""
    from sqlmodel import Session

    from ragd.db.models import Job

    with Session(engine, expire_on_commit=False) as s:
        job = Job(
            kind=REEMBED,
            tenant=tenant,
            payload={
                "tenant": tenant,
                "collection_id": collection_id,
                "from_model": from_model,
                "to_model": to_model,
            },
        )
        s.add(job)
        s.commit()
        return str(job.id)
