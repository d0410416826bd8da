"""BEIR-format retrieval evaluation through the real chunk -> embed -> index -> search path.

The corpus is chunked by ingestion's :class:`~ragd.ingestion.chunker.Chunker`, encoded by the
configured embedder and BM25 encoder, written by :class:`~ragd.retrieval.qdrant_index.QdrantIndex`
into a private Qdrant local-mode store, and searched by :class:`SearchService` with the same
filters a tenant's search uses. The store is cached under ``<data_dir>/eval_cache/retrieval/<key>``
where the key hashes the corpus bytes, the embedder name (weights), the sparse encoder and the
chunking settings, so a second run with the same inputs does not re-embed.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragd.config import Settings
from ragd.errors import BadRequest
from ragd.retrieval.base import ChunkRecord, Embedder, SearchFilter, SearchMode, SparseEncoder
from ragd.retrieval.qdrant_index import HybridParams, QdrantIndex, collection_name
from ragd.retrieval.search_service import SearchService

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

EVAL_TENANT = "beir-eval"
EVAL_COLLECTION = "corpus"
_NS = uuid.UUID("8f0e5a8e-3d6c-4b1e-9a3f-0c1d2e3f4a5b")
_CANDIDATE_CHUNKS = 200  # chunks fetched per query before collapsing to documents


@dataclass
class BeirData:
    """A BEIR dataset: corpus (id -> title, text), queries (id -> text), qrels (qid -> doc -> grade)."""

    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadRequest(f"{path.name} line {n}: not JSON") from exc
            if not isinstance(row, dict) or "_id" not in row:
                raise BadRequest(f"{path.name} line {n}: expected an object with an _id")
            yield row


def load_corpus(path: Path) -> dict[str, tuple[str, str]]:
    """``corpus.jsonl``: ``{"_id", "title", "text"}`` per line."""
    return {str(r["_id"]): (str(r.get("title") or ""), str(r.get("text") or "")) for r in _jsonl(path)}


def load_queries(path: Path) -> dict[str, str]:
    """``queries.jsonl``: ``{"_id", "text"}`` per line."""
    return {str(r["_id"]): str(r.get("text") or "") for r in _jsonl(path)}


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``qrels.tsv``: ``query-id<TAB>corpus-id<TAB>score`` with a header line."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and parts[0] in ("query-id", "query_id", "qid"):
                continue
            if not line.strip():
                continue
            if len(parts) < 3:
                raise BadRequest(f"{path.name} line {n}: expected query-id, corpus-id and score")
            try:
                grade = int(float(parts[2]))
            except ValueError as exc:
                raise BadRequest(f"{path.name} line {n}: score is not a number") from exc
            qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def load_beir(corpus: Path, queries: Path, qrels: Path) -> BeirData:
    """Load and cross-check the three files (a clear 400-style error when they do not fit)."""
    for p in (corpus, queries, qrels):
        if not p.is_file():
            raise BadRequest(f"{p} does not exist")
    data = BeirData(load_corpus(corpus), load_queries(queries), load_qrels(qrels))
    if not data.corpus:
        raise BadRequest(f"{corpus.name} holds no documents")
    judged = [q for q in data.queries if any(g > 0 for g in data.qrels.get(q, {}).values())]
    if not judged:
        raise BadRequest("no query in the queries file has a relevant document in the qrels")
    return data


def _sort_key(qid: str) -> tuple[int, int | str]:
    return (0, int(qid)) if qid.isdigit() else (1, qid)


def split_query_ids(qids: Iterable[str], dev_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """(train, dev): query ids sorted (numerically when numeric), the last ``dev_fraction`` is dev."""
    ordered = sorted(set(qids), key=_sort_key)
    n_train = len(ordered) - round(len(ordered) * dev_fraction)
    return ordered[:n_train], ordered[n_train:]


# --- metrics -------------------------------------------------------------------------------------


def ndcg_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gains (as pytrec_eval / BEIR)."""
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top ``k``."""
    relevant = {d for d, g in rels.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k``."""
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


# --- the cached index ----------------------------------------------------------------------------


