"""Document routes: multipart upload (202 + a job per file), list, get, delete.

The upload body is parsed as it streams in (python-multipart), each file going straight into the
content-addressed blob store, so the per-file size limit is enforced while reading, never after
buffering a whole file; a file over the limit, with a bad name or of an unsupported type is
rejected on its own and the other files of the request go on.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from sqlmodel import Session

from ragd.api.deps import AuditDep, CurrentPrincipal, ReadableCollection, WritableCollection
from ragd.api.state import StateDep
from ragd.db.models import Collection, DocumentStatus
from ragd.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RagdError,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from ragd.ingestion.blob_store import BlobRef, BlobWriter
from ragd.ingestion.service import (
    IngestionService,
    UploadOptions,
    UploadOutcome,
    document_status,
    rejected,
    validate_options,
)
from ragd.ingestion.sniffing import check_filename
from ragd.security.policy import collection_permission
from ragd.security.rules import permission_at_least

INGESTION_KEY = "ingestion"
_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 16

router = APIRouter(prefix="/v1", tags=["documents"])


def get_ingestion(state: StateDep) -> IngestionService:
    """The app's ingestion service (built in the lifespan)."""
    service = state.extras.get(INGESTION_KEY)
    if service is None:
        raise ServiceUnavailable("ingestion is not available in this process")
    svc: IngestionService = service
    return svc


IngestionDep = Annotated[IngestionService, Depends(get_ingestion)]


class UploadFileResult(BaseModel):
    """What happened to one uploaded file."""

    filename: str
    status: str = Field(description="queued | unchanged | rejected")
    job_id: str | None = None
    document_id: str | None = None
    version: int | None = None
    content_type: str | None = Field(default=None, description="The type sniffed from the bytes.")
    error: dict[str, Any] | None = None


class UploadResponse(BaseModel):
    """One result per file, in upload order."""

    files: list[UploadFileResult]


class VersionPublic(BaseModel):
    """One version of a document."""

    version: int
    status: str
    content_type: str
    size_bytes: int
    chunk_count: int
    flagged_chunks: int
    error: str | None
    created_at: datetime


class DocumentPublic(BaseModel):
    """A document and the state of its latest version."""

    id: str
    collection_id: str
    name: str
    status: str
    current_version: int
    latest_version: int
    chunk_count: int
    flagged_chunks: int
    error: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class DocumentDetail(DocumentPublic):
    """A document with every version, newest first."""

    versions: list[VersionPublic]


class DocumentPage(BaseModel):
    """A page of documents."""

    items: list[DocumentPublic]
    total: int
    offset: int
    limit: int


def _public(doc: Any, latest: Any) -> dict[str, Any]:
    return {
        "id": doc.id,
        "collection_id": doc.collection_id,
        "name": doc.name,
        "status": document_status(doc, latest),
        "current_version": doc.current_version,
        "latest_version": doc.latest_version,
        "chunk_count": latest.chunk_count if latest else 0,
        "flagged_chunks": latest.flagged_chunks if latest else 0,
        "error": latest.error if latest else None,
        "metadata": doc.metadata_,
        "created_at": doc.created_at,
        "updated_at": doc.updated_at,
    }


# --- streaming multipart ---------------------------------------------------------------------


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    writer: BlobWriter | None = None
    blob: BlobRef | None = None
    error: RagdError | None = None
    value: bytearray = field(default_factory=bytearray)


