"""The ingestion job: parse -> chunk -> scan -> embed -> index -> publish, with progress.

One function runs in every backend (in-process pool, Celery worker). Guarantees:

* **Idempotent**: point ids are ``uuid5(document, version, index)``, so a re-run overwrites the
  same points; a version already ``ready`` is only re-published.
* **Nothing half-indexed is visible**: a version's points are written with an empty ``acl``
  (every search filters on ``acl`` matching ``"*"`` or one of the caller's subjects, so they
  match no one), then published, and the previous version retired, in one Qdrant request.
* **One writer per local Qdrant path**: without an index (``index=None``), the job stops after
  embedding, stages its records as a file and hands the job over (``ingest.index``) to the
  process that owns the index.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from sqlmodel import Session, col, select

from ragd.db.models import Document, DocumentStatus, DocumentVersion, Job, JobStatus, utcnow
from ragd.errors import RagdError
from ragd.ingestion.chunker import Chunk, Chunker
from ragd.ingestion.job_queue import HandOff, JobContext, PermanentJobError, run_claimed_job
from ragd.ingestion.parsers import ParseError, parse
from ragd.ingestion.sniffing import ContainerLimits, FileKind, check_container
from ragd.ingestion.staging import StagedRecords, StagingArea
from ragd.retrieval.base import ChunkRecord, Embedder, SparseEncoder
from ragd.retrieval.sentences import PAYLOAD_KEY, embed_with_sentences, sentence_payloads, spans_for

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ragd.guardrails.context_guard import SharedPass
    from ragd.ingestion.blob_store import LocalBlobStore
    from ragd.retrieval.qdrant_index import QdrantIndex

log = logging.getLogger(__name__)

INGEST = "ingest"
INDEX = "ingest.index"
#: Namespace of point ids: uuid5(POINT_NAMESPACE, f"{document_id}:{version}:{index}").
POINT_NAMESPACE = uuid.UUID("5b0c3a52-6d2e-4f57-9a44-2f1e0c7d9b11")


def point_id(document_id: str, version: int, index: int) -> str:
    """The deterministic Qdrant point id of one chunk."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{document_id}:{version}:{index}"))


