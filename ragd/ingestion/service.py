"""Documents and ingestion jobs: accept uploads, report progress, retry, list and delete.

Used by the HTTP routers and by ``ragd ingest``; SQL lives here, not in the routers. Every
method is scoped by tenant: another tenant's document or job is "not found".
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ragd.db.models import Document, DocumentStatus, DocumentVersion, Job, JobStatus, utcnow
from ragd.errors import BadRequest, Conflict, NotFound, RagdError
from ragd.ingestion.blob_store import BlobRef, LocalBlobStore
from ragd.ingestion.job_queue import JobQueue
from ragd.ingestion.pipeline import INDEX, INGEST
from ragd.ingestion.sniffing import ContainerLimits, check_container, sniff

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ragd.retrieval.qdrant_index import QdrantIndex

log = logging.getLogger(__name__)

_META_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_SUBJECT = re.compile(r"^(\*|(user|group|key):[^\s]{1,128})$")
_LIVE = (DocumentStatus.queued, DocumentStatus.processing, DocumentStatus.ready)


@dataclass(frozen=True)
class UploadOutcome:
    """What happened to one uploaded file."""

    filename: str
    status: str  # "queued" | "unchanged" | "rejected"
    job_id: str | None = None
    document_id: str | None = None
    version: int | None = None
    content_type: str | None = None
    error: dict[str, Any] | None = None


def rejected(filename: str, exc: RagdError) -> UploadOutcome:
    """A per-file rejection (the other files of the upload go on)."""
    return UploadOutcome(filename, "rejected", error={"code": exc.code, "message": exc.message})


@dataclass(frozen=True)
class UploadOptions:
    """Validated per-upload options: custom metadata and the document-level ACL."""

    metadata: dict[str, Any] = field(default_factory=dict)
    acl: list[str] = field(default_factory=lambda: ["*"])


def validate_options(raw: Any) -> UploadOptions:
    """Validate the upload's ``metadata`` JSON object: ``{"metadata": {...}, "acl": [...]}``
    or a plain object of custom fields."""
    if raw is None:
        return UploadOptions()
    if not isinstance(raw, dict):
        raise BadRequest("metadata must be a JSON object")
    if set(raw) <= {"metadata", "acl"} and raw:
        meta, acl = raw.get("metadata") or {}, raw.get("acl")
    else:
        meta, acl = raw, None
    if not isinstance(meta, dict) or len(meta) > 64:
        raise BadRequest("metadata must be an object with at most 64 fields")
    for key, value in meta.items():
        if not _META_KEY.match(key):
            raise BadRequest("metadata keys are 1-64 letters, digits, '_' or '-'")
        values = value if isinstance(value, list) else [value]
        if len(values) > 64 or not all(isinstance(v, str | int | float | bool) for v in values):
            raise BadRequest(f"metadata field {key!r} must be a scalar or a list of scalars")
        if any(isinstance(v, str) and len(v) > 1000 for v in values):
            raise BadRequest(f"metadata field {key!r} has a value over 1000 characters")
    if acl is None:
        acl = ["*"]
    if (
        not isinstance(acl, list)
        or not acl
        or len(acl) > 256
        or not all(isinstance(s, str) and _SUBJECT.match(s) for s in acl)
    ):
        raise BadRequest('acl must be a non-empty list of "*", "user:<id>", "group:<name>" or "key:<id>"')
    return UploadOptions(metadata=meta, acl=acl)


class IngestionService:
    """Documents, versions and ingestion jobs in the metadata store."""

    def __init__(
        self,
        engine: Engine,
        blobs: LocalBlobStore,
        queue: JobQueue,
        *,
        max_attempts: int = 3,
        container_limits: ContainerLimits | None = None,
        index: QdrantIndex | None = None,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.queue = queue
        self.max_attempts = max_attempts
        self.container_limits = container_limits or ContainerLimits()
        self.index = index

    # --- uploads -------------------------------------------------------------------------------

    def accept(
        self,
        *,
        tenant: str,
        collection_id: str,
        filename: str,
        blob: BlobRef,
        options: UploadOptions,
        created_by: str = "",
    ) -> UploadOutcome:
        """Register a stored upload: a new version and a queued job, or "unchanged"."""
        try:
            data = self.blobs.get(blob.key)
            sniffed = sniff(data, filename)
            check_container(data, sniffed.kind, self.container_limits)
        except RagdError as exc:
            self.forget_blob(blob.key)
            return rejected(filename, exc)
        try:
            with Session(self.engine, expire_on_commit=False) as s:
                outcome = self._register(
                    s, tenant, collection_id, filename, blob, sniffed, options, created_by
                )
                s.commit()
        except IntegrityError:
            return rejected(filename, Conflict("another upload of this document is being registered"))
        if outcome.job_id is not None:
            self.queue.submit(outcome.job_id)
        return outcome

    def _register(
        self,
        s: Session,
        tenant: str,
        collection_id: str,
        filename: str,
        blob: BlobRef,
        sniffed: Any,
        options: UploadOptions,
        created_by: str,
    ) -> UploadOutcome:
        doc = s.exec(
            select(Document).where(Document.collection_id == collection_id).where(Document.name == filename)
        ).first()
        if doc is not None and doc.deleted_at is None and doc.latest_version:
            latest = s.exec(
                select(DocumentVersion)
                .where(DocumentVersion.document_id == doc.id)
                .where(DocumentVersion.version == doc.latest_version)
            ).first()
            if latest is not None and latest.content_hash == blob.key and latest.status in _LIVE:
                return UploadOutcome(
                    filename,
                    "unchanged",
                    None,
                    doc.id,
                    latest.version,
                    sniffed.mime_type,
                    {"code": "unchanged", "message": "same content as the current version: nothing to do"},
                )
        if doc is None:
            doc = Document(collection_id=collection_id, name=filename, created_by=created_by)
        doc.deleted_at = None
        doc.latest_version += 1
        doc.metadata_ = options.metadata
        doc.updated_at = utcnow()
        s.add(doc)
        s.flush()
        version = DocumentVersion(
            document_id=doc.id,
            version=doc.latest_version,
            content_hash=blob.key,
            blob_key=blob.key,
            mime_type=sniffed.mime_type,
            size_bytes=blob.size,
        )
        s.add(version)
        s.flush()
        job = Job(
            kind=INGEST,
            tenant=tenant,
            max_attempts=self.max_attempts,
            payload={
                "document_id": doc.id,
                "version_id": version.id,
                "version": version.version,
                "collection_id": collection_id,
                "tenant": tenant,
                "blob_key": blob.key,
                "kind": sniffed.kind.value,
                "name": filename,
                "acl": options.acl,
                "metadata": options.metadata,
            },
        )
        s.add(job)
        return UploadOutcome(filename, "queued", job.id, doc.id, version.version, sniffed.mime_type)

    def forget_blob(self, key: str) -> None:
        """Delete an unregistered upload's blob unless a registered version uses the same content."""
        with Session(self.engine) as s:
            used = s.exec(select(DocumentVersion.id).where(DocumentVersion.blob_key == key)).first()
        if used is None:
            self.blobs.delete(key)

    # --- jobs ----------------------------------------------------------------------------------

    def get_job(self, tenant: str, job_id: str) -> Job:
        """A job of ``tenant`` (404 otherwise)."""
        with Session(self.engine, expire_on_commit=False) as s:
            job = s.get(Job, job_id)
        if job is None or job.tenant != tenant or job.kind not in (INGEST, INDEX):
            raise NotFound("job not found")
        return job

    def retry_job(self, tenant: str, job_id: str) -> Job:
        """Queue a failed or cancelled job again from the start (409 for any other state)."""
        job = self.get_job(tenant, job_id)
        if job.status not in (JobStatus.failed, JobStatus.cancelled):
            raise Conflict(f"only failed or cancelled jobs can be retried (this one is {job.status})")
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(Job, job_id)
            assert row is not None
            version = s.get(DocumentVersion, row.payload.get("version_id", ""))
            if version is None or version.status in (DocumentStatus.deleted, DocumentStatus.superseded):
                raise Conflict("the document version of this job was deleted or replaced")
            row.status, row.step, row.error, row.attempts = JobStatus.queued, "queued", None, 0
            row.kind, row.not_before, row.progress_done, row.progress_total = INGEST, None, 0, 0
            row.updated_at = utcnow()
            version.status, version.error = DocumentStatus.queued, None
            s.add(row)
            s.add(version)
            s.commit()
        self.queue.submit(job_id)
        return self.get_job(tenant, job_id)

    # --- documents -----------------------------------------------------------------------------

    def list_documents(
        self, collection_id: str, *, status: DocumentStatus | None, offset: int, limit: int
    ) -> tuple[list[tuple[Document, DocumentVersion | None]], int]:
        """A page of a collection's documents with their latest version, and the total count."""
        latest = and_(
            col(DocumentVersion.document_id) == col(Document.id),
            col(DocumentVersion.version) == col(Document.latest_version),
        )
        base = (
            select(Document, DocumentVersion)
            .join(DocumentVersion, latest, isouter=True)
            .where(Document.collection_id == collection_id)
            .where(col(Document.deleted_at).is_(None))
        )
        if status is not None:
            base = base.where(DocumentVersion.status == status)
        with Session(self.engine, expire_on_commit=False) as s:
            total = s.exec(select(func.count()).select_from(base.subquery())).one()
            rows = s.exec(
                base.order_by(col(Document.created_at), col(Document.id)).offset(offset).limit(limit)
            )
            return [(d, v) for d, v in rows], int(total)

    def get_document(self, document_id: str) -> tuple[Document, list[DocumentVersion]]:
        """A live document and its versions, newest first (404 if missing or deleted)."""
        with Session(self.engine, expire_on_commit=False) as s:
            doc = s.get(Document, document_id)
            if doc is None or doc.deleted_at is not None:
                raise NotFound("document not found")
            versions = s.exec(
                select(DocumentVersion)
                .where(DocumentVersion.document_id == doc.id)
                .order_by(col(DocumentVersion.version).desc())
            ).all()
        return doc, list(versions)

    def delete_document(self, tenant: str, document_id: str) -> None:
        """Delete a document: its points, its versions' state, and blobs nothing else uses."""
        doc, versions = self.get_document(document_id)
        with Session(self.engine) as s:
            row = s.get(Document, doc.id)
            assert row is not None
            row.deleted_at = row.updated_at = utcnow()
            row.current_version = 0
            s.add(row)
            for v in versions:
                vr = s.get(DocumentVersion, v.id)
                if vr is not None:
                    vr.status = DocumentStatus.deleted
                    s.add(vr)
            s.commit()
        if self.index is not None:
            self.index.delete_document(tenant, doc.id)
        for key in {v.blob_key for v in versions}:
            self._forget_blob_if_unused(key)

    def _forget_blob_if_unused(self, key: str) -> None:
        with Session(self.engine) as s:
            used = s.exec(
                select(DocumentVersion.id)
                .where(DocumentVersion.blob_key == key)
                .where(DocumentVersion.status != DocumentStatus.deleted)
            ).first()
        if used is None:
            self.blobs.delete(key)


def document_status(doc: Document, latest: DocumentVersion | None) -> str:
    """One status for a document: its latest version's (a deleted document says so)."""
    if doc.deleted_at is not None:
        return DocumentStatus.deleted.value
    return str(latest.status) if latest is not None else DocumentStatus.queued.value