class _UploadReader:
    """Feeds python-multipart and routes each part: files to the blob store, fields to memory."""

    def __init__(self, service: IngestionService, boundary: bytes, max_file: int, max_files: int) -> None:
        self.service = service
        self.max_file = max_file
        self.max_files = max_files
        self.parts: list[_Part] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self.parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._begin,
                "on_header_field": self._hfield,
                "on_header_value": self._hvalue,
                "on_header_end": self._hend,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
        )

    @property
    def files(self) -> list[_Part]:
        return [p for p in self.parts if p.filename is not None]

    def _begin(self) -> None:
        self._headers = {}
        self.parts.append(_Part())

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_done(self) -> None:
        part = self.parts[-1]
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        part.name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in params:
            if len(self.parts) - len(self.files) > _MAX_FIELDS:
                raise BadRequest(f"at most {_MAX_FIELDS} form fields")
            return
        part.filename = params[b"filename"].decode("utf-8", "replace")
        try:
            if len(self.files) > self.max_files:
                raise BadRequest(f"at most {self.max_files} files per upload")
            part.filename = check_filename(part.filename)
            part.writer = self.service.blobs.open_writer(self.max_file)
        except RagdError as exc:
            part.error = exc

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        if part.filename is None:
            if len(part.value) + end - start > _MAX_FIELD_BYTES:
                raise PayloadTooLarge(f"form field {part.name[:40]!r} is over {_MAX_FIELD_BYTES} bytes")
            part.value.extend(data[start:end])
        elif part.writer is not None:
            try:
                part.writer.write(data[start:end])
            except PayloadTooLarge as exc:  # the writer removed its file; skip the rest
                part.writer, part.error = None, exc

    def _end(self) -> None:
        part = self.parts[-1]
        if part.writer is not None:
            if part.writer.size == 0:
                part.writer.abort()
                part.error = BadRequest("the file is empty")
            else:
                part.blob = part.writer.commit()
            part.writer = None

    def abort(self) -> None:
        for part in self.parts:
            if part.writer is not None:
                part.writer.abort()
                part.writer = None


async def _read_upload(
    request: Request, service: IngestionService, max_file: int, max_files: int
) -> _UploadReader:
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequest("send the files as multipart/form-data (field name: files)")
    reader = _UploadReader(service, boundary, max_file, max_files)
    try:
        async for chunk in request.stream():
            if chunk:
                await asyncio.to_thread(reader.parser.write, chunk)
        reader.parser.finalize()
    except MultipartParseError as exc:
        reader.abort()
        raise BadRequest("the multipart body is malformed") from exc
    except BaseException:
        reader.abort()
        raise
    return reader


def _reject_all(outcomes: list[UploadOutcome]) -> None:
    """No file was accepted: answer with the (common) 4xx status and every file's error."""
    by_code: dict[str, type[RagdError]] = {
        "payload_too_large": PayloadTooLarge,
        "unsupported_media_type": UnsupportedMediaType,
        "conflict": Conflict,
    }
    codes = {(o.error or {}).get("code", "bad_request") for o in outcomes}
    exc_type = by_code.get(codes.pop(), BadRequest) if len(codes) == 1 else BadRequest
    single = outcomes[0].error if len(outcomes) == 1 else None
    message = single["message"] if single else "no file was accepted"
    raise exc_type(message, details={"files": [o.__dict__ for o in outcomes]})


