"""Ingest evaluation paragraphs through the real pipeline.

Each question's paragraphs become one Markdown document with one ``# Title`` section per
paragraph; the chunker never lets a chunk cross a section, so every chunk belongs to exactly one
paragraph and carries its title as ``section``. (One file per paragraph gives the same chunks but
pays the per-document job overhead a thousand times.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ragd.config import Settings
from ragd.errors import RagdError
from ragd.health import ComponentHealth

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from sqlalchemy import Engine


class _RunHere:
    """A queue that announces nothing: the evaluation runs each job itself, in order."""

    def submit(self, job_id: str) -> None:
        """Nothing to announce."""

    def start(self) -> None:
        """Nothing runs in the background."""

    def stop(self) -> None:
        """Nothing runs in the background."""

    def health(self) -> ComponentHealth:
        return ComponentHealth("job_queue", True, "", {"backend": "eval"})


def _file_name(title: str, used: set[str]) -> str:
    base = re.sub(r"[^\w\- ]+", "", title).strip()[:80] or "paragraph"
    name, n = f"{base}.md", 1
    while name.lower() in used:
        n += 1
        name = f"{base} {n}.md"
    used.add(name.lower())
    return name


def ingest_paragraphs(
    settings: Settings,
    engine: Engine,
    qdrant: QdrantClient,
    collection_id: str,
    documents: Sequence[tuple[str, Sequence[tuple[str, str, str]]]],
    progress: Callable[[str], None],
    tenant: str = "eval",
) -> dict[tuple[str, str], str]:
    """Ingest documents of (context id, title, text) paragraphs; returns
    (document id, section title) -> context id."""
    from ragd.agents.qa_eval import section_key
    from ragd.db.models import JobStatus
    from ragd.ingestion.components import blob_store, build_pipeline, build_service
    from ragd.ingestion.job_queue import claim_job, run_claimed_job, worker_identity
    from ragd.ingestion.service import UploadOptions

    pipeline = build_pipeline(settings, engine, qdrant)
    service = build_service(settings, engine, _RunHere(), pipeline)
    blobs = blob_store(settings)
    worker = f"eval:{worker_identity()}"
    used: set[str] = set()
    mapping: dict[tuple[str, str], str] = {}
    failed = 0
    for n, (name, paragraphs) in enumerate(documents, start=1):
        body = "\n\n".join(f"# {title or 'Untitled'}\n\n{text}" for _, title, text in paragraphs) + "\n"
        blob = blobs.put_chunks([body.encode("utf-8")], settings.ingestion.max_upload_bytes)
        outcome = service.accept(
            tenant=tenant,
            collection_id=collection_id,
            filename=_file_name(name, used),
            blob=blob,
            options=UploadOptions(),
            created_by="ragd eval qa",
        )
        if outcome.job_id is None or outcome.document_id is None:
            failed += 1
            continue
        job = claim_job(engine, outcome.job_id, worker, settings.queue.lease_s)
        status = (
            run_claimed_job(engine, job, pipeline.handlers, worker, settings.queue.lease_s) if job else None
        )
        if status != JobStatus.ready:
            failed += 1
            continue
        for context_id, title, _ in paragraphs:
            mapping[(outcome.document_id, section_key(title or "Untitled"))] = context_id
        if n % 10 == 0 or n == len(documents):
            progress(f"ingested {n}/{len(documents)} documents")
    if not mapping:
        raise RagdError("no paragraph could be ingested")
    if failed:
        progress(f"{failed} documents failed to ingest")
    return mapping
