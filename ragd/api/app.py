"""The app factory: the only composition root of the HTTP server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import ragd
from ragd.api.console import install_console
from ragd.api.deps import PUBLIC, SECURITY_KEY
from ragd.api.error_docs import install_error_docs
from ragd.api.errors import install_error_handlers
from ragd.api.heap import HeapTrimmer
from ragd.api.limits import install_limits
from ragd.api.middleware import RequestContextMiddleware
from ragd.api.routers import audit, auth, collections, health, keys, users
from ragd.api.routers import chat as chat_routes
from ragd.api.routers import documents as documents_routes
from ragd.api.routers import evals as evals_routes
from ragd.api.routers import experiments as experiments_routes
from ragd.api.routers import feedback as feedback_routes
from ragd.api.routers import jobs as jobs_routes
from ragd.api.routers import monitoring as monitoring_routes
from ragd.api.routers import openai_compat as openai_routes
from ragd.api.routers import sessions as sessions_routes
from ragd.api.routers.documents import INGESTION_KEY
from ragd.api.routers.search import SEARCH_KEY
from ragd.api.routers.search import router as search_router
from ragd.api.state import AppState
from ragd.config import Settings
from ragd.db.engine import build_engine, check_connection, migrate
from ragd.ingestion.runtime import build_ingestion
from ragd.llm_serving.registry import build_chat_model
from ragd.privacy import disable_telemetry
from ragd.retrieval.qdrant_connection import open_qdrant
from ragd.retrieval.search_service import SearchService
from ragd.security.authenticator import Authenticator, build_authenticator

log = logging.getLogger(__name__)

HEAP_TRIM_KEY = "heap_trim"


async def build_state(settings: Settings, registry: CollectorRegistry) -> AppState:
    """Open every long-lived resource once (blocking work runs off the event loop)."""
    engine = build_engine(settings)
    await asyncio.to_thread(check_connection, engine)
    await asyncio.to_thread(migrate, engine)
    qdrant = await asyncio.to_thread(open_qdrant, settings)
    llm = build_chat_model(settings, registry)
    if settings.llm.load_on_startup:
        load = getattr(llm, "load", None)
        if load is not None:
            await asyncio.to_thread(load)
    jobs, ingestion = await asyncio.to_thread(build_ingestion, settings, engine, qdrant)
    jobs.start()
    state = AppState(settings=settings, engine=engine, qdrant=qdrant, jobs=jobs, llm=llm, metrics=registry)
    state.extras[SECURITY_KEY] = build_authenticator(settings, engine)
    state.extras[INGESTION_KEY] = ingestion
    state.extras[SEARCH_KEY] = await asyncio.to_thread(SearchService.from_settings, settings, qdrant, engine)
    await monitoring_routes.start_monitoring(state)
    trimmer = HeapTrimmer(settings.api.heap_trim_interval_s, registry)
    trimmer.start()
    state.extras[HEAP_TRIM_KEY] = trimmer
    state.extras[chat_routes.CHAT_KEY] = await asyncio.to_thread(chat_routes.build_chat_service, state)
    return state


async def close_state(state: AppState) -> None:
    """Release everything :func:`build_state` opened, in reverse order."""
    trimmer: HeapTrimmer | None = state.extras.get(HEAP_TRIM_KEY)
    if trimmer is not None:
        await trimmer.stop()
    await monitoring_routes.stop_monitoring(state)
    authn: Authenticator | None = state.extras.get(SECURITY_KEY)
    if authn is not None:
        await authn.limiter.aclose()
    await asyncio.to_thread(state.jobs.stop)
    await state.llm.aclose()
    state.qdrant.close()
    state.engine.dispose()


def create_app(settings: Settings) -> FastAPI:
    """Build the ragd FastAPI application for ``settings``."""
    disable_telemetry()
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await build_state(settings, registry)
        app.state.ragd = state
        log.info("ragd ready", extra={"version": ragd.__version__})
        try:
            yield
        finally:
            await close_state(state)

    app = FastAPI(
        title="ragd",
        version=ragd.__version__,
        description="Agentic RAG orchestration server.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_error_docs(app)
    install_limits(app, settings)
    app.add_middleware(RequestContextMiddleware, registry=registry)
    app.include_router(health.router, dependencies=[PUBLIC])
    for router in (auth.router, keys.router, users.router, collections.router, audit.router):
        app.include_router(router)
    app.include_router(search_router)
    app.include_router(evals_routes.router)
    app.include_router(experiments_routes.router)
    app.include_router(feedback_routes.router)
    app.include_router(monitoring_routes.router)
    app.include_router(documents_routes.router)
    app.include_router(jobs_routes.router)
    for router in (chat_routes.router, sessions_routes.router, openai_routes.router):
        app.include_router(router)
    install_console(app)
    return app
