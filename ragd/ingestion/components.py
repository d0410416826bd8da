"""Building the ingestion pipeline and service from settings (one place, used by every entry
point: the app factory, ``ragd ingest``, ``ragd worker`` and the benchmark)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragd.config import Settings
from ragd.errors import ConfigError
from ragd.ingestion.blob_store import LocalBlobStore
from ragd.ingestion.chunker import Chunker, WordPieceTokenizer
from ragd.ingestion.job_queue import JobQueue
from ragd.ingestion.pipeline import IngestPipeline, InjectionScorer
from ragd.ingestion.service import IngestionService
from ragd.ingestion.sniffing import ContainerLimits
from ragd.ingestion.staging import StagingArea

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from sqlalchemy import Engine

#: [CLS] and [SEP] take two of the embedder's positions.
_SPECIAL_TOKENS = 2


def blob_store(settings: Settings) -> LocalBlobStore:
    """The blob store under the data dir."""
    return LocalBlobStore(settings.data_dir / "blobs")


def container_limits(settings: Settings) -> ContainerLimits:
    """Zip-bomb bounds: an archive may expand to at most ``max_expanded_bytes``."""
    return ContainerLimits(max_total_bytes=settings.ingestion.max_expanded_bytes)


def build_pipeline(
    settings: Settings,
    engine: Engine,
    qdrant: QdrantClient | None,
    scorer: InjectionScorer | None = None,
) -> IngestPipeline:
    """The ingestion pipeline; ``qdrant=None`` builds a worker that stages instead of writing.

    Without an explicit ``scorer``, chunks are scanned for indirect prompt injection by the
    guardrails' trained scanner whenever guardrails are enabled (DESIGN.md §6: flag, never drop).
    """
    from ragd.retrieval.registry import build_embedder, build_index, build_sparse_encoder, resolve_embedder

    if scorer is None:
        from ragd.guardrails.service import build_injection_scanner

        scorer = build_injection_scanner(settings, engine)

    embedder = build_embedder(settings, engine)
    path, _ = resolve_embedder(settings.embedding.model, engine)
    tokenizer_json = path / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise ConfigError("RAGD_EMBEDDING__MODEL", f"{path} has no tokenizer.json (needed to bound chunks)")
    max_tokens = min(settings.ingestion.chunk_tokens, settings.embedding.max_seq_length - _SPECIAL_TOKENS)
    chunker = Chunker(WordPieceTokenizer(tokenizer_json), max_tokens, settings.ingestion.chunk_overlap_tokens)
    return IngestPipeline(
        engine=engine,
        blobs=blob_store(settings),
        chunker=chunker,
        embedder=embedder,
        sparse=build_sparse_encoder(settings),
        index=build_index(settings, qdrant, embedder) if qdrant is not None else None,
        staging=StagingArea(settings.data_dir / "staging"),
        scorer=scorer,
        container_limits=container_limits(settings),
        embed_batch=max(settings.embedding.batch_size, 64),
    )


def build_service(
    settings: Settings, engine: Engine, queue: JobQueue, pipeline: IngestPipeline | None
) -> IngestionService:
    """The document/job service (``pipeline`` gives it the index, for deletes)."""
    return IngestionService(
        engine,
        blob_store(settings),
        queue,
        max_attempts=settings.queue.max_attempts,
        container_limits=container_limits(settings),
        index=pipeline.index if pipeline is not None else None,
    )


def worker_writes_index(settings: Settings) -> bool:
    """Whether Celery workers write Qdrant themselves (server mode) or hand records back.

    Local mode lets one process open a storage path, and memory mode lives inside the server,
    so with either one only the server writes; workers stage their records for it.
    """
    return settings.qdrant.mode == "server"