def _options(reader: _UploadReader) -> UploadOptions:
    meta = next((p for p in reader.parts if p.filename is None and p.name == "metadata"), None)
    if meta is None or not meta.value.strip():
        return UploadOptions()
    try:
        raw = json.loads(meta.value.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("metadata is not valid JSON") from exc
    return validate_options(raw)


# --- routes ----------------------------------------------------------------------------------


@router.post(
    "/collections/{collection}/documents",
    status_code=202,
    response_model=UploadResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "metadata": {
                                "type": "string",
                                "description": 'JSON: {"metadata": {...custom fields}, "acl": ["*"|'
                                '"user:<id>"|"group:<name>"|"key:<id>", ...]}',
                            },
                        },
                    }
                }
            },
        }
    },
    responses={400: {}, 404: {}, 413: {}, 415: {}},
)
async def upload_documents(
    request: Request,
    coll: WritableCollection,
    principal: CurrentPrincipal,
    state: StateDep,
    service: IngestionDep,
    auditor: AuditDep,
) -> Response | UploadResponse:
    """Upload one or many files; each gets a job id (or a per-file error). A file whose
    content equals the current version is "unchanged" and starts no job."""
    limits = state.settings.ingestion
    reader = await _read_upload(request, service, limits.max_upload_bytes, limits.max_files_per_upload)
    try:
        options = _options(reader)
        if not reader.files:
            raise BadRequest("no files in the upload (field name: files)")
    except BadRequest:
        for part in reader.files:
            if part.blob is not None:
                service.forget_blob(part.blob.key)
        raise
    outcomes: list[UploadOutcome] = []
    for part in reader.files:
        if part.error is not None or part.blob is None:
            outcomes.append(rejected(part.filename or "", part.error or BadRequest("the file is empty")))
            continue
        outcomes.append(
            await asyncio.to_thread(
                service.accept,
                tenant=principal.tenant,
                collection_id=coll.id,
                filename=part.filename or "",
                blob=part.blob,
                options=options,
                created_by=principal.id,
            )
        )
    if all(o.status == "rejected" for o in outcomes):
        _reject_all(outcomes)
    auditor.record(
        "document.upload",
        principal=principal,
        target=coll.collection.name,
        detail={"files": [{"name": o.filename[:100], "status": o.status} for o in outcomes]},
    )
    return UploadResponse(files=[UploadFileResult(**o.__dict__) for o in outcomes])


@router.get("/collections/{collection}/documents", response_model=DocumentPage)
def list_documents(
    coll: ReadableCollection,
    service: IngestionDep,
    status: Annotated[DocumentStatus | None, Query(description="Only documents in this state.")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DocumentPage:
    """A page of the collection's documents, oldest first."""
    rows, total = service.list_documents(coll.id, status=status, offset=offset, limit=limit)
    items = [DocumentPublic(**_public(d, v)) for d, v in rows]
    return DocumentPage(items=items, total=total, offset=offset, limit=limit)


def _readable_document(
    service: IngestionService, state: Any, principal: Any, document_id: str, write: bool
) -> tuple[Any, list[Any]]:
    doc, versions = service.get_document(document_id)
    from ragd.db.models import Permission

    with Session(state.engine) as s:
        coll = s.get(Collection, doc.collection_id)
        perm = collection_permission(s, principal, coll) if coll is not None else None
    if perm is None:
        raise NotFound("document not found")
    if write and not permission_at_least(perm, Permission.write):
        from ragd.errors import Forbidden

        raise Forbidden("this needs write permission on the document's collection")
    return doc, versions


@router.get("/documents/{document_id}", response_model=DocumentDetail)
def get_document(
    document_id: Annotated[str, Path(min_length=1, max_length=64)],
    principal: CurrentPrincipal,
    state: StateDep,
    service: IngestionDep,
) -> DocumentDetail:
    """A document with all its versions."""
    doc, versions = _readable_document(service, state, principal, document_id, write=False)
    latest = versions[0] if versions else None
    return DocumentDetail(
        **_public(doc, latest),
        versions=[
            VersionPublic(
                version=v.version,
                status=v.status,
                content_type=v.mime_type,
                size_bytes=v.size_bytes,
                chunk_count=v.chunk_count,
                flagged_chunks=v.flagged_chunks,
                error=v.error,
                created_at=v.created_at,
            )
            for v in versions
        ],
    )


@router.delete("/documents/{document_id}", status_code=204)
def delete_document(
    document_id: Annotated[str, Path(min_length=1, max_length=64)],
    principal: CurrentPrincipal,
    state: StateDep,
    service: IngestionDep,
    auditor: AuditDep,
) -> Response:
    """Delete a document: its chunks disappear from search at once."""
    doc, _ = _readable_document(service, state, principal, document_id, write=True)
    service.delete_document(principal.tenant, doc.id)
    auditor.record("document.delete", principal=principal, target=doc.id)
    return Response(status_code=204)
