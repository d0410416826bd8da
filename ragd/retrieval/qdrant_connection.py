"""Opening the Qdrant client: local mode on disk, in memory, or a server/cluster by URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragd.config import Settings
from ragd.errors import ConfigError
from ragd.health import ComponentHealth

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


def open_qdrant(settings: Settings) -> QdrantClient:
    """Create the one Qdrant client of this process.

    Local mode takes an exclusive lock on its storage path: a second process opening the same
    path fails here, with the setting named, instead of corrupting the index.
    """
    from qdrant_client import QdrantClient

    q = settings.qdrant
    if q.mode == "memory":
        return QdrantClient(location=":memory:")
    if q.mode == "server":
        return QdrantClient(
            url=q.url,
            api_key=q.api_key.get_secret_value() if q.api_key else None,
            timeout=int(q.timeout_s),
        )
    path = settings.qdrant_path
    path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:  # "Storage folder ... is already accessed by another instance"
        raise ConfigError(
            "RAGD_QDRANT__PATH",
            f"{path} is in use by another process (local mode allows one; use qdrant.mode=server)",
        ) from exc


def qdrant_health(client: QdrantClient) -> ComponentHealth:
    """List collections as a liveness probe of the vector store."""
    try:
        n = len(client.get_collections().collections)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return ComponentHealth("vector_store", False, type(exc).__name__)
    return ComponentHealth("vector_store", True, "", {"collections": n})
