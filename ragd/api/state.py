"""The typed state object that the app factory builds once and closes on shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from ragd.config import Settings
from ragd.ingestion.job_queue import JobQueue
from ragd.llm_serving.base import ChatModel

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


@dataclass
class AppState:
    """Long-lived objects shared by every request."""

    settings: Settings
    engine: Engine
    qdrant: QdrantClient
    jobs: JobQueue
    llm: ChatModel
    metrics: CollectorRegistry
    extras: dict[str, Any] = field(default_factory=dict)


def get_state(request: Request) -> AppState:
    """The app's :class:`AppState` (dependency)."""
    state: AppState = request.app.state.ragd
    return state


StateDep = Annotated[AppState, Depends(get_state)]