class InjectionScorer(Protocol):
    """Scores chunks for indirect prompt injection (``ragd.guardrails.InjectionScanner`` is one).

    Ingestion flags chunks scoring at or above ``threshold`` (payload ``flagged``); it never
    drops them: the context guard and the operator decide what to do with flagged text.
    """

    threshold: float

    def score_chunks(self, texts: Sequence[str]) -> list[float]:
        """A score in [0, 1] per text (1 = surely an injection)."""
        ...

    def embed_and_score(
        self,
        texts: Sequence[str],
        embedder: Embedder,
        extra_spans: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> SharedPass | None:
        """``embedder``'s vectors of ``texts`` with the scores (and the in-context vectors of
        ``extra_spans`` when the embedder pools spans), sharing the encoder work; None when the
        scorer cannot share it (then ingestion embeds and calls :meth:`score_chunks`)."""
        ...


@dataclass
class _Encoded:
    """One encoder pass over chunk texts: index vectors, injection scores (None without a
    scorer) and each chunk's sentence vectors for the payload (None where not pooled)."""

    vectors: npt.NDArray[np.float32]
    scores: list[float | None]
    sentences: list[dict[str, str] | None]


@dataclass
class _Ahead:
    """Work :meth:`IngestPipeline.run_batch` did ahead: chunks by job id, vectors, injection
    scores and sentence vectors by chunk text."""

    chunks: dict[str, list[Chunk]] = field(default_factory=dict)
    vectors: dict[str, list[float]] = field(default_factory=dict)
    scores: dict[str, float | None] = field(default_factory=dict)
    sentences: dict[str, dict[str, str] | None] = field(default_factory=dict)


@dataclass
class IngestPipeline:
    """Everything an ingestion job needs, built once per process."""

    engine: Engine
    blobs: LocalBlobStore
    chunker: Chunker
    embedder: Embedder
    sparse: SparseEncoder
    index: QdrantIndex | None  # None: this process may not write (Celery worker, local Qdrant)
    staging: StagingArea
    scorer: InjectionScorer | None = None
    container_limits: ContainerLimits = field(default_factory=ContainerLimits)
    embed_batch: int = 256
    # run_batch's work for the jobs it is about to run, per thread: several in-process workers
    # may run batches at once, and one must not clear what another computed.
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def _ahead(self) -> _Ahead:
        ahead: _Ahead | None = getattr(self._local, "ahead", None)
        if ahead is None:
            ahead = self._local.ahead = _Ahead()
        return ahead

    @property
    def handlers(self) -> dict[str, Any]:
        """Job handlers by kind: the full job where this process can write the index."""
        if self.index is None:
            return {INGEST: self.run}
        return {INGEST: self.run, INDEX: self.run_index}

    # --- job entry points ----------------------------------------------------------------------

    def run(self, ctx: JobContext) -> None:
        """Handler of ``ingest`` jobs."""
        p = ctx.job.payload
        try:
            version = self._load_version(p["version_id"])
            if version is None or version.status in (DocumentStatus.deleted, DocumentStatus.superseded):
                return  # deleted or replaced meanwhile: nothing to do
            if version.status == DocumentStatus.ready:
                self._publish(p, version.chunk_count)  # a re-run after a crash: finish the swap
                return
            self._set_version(p["version_id"], status=DocumentStatus.processing, error=None)
            records = self.prepare(ctx)
            if self.index is None:
                self.staging.save(ctx.job.id, records)
                raise HandOff(INDEX, "indexing")
            self._write(ctx, records)
        except HandOff:
            raise
        except Exception as exc:
            self._on_failure(ctx, exc)
            perm = _permanent(exc)
            if perm is exc:
                raise
            raise perm from exc

    def run_index(self, ctx: JobContext) -> None:
        """Handler of ``ingest.index`` jobs: write records staged by a worker."""
        p = ctx.job.payload
        try:
            version = self._load_version(p["version_id"])
            if version is None or version.status in (DocumentStatus.deleted, DocumentStatus.superseded):
                self.staging.delete(ctx.job.id)
                return
            if version.status == DocumentStatus.ready:
                self._publish(p, version.chunk_count)
                self.staging.delete(ctx.job.id)
                return
            records = self.staging.load(ctx.job.id)
            self._write(ctx, records)
            self.staging.delete(ctx.job.id)
        except Exception as exc:
            self._on_failure(ctx, exc)
            perm = _permanent(exc)
            if perm is exc:
                raise
            raise perm from exc

    def run_batch(self, jobs: Sequence[Job], worker_id: str, lease_s: float) -> list[JobStatus]:
        """Run several claimed ``ingest`` jobs, embedding and scanning all their chunks together.

        Small documents (one abstract, one e-mail) give the embedder a batch of one or two texts,
        where most of its time is overhead; many of them embedded together run several times
        faster. The injection scan's sentences batch the same way. Each job still runs through
        its own handler, state and error handling; a failure here only leaves the job to do its
        own work.
        """
        texts: list[str] = []
        for job in jobs:
            try:
                chunks = self._chunk(job.payload)
            except Exception:  # noqa: BLE001, S112 - the job's own run reports this error
                continue
            self._ahead.chunks[job.id] = chunks
            texts.extend(dict.fromkeys(c.text for c in chunks if c.text not in self._ahead.vectors))
        try:
            try:
                for start in range(0, len(texts), self.embed_batch):
                    block = texts[start : start + self.embed_batch]
                    done = self._embed_and_scan(block)
                    self._ahead.vectors.update(zip(block, done.vectors.tolist(), strict=True))
                    self._ahead.scores.update(zip(block, done.scores, strict=True))
                    self._ahead.sentences.update(zip(block, done.sentences, strict=True))
            except Exception:  # each job retries this work itself and records its own error
                log.warning("batched embedding failed; the jobs embed one by one", exc_info=True)
            return [run_claimed_job(self.engine, job, self.handlers, worker_id, lease_s) for job in jobs]
        finally:
            for job in jobs:
                self._ahead.chunks.pop(job.id, None)
            self._ahead.vectors.clear()
            self._ahead.scores.clear()
            self._ahead.sentences.clear()

    def _embed_and_scan(self, texts: list[str]) -> _Encoded:
        """Index vectors, injection scores and sentence vectors of ``texts``, in one encoder
        pass where the scanner shares it (the default)."""
        if self.scorer is not None:
            shared = self.scorer.embed_and_score(texts, self.embedder, spans_for(texts))
            if shared is not None:
                sentences = sentence_payloads(self.embedder.name, shared.extra, len(texts))
                return _Encoded(shared.vectors, list(shared.scores), sentences)
            scores: list[float | None] = list(self.scorer.score_chunks(texts))
        else:
            scores = [None] * len(texts)
        vectors, sentences = embed_with_sentences(self.embedder, texts)
        return _Encoded(vectors, scores, sentences)

    def _chunk(self, p: dict[str, Any]) -> list[Chunk]:
        data = self.blobs.get(p["blob_key"])
        kind = FileKind(p["kind"])
        check_container(data, kind, self.container_limits)
        return self.chunker.chunk(parse(data, kind))

    # --- stages --------------------------------------------------------------------------------

    def prepare(self, ctx: JobContext) -> StagedRecords:
        """Parse, chunk, scan and embed one document version."""
        p = ctx.job.payload
        # Each progress report is a database write (about 2 ms); steps that run_batch already did
        # are not reported again (for an abstract, four such writes cost half its parse).
        chunks = self._ahead.chunks.pop(ctx.job.id, None)
        if chunks is None:
            ctx.progress("parsing", 0, 0)
            chunks = self._chunk(p)
            ctx.progress("chunking")
        if not chunks:
            raise ParseError("the document has no text to index")
        texts = [c.text for c in chunks]
        sparse = self.sparse.encode_documents(texts)
        ahead = [self._ahead.vectors.get(t) for t in texts]
        dense_rows: list[list[float]] = [v for v in ahead if v is not None]
        scores: list[float | None] = [self._ahead.scores.get(t) for t in texts]
        sentences = [self._ahead.sentences.get(t) for t in texts]
        if len(dense_rows) != len(texts) or (self.scorer is not None and None in scores):
            ctx.progress("embedding", 0, len(chunks))
            dense_rows, scores, sentences = [], [], []
            for start in range(0, len(texts), self.embed_batch):
                done = self._embed_and_scan(texts[start : start + self.embed_batch])
                dense_rows.extend(done.vectors.tolist())
                scores.extend(done.scores)
                sentences.extend(done.sentences)
                ctx.progress("embedding", min(len(texts), start + self.embed_batch), len(chunks))
        now = time.time()
        records = [
            ChunkRecord(
                point_id=point_id(p["document_id"], p["version"], c.index),
                dense=dense_rows[i],
                sparse=sparse[i],
                payload=self._payload(p, c, scores[i], sentences[i], now),
            )
            for i, c in enumerate(chunks)
        ]
        return StagedRecords(records=records, acl=list(p.get("acl") or ["*"]))

    def _payload(
        self,
        p: dict[str, Any],
        c: Chunk,
        score: float | None,
        sentences: dict[str, str] | None,
        now: float,
    ) -> dict[str, Any]:
        flagged = score is not None and self.scorer is not None and score >= self.scorer.threshold
        payload = {
            "tenant": p["tenant"],
            "collection_id": p["collection_id"],
            "document_id": p["document_id"],
            "version": p["version"],
            "chunk_index": c.index,
            "text": c.text,
            "section": c.section,
            "page": c.page,
            "chunk_kind": c.kind,
            "source": p["name"],
            "acl": [],  # unpublished: matches no reader until _publish sets the real ACL
            "injection_score": score,
            "flagged": flagged,
            "metadata": p.get("metadata") or {},
            "created_at": now,
        }
        if sentences is not None:
            payload[PAYLOAD_KEY] = sentences  # the agent's evidence scoring reads these
        return payload

    def _write(self, ctx: JobContext, staged: StagedRecords) -> None:
        """Upsert (unpublished), then publish + retire, then mark the version ready."""
        assert self.index is not None
        p = ctx.job.payload
        records = staged.records
        ctx.progress("indexing", 0, len(records))  # also checks the lease before writing
        batch = 256
        for start in range(0, len(records), batch):
            self.index.upsert(records[start : start + batch])
            ctx.progress("indexing", min(len(records), start + batch), len(records))
        flagged = sum(1 for r in records if r.payload.get("flagged"))
        if not self._finish_version(p, len(records), flagged):
            # A newer version became current first (or the document was deleted): drop ours.
            self.index.delete_document_version(p["tenant"], p["document_id"], p["version"])
            return
        self._publish(p, len(records), staged.acl)

    def _publish(self, p: dict[str, Any], chunk_count: int, acl: list[str] | None = None) -> None:
        """Make version ``p['version']`` visible and delete every other version, in one request."""
        assert self.index is not None
        from qdrant_client.http import models as qm

        self.index.ensure_collection()
        doc = [
            qm.FieldCondition(key="tenant", match=qm.MatchValue(value=p["tenant"])),
            qm.FieldCondition(key="document_id", match=qm.MatchValue(value=p["document_id"])),
        ]
        this = qm.FieldCondition(key="version", match=qm.MatchValue(value=p["version"]))
        # Point ids, not a filter, select this version: exact, and O(chunks) rather than a scan
        # of the whole collection (which is what a filter costs in local mode).
        ids: list[Any] = [point_id(p["document_id"], p["version"], i) for i in range(chunk_count)]
        ops: list[Any] = [
            qm.SetPayloadOperation(
                set_payload=qm.SetPayload(payload={"acl": acl or list(p.get("acl") or ["*"])}, points=ids)
            )
        ]
        if p["version"] > 1:  # earlier versions exist only from the second upload on
            ops.append(
                qm.DeleteOperation(delete=qm.FilterSelector(filter=qm.Filter(must=doc, must_not=[this])))
            )
        index: QdrantIndex = self.index
        try:
            index.client.batch_update_points(index.name, update_operations=ops, wait=True)
        except Exception as exc:
            from ragd.errors import IndexUnavailable

            raise IndexUnavailable(f"could not publish version {p['version']}") from exc
        log.info("version published", extra={"document_id": p["document_id"], "chunks": chunk_count})

    # --- metadata store ------------------------------------------------------------------------

    def _load_version(self, version_id: str) -> DocumentVersion | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(DocumentVersion, version_id)

    def _set_version(self, version_id: str, **values: Any) -> None:
        with Session(self.engine) as s:
            v = s.get(DocumentVersion, version_id)
            if v is None:
                return
            for k, val in values.items():
                setattr(v, k, val)
            v.updated_at = utcnow()
            s.add(v)
            s.commit()

    def _finish_version(self, p: dict[str, Any], chunks: int, flagged: int) -> bool:
        """Mark the version ready and current, older ready ones superseded; False if it lost."""
        with Session(self.engine) as s:
            doc = s.get(Document, p["document_id"])
            v = s.get(DocumentVersion, p["version_id"])
            if doc is None or v is None or doc.deleted_at is not None or doc.current_version > v.version:
                if v is not None:
                    v.status = DocumentStatus.superseded
                    s.add(v)
                    s.commit()
                return False
            older = s.exec(
                select(DocumentVersion)
                .where(col(DocumentVersion.document_id) == doc.id)
                .where(col(DocumentVersion.version) != v.version)
                .where(col(DocumentVersion.status) == DocumentStatus.ready)
            ).all()
            for o in older:
                o.status = DocumentStatus.superseded
                s.add(o)
            v.status, v.chunk_count, v.flagged_chunks, v.error = DocumentStatus.ready, chunks, flagged, None
            v.updated_at = doc.updated_at = utcnow()
            doc.current_version = v.version
            s.add(v)
            s.add(doc)
            s.commit()
        return True

    def _on_failure(self, ctx: JobContext, exc: Exception) -> None:
        """Keep the error on the version when this failure is final (nothing stays visible)."""
        final = _is_permanent(exc) or ctx.job.attempts >= ctx.job.max_attempts
        if not final:
            return
        message = _message(exc)
        self._set_version(ctx.job.payload["version_id"], status=DocumentStatus.failed, error=message)
        if self.index is not None:
            p = ctx.job.payload
            try:
                self.index.delete_document_version(p["tenant"], p["document_id"], p["version"])
            except RagdError:
                log.warning("could not remove unpublished points", extra={"job_id": ctx.job.id})


def _is_permanent(exc: Exception) -> bool:
    return (
        isinstance(exc, ParseError | PermanentJobError | RagdError)
        and not getattr(exc, "status_code", 400) >= 500
    )


def _message(exc: Exception) -> str:
    if isinstance(exc, RagdError):
        return exc.message
    return str(exc) if isinstance(exc, ParseError | PermanentJobError) else type(exc).__name__


def _permanent(exc: Exception) -> Exception:
    """Turn input errors into :class:`PermanentJobError` (not retried); keep the rest as is."""
    if _is_permanent(exc) and not isinstance(exc, PermanentJobError):
        return PermanentJobError(_message(exc))
    return exc
