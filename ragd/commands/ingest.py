"""``ragd ingest PATH... --collection NAME`` and ``ragd worker`` (Celery)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError, RagdError
from ragd.health import ComponentHealth

if TYPE_CHECKING:
    from ragd.config import Settings
    from ragd.ingestion.blob_store import LocalBlobStore
    from ragd.ingestion.service import IngestionService, UploadOutcome

_READ_BLOCK = 1024 * 1024
#: Files registered and run together (their chunks are embedded in one call).
_BATCH_FILES = 16


def _walk(paths: list[Path]) -> Iterator[Path]:
    """Files under ``paths`` (folders walked recursively, hidden entries skipped), sorted."""
    for root in paths:
        if root.is_file():
            yield root
            continue
        if not root.is_dir():
            fail(f"{root}: no such file or folder")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    yield Path(dirpath) / name


def _read_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(_READ_BLOCK):
            yield block


def _register(
    service: IngestionService,
    blobs: LocalBlobStore,
    path: Path,
    tenant: str,
    collection_id: str,
    settings: Settings,
) -> UploadOutcome:
    """Store one file and register it (a queued job, "unchanged", or a per-file rejection)."""
    from ragd.ingestion.service import UploadOptions, rejected
    from ragd.ingestion.sniffing import check_filename

    try:
        name = check_filename(path.name)
        blob = blobs.put_chunks(_read_blocks(path), settings.ingestion.max_upload_bytes)
        return service.accept(
            tenant=tenant,
            collection_id=collection_id,
            filename=name,
            blob=blob,
            options=UploadOptions(),
            created_by="cli",
        )
    except RagdError as exc:
        return rejected(path.name, exc)
    except OSError as exc:
        return rejected(path.name, RagdError(f"cannot read the file ({exc.strerror})"))


class _NoQueue:
    """The CLI runs each job itself, right after registering it."""

    def submit(self, job_id: str) -> None:
        """Nothing to announce."""

    def start(self) -> None:
        """Nothing runs in the background."""

    def stop(self) -> None:
        """Nothing runs in the background."""

    def health(self) -> ComponentHealth:
        return ComponentHealth("job_queue", True, "", {"backend": "cli"})


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively).")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    tenant: Annotated[str, typer.Option(help="Tenant of the collection.")] = "default",
) -> None:
    """Ingest files into a collection in this process, with progress and a summary table.

    Uses the configured metadata store and vector store; with local-mode Qdrant it refuses to
    run while a server holds the same storage path (one writer per path).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from sqlmodel import Session, select

    from ragd.allocator import tune_allocator
    from ragd.db.engine import build_engine, check_connection, migrate
    from ragd.db.models import Collection, DocumentVersion, JobStatus
    from ragd.ingestion.components import blob_store, build_pipeline, build_service
    from ragd.ingestion.job_queue import claim_job, worker_identity
    from ragd.retrieval.qdrant_connection import open_qdrant

    settings = load_settings()
    tune_allocator(settings.memory)  # bulk ingestion is the encoder's heaviest user (ragd.allocator)
    if not collection.strip() or len(collection) > 128:
        fail("--collection must be 1-128 characters")
    files = list(_walk(paths))
    if not files:
        fail("no files found")
    console = Console(stderr=True)
    try:
        engine = build_engine(settings)
        check_connection(engine)
        migrate(engine)
        qdrant = open_qdrant(settings)
        console.print("loading the embedder ...")
        pipeline = build_pipeline(settings, engine, qdrant)
    except ConfigError as exc:
        fail(str(exc))
    service: IngestionService = build_service(settings, engine, _NoQueue(), pipeline)
    with Session(engine) as s:
        coll = s.exec(
            select(Collection).where(Collection.tenant == tenant, Collection.name == collection)
        ).first()
        if coll is None:
            coll = Collection(tenant=tenant, name=collection, created_by="cli")
            s.add(coll)
            s.commit()
            s.refresh(coll)
        collection_id = coll.id
    blobs = blob_store(settings)
    worker = f"cli:{worker_identity()}"
    rows: list[tuple[str, str, int, str]] = []
    chunks_total, started = 0, time.monotonic()
    columns = (
        TextColumn("[bold]files"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[chunks]} chunks, {task.fields[rate]:.1f} chunks/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("ingest", total=len(files), chunks=0, rate=0.0)
        for first in range(0, len(files), _BATCH_FILES):
            group = files[first : first + _BATCH_FILES]
            outcomes = [_register(service, blobs, path, tenant, collection_id, settings) for path in group]
            claimed = [
                claim_job(engine, o.job_id, worker, settings.queue.lease_s) for o in outcomes if o.job_id
            ]
            # One embedding call for the whole group: small files are mostly overhead alone.
            pipeline.run_batch([j for j in claimed if j is not None], worker, settings.queue.lease_s)
            for path, outcome in zip(group, outcomes, strict=True):
                status, n_chunks, error = outcome.status, 0, (outcome.error or {}).get("message", "")
                if outcome.job_id is not None:
                    done = service.get_job(tenant, outcome.job_id)
                    status = "ready" if done.status == JobStatus.ready else "failed"
                    error = done.error or ""
                    with Session(engine) as s:
                        v = s.exec(
                            select(DocumentVersion)
                            .where(DocumentVersion.document_id == outcome.document_id)
                            .where(DocumentVersion.version == outcome.version)
                        ).first()
                    n_chunks = v.chunk_count if v is not None and status == "ready" else 0
                elif status == "rejected":
                    status = "failed"
                chunks_total += n_chunks
                rows.append((str(path), status, n_chunks, error))
            rate = chunks_total / max(1e-6, time.monotonic() - started)
            progress.update(bar, advance=len(group), chunks=chunks_total, rate=rate)
    qdrant.close()
    engine.dispose()
    table = Table(title=f"ingested into {collection!r}")
    for column in ("file", "status", "chunks", "error"):
        table.add_column(column)
    for file, status, n, error in rows:
        style = {"ready": "green", "unchanged": "cyan", "failed": "red"}.get(status, "")
        table.add_row(file, f"[{style}]{status}[/]", str(n), error[:120])
    Console().print(table)
    counts = {k: sum(1 for r in rows if r[1] == k) for k in ("ready", "unchanged", "failed")}
    typer.echo(f"ready {counts['ready']}, unchanged {counts['unchanged']}, failed {counts['failed']}")
    if counts["failed"]:
        raise typer.Exit(1)


def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=64, help="Jobs at once (default RAGD_QUEUE__WORKER_CONCURRENCY).")
    ] = None,
) -> None:
    """Run a Celery ingestion worker (RAGD_QUEUE__BACKEND=celery, broker RAGD_QUEUE__REDIS_URL)."""
    from ragd.allocator import tune_allocator
    from ragd.ingestion.celery_app import run_worker
    from ragd.log_config import configure_logging

    settings = load_settings()
    tune_allocator(settings.memory)  # before any thread starts (see ragd.allocator)
    configure_logging(settings.log_level, settings.log_json)
    if settings.queue.backend != "celery":
        fail("RAGD_QUEUE__BACKEND is 'inprocess': the server runs jobs itself; set it to 'celery'")
    if settings.database_url.startswith("sqlite") and ":memory:" in settings.database_url:
        fail("RAGD_DB__URL: an in-memory database cannot be shared with the server")
    try:
        import redis

        redis.Redis.from_url(settings.queue.redis_url, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure is reported as one line
        fail(f"RAGD_QUEUE__REDIS_URL: cannot reach the broker ({type(exc).__name__})")
    run_worker(settings, concurrency or settings.queue.worker_concurrency, settings.log_level)


def register(app: typer.Typer, groups: CommandGroups) -> None:
    """Attach this module's commands."""
    app.command()(ingest)
    app.command()(worker)
