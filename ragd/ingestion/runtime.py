"""The ingestion side of a server process: pipeline, job queue backend and service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragd.config import Settings
from ragd.ingestion.components import build_pipeline, build_service, worker_writes_index
from ragd.ingestion.job_queue import InProcessJobQueue, JobHandler, JobQueue
from ragd.ingestion.pipeline import INDEX, INGEST, InjectionScorer
from ragd.ingestion.service import IngestionService

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from sqlalchemy import Engine


def build_ingestion(
    settings: Settings, engine: Engine, qdrant: QdrantClient, scorer: InjectionScorer | None = None
) -> tuple[JobQueue, IngestionService]:
    """The job queue (not started) and the ingestion service of the process owning ``qdrant``.

    Embedded default: an in-process pool runs whole jobs. Celery: workers run them; this process
    dispatches and, unless workers may write the index themselves (Qdrant server), writes what
    they staged, so a local Qdrant path is only ever opened by this one process.
    """
    from ragd.retrieval.reembed import REEMBED, reembed_handler

    pipeline = build_pipeline(settings, engine, qdrant, scorer)
    # Moving a collection to another embedder rewrites its points: the index owner runs it.
    reembed = reembed_handler(settings, qdrant, engine)
    queue: JobQueue
    if settings.queue.backend == "celery":
        from ragd.ingestion.celery_app import CeleryJobQueue

        index_handlers: dict[str, JobHandler] = {REEMBED: reembed}
        if not worker_writes_index(settings):
            index_handlers[INDEX] = pipeline.run_index
        queue = CeleryJobQueue(settings, engine, index_handlers)
    else:
        queue = InProcessJobQueue(
            engine,
            {**pipeline.handlers, REEMBED: reembed},
            workers=settings.queue.workers,
            lease_s=settings.queue.lease_s,
            batch=pipeline.run_batch,
            batch_kind=INGEST,
            nice=settings.queue.worker_nice,
        )
    return queue, build_service(settings, engine, queue, pipeline)
