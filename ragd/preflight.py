"""Start-up checks that turn a wrong setting into one clear line before the server starts."""

from __future__ import annotations

import os

from ragd.config import Settings
from ragd.db.engine import build_engine, check_connection
from ragd.errors import ConfigError
from ragd.retrieval.qdrant_connection import open_qdrant


def preflight(settings: Settings) -> None:
    """Check the database, the vector store and the model files; raise :class:`ConfigError`."""
    engine = build_engine(settings)
    try:
        check_connection(engine)
    finally:
        engine.dispose()
    # Opening local-mode storage takes its lock: this catches a path held by another process.
    open_qdrant(settings).close()
    if settings.embedding.precision != "fp32":
        # The embedder is exported to ONNX on first use: its cache must be writable.
        cache = settings.onnx_cache_dir
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("RAGD_EMBEDDING__ONNX_CACHE", f"cannot create {cache}: {exc}") from exc
        if not os.access(cache, os.W_OK):
            raise ConfigError("RAGD_EMBEDDING__ONNX_CACHE", f"{cache} is not writable")
    if "llamacpp" in settings.llm.chain:
        if settings.llm.llamacpp.model_path is None:
            from ragd.llm_serving.model_files import smollm2_gguf

            smollm2_gguf()
        elif not settings.llm.llamacpp.model_path.is_file():
            raise ConfigError(
                "RAGD_LLM__LLAMACPP__MODEL_PATH", f"{settings.llm.llamacpp.model_path} is not a file"
            )