def _corpus_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(settings: Settings, corpus_path: Path, embedder: Embedder, sparse: SparseEncoder) -> str:
    """Key of the cached index: corpus bytes, embedder weights, sparse encoder and chunking."""
    from ragd.ingestion.chunker import CHUNKING_VERSION

    ing = settings.ingestion
    parts = [
        _corpus_digest(corpus_path),
        embedder.name,
        sparse.name,
        f"chunk={ing.chunk_tokens}/{ing.chunk_overlap_tokens}/{settings.embedding.max_seq_length}",
        f"chunking={CHUNKING_VERSION}",
        "v2",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _chunker(settings: Settings, embedder_path: Path) -> Any:
    from ragd.ingestion.chunker import Chunker, WordPieceTokenizer

    max_tokens = min(settings.ingestion.chunk_tokens, settings.embedding.max_seq_length - 2)
    return Chunker(
        WordPieceTokenizer(embedder_path / "tokenizer.json"),
        max_tokens,
        settings.ingestion.chunk_overlap_tokens,
    )


def build_records(
    corpus: Mapping[str, tuple[str, str]],
    settings: Settings,
    embedder: Embedder,
    embedder_path: Path,
    sparse: SparseEncoder,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 256,
) -> Iterable[list[ChunkRecord]]:
    """Chunk, embed and encode the corpus, yielding batches of records ready to upsert."""
    from ragd.ingestion.parsers import ParsedElement

    chunker = _chunker(settings, embedder_path)
    pending: list[tuple[str, Any]] = []
    done = 0

    def flush() -> list[ChunkRecord]:
        # Each chunk carries its document's title (as BEIR's title + text convention does).
        texts = [f"{c.section}\n{c.text}" if c.section else c.text for _, c in pending]
        dense = embedder.embed_documents(texts)
        sparse_vecs = sparse.encode_documents(texts)
        out = [
            ChunkRecord(
                point_id=str(uuid.uuid5(_NS, f"{doc_id}:{c.index}")),
                dense=dense[i],
                sparse=sparse_vecs[i],
                payload={
                    "tenant": EVAL_TENANT,
                    "collection_id": EVAL_COLLECTION,
                    "document_id": doc_id,
                    "version": 1,
                    "chunk_index": c.index,
                    "text": texts[i],
                    "section": c.section,
                    "page": c.page,
                    "source": doc_id,
                    "acl": ["*"],
                    "metadata": {},
                    "created_at": 0.0,
                },
            )
            for i, (doc_id, c) in enumerate(pending)
        ]
        pending.clear()
        return out

    for doc_id, (title, text) in corpus.items():
        body = text if text.strip() else title
        if not body.strip():
            continue
        element = ParsedElement(text=body, category="NarrativeText", section=title.strip() or None, page=None)
        for chunk in chunker.chunk([element]):
            pending.append((doc_id, chunk))
        done += 1
        if len(pending) >= batch:
            yield flush()
            if progress:
                progress(done, len(corpus))
    if pending:
        yield flush()
    if progress:
        progress(done, len(corpus))


def _indexed_documents(index: QdrantIndex) -> set[str]:
    if not index.client.collection_exists(index.name):
        return set()
    seen: set[str] = set()
    offset: Any = None
    while True:
        points, offset = index.client.scroll(
            index.name, limit=2048, offset=offset, with_payload=["document_id"], with_vectors=False
        )
        seen.update(str((p.payload or {}).get("document_id")) for p in points)
        if offset is None:
            return seen


def open_cached_index(
    settings: Settings,
    corpus_path: Path,
    corpus: Mapping[str, tuple[str, str]],
    embedder: Embedder,
    embedder_path: Path,
    sparse: SparseEncoder,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> tuple[QdrantClient, QdrantIndex, bool]:
    """The evaluation index for this corpus and embedder: (client, index, built_now)."""
    from qdrant_client import QdrantClient

    key = cache_key(settings, corpus_path, embedder, sparse)
    root = settings.data_dir / "eval_cache" / "retrieval" / key
    done_marker = root / "complete.json"
    root.mkdir(parents=True, exist_ok=True)
    client = QdrantClient(path=str(root / "qdrant"))
    index = QdrantIndex(
        client, collection_name(settings.qdrant.collection_prefix, embedder.name), embedder.dim
    )
    if done_marker.exists():
        log(f"using cached index {root}")
        return client, index, False
    # An interrupted build resumes: a document's chunks are always written in one batch.
    done_docs = _indexed_documents(index)
    todo = {d: v for d, v in corpus.items() if d not in done_docs}
    log(f"indexing {len(todo)} of {len(corpus)} documents with {embedder.name} into {root}")
    index.ensure_collection()
    for records in build_records(
        todo, settings, embedder, embedder_path, sparse, progress=lambda d, n: log(f"  embedded {d}/{n}")
    ):
        index.upsert(records)
    total = index.count()
    done_marker.write_text(json.dumps({"documents": len(corpus), "chunks": total, "embedder": embedder.name}))
    return client, index, True


# --- evaluation ----------------------------------------------------------------------------------


@dataclass
class EvalOutcome:
    """Aggregate metrics and per-query items of one evaluation."""

    metrics: dict[str, Any]
    items: list[dict[str, Any]]


def evaluate(
    service: SearchService,
    data: BeirData,
    mode: SearchMode,
    *,
    query_ids: Sequence[str] | None = None,
    hybrid: HybridParams | None = None,
    rerank: bool | None = None,
) -> EvalOutcome:
    """Run every judged query through ``service`` and score the ranked documents."""
    flt = SearchFilter(tenant=EVAL_TENANT, collection_ids=[EVAL_COLLECTION])
    qids = [
        q
        for q in (query_ids if query_ids is not None else data.queries)
        if q in data.queries and any(g > 0 for g in data.qrels.get(q, {}).values())
    ]
    items: list[dict[str, Any]] = []
    for qid in qids:
        text = data.queries[qid].strip()
        ranked: list[str] = []
        latency = 0.0
        if text:
            res = service.search(
                text[: service.settings.auth.max_query_chars],
                flt,
                top_k=_CANDIDATE_CHUNKS,
                mode=mode,
                hybrid=hybrid,
                rerank=rerank,
            )
            latency = res.took_ms
            seen: set[str] = set()
            for hit in res.hits:
                if hit.document_id not in seen:
                    seen.add(hit.document_id)
                    ranked.append(hit.document_id)
        rels = data.qrels[qid]
        items.append(
            {
                "id": qid,
                "ndcg@10": ndcg_at(ranked, rels, 10),
                "recall@100": recall_at(ranked, rels, 100),
                "mrr@10": mrr_at(ranked, rels, 10),
                "latency_ms": latency,
                "retrieved": ranked[:10],
            }
        )
    n = len(items)

    def mean(key: str) -> float:
        return round(sum(float(i[key]) for i in items) / n, 4) if n else 0.0

    metrics = {
        "ndcg@10": mean("ndcg@10"),
        "recall@100": mean("recall@100"),
        "mrr@10": mean("mrr@10"),
        "queries": n,
        "mode": mode,
        "embedder": service.embedder.name,
    }
    return EvalOutcome(metrics=metrics, items=items)
