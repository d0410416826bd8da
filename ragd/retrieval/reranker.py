"""Cross-encoder reranking with any local sentence-transformers ``CrossEncoder`` directory."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ragd.errors import ConfigError
from ragd.retrieval.base import SearchHit

if TYPE_CHECKING:
    from sqlalchemy import Engine


def resolve_reranker(model: str, engine: Engine | None = None) -> tuple[Path, str]:
    """Directory and stable name of a reranker: a local directory or a registry name[@version]."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ConfigError("RAGD_RETRIEVAL__RERANKER", f"{path} is not a transformers model directory")
        return path, path.name
    if engine is None:
        raise ConfigError("RAGD_RETRIEVAL__RERANKER", f"{model!r} is not a local directory")
    from ragd.errors import NotFound
    from ragd.llm_serving.model_registry import get_model, get_production

    name, _, version = model.partition("@")
    try:
        entry = (
            get_model(engine, name, int(version))
            if version
            else (get_production(engine, name) or get_model(engine, name))
        )
    except (NotFound, ValueError) as exc:
        raise ConfigError("RAGD_RETRIEVAL__RERANKER", f"no reranker {model!r} in the model registry") from exc
    return Path(entry.path), f"{entry.name}@{entry.version}"


class CrossEncoderReranker:
    """:class:`~ragd.retrieval.base.Reranker` scoring (query, passage) pairs with a CrossEncoder."""

    def __init__(self, path: Path, *, name: str, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        self.name = name
        self.batch_size = batch_size
        self._model = CrossEncoder(str(path), device=device, local_files_only=True, max_length=512)
        self._lock = threading.Lock()  # one batch at a time: parallel calls only thrash the cores

    def rerank(self, query: str, hits: Sequence[SearchHit], top_k: int) -> list[SearchHit]:
        """The best ``top_k`` of ``hits`` by cross-encoder score (ties keep retrieval order)."""
        if not hits:
            return []
        with self._lock:
            scores = self._model.predict(
                [(query, h.text) for h in hits], batch_size=self.batch_size, show_progress_bar=False
            )
        order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))
        return [replace(hits[i], score=float(scores[i])) for i in order[:top_k]]
