"""Fine-tuning the MiniLM embedder on BEIR-format training data.

Training pairs are (query, relevant passage) from the first ``1 - dev_fraction`` of the sorted
query ids; each pair gets mined hard negatives: passages that the base embedder (``dense``, the
default) or BM25 ranks high for the query but the qrels do not mark relevant, sampled below the
very top (ranks 4-30 dense, 3-30 BM25) because the top often holds unjudged relevant passages.
The loss is sentence-transformers' MultipleNegativesRankingLoss: every other passage in the
batch is a negative too (in-batch negatives), plus the mined ones.

Why dense negatives: BM25's negatives are what the sparse half of hybrid search already tells
apart; the base embedder's own confusions are what fine-tuning can fix. SciFact dev split (162
queries), ``ragd eval retrieval --mode dense``: base 0.660, BM25 negatives and 2 epochs 0.678,
dense negatives and 3 epochs 0.683 (hybrid 0.751). Two dense negatives per pair instead of one
(``--hard-negatives 2``) gave 0.680 and doubled the training time (2,961 s on 2 AVX2 cores).

The result is saved under ``<data_dir>/models/embedders/<name>/<timestamp>`` and registered in the
model registry (kind ``embedder``) with the sha256 of its training files and its dev metrics.
Point ``embedding.model`` (``RAGD_EMBEDDING__MODEL``) at the registry name to use it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from ragd.config import Settings
from ragd.errors import BadRequest
from ragd.retrieval.beir_eval import BeirData, load_beir, split_query_ids
from ragd.retrieval.bm25_encoder import BM25Encoder

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ragd.db.models import ModelEntry
    from ragd.retrieval.base import Embedder

BASE_EMBEDDER = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run."""

    name: str = "minilm-finetuned"
    dev_fraction: float = 0.2
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    hard_negatives: int = 1
    negatives: Literal["dense", "bm25"] = "dense"
    seed: int = 13
    evaluate_dev: bool = True
    promote: bool = False
    max_seq_length: int = 256


def passage(title: str, text: str) -> str:
    """The passage text the embedder sees for a BEIR document (title, then body)."""
    return f"{title}\n{text}" if title else text


def corpus_passages(data: BeirData) -> dict[str, str]:
    """Document id -> the passage text the embedder sees."""
    return {d: passage(t, x) for d, (t, x) in data.corpus.items()}


class BM25Miner:
    """In-memory BM25 over whole documents (scipy sparse), for mining hard negatives."""

    skip = 2  # top ranks left out of the negatives (they often hold unjudged relevant passages)

    def __init__(self, docs: Mapping[str, str], encoder: BM25Encoder | None = None) -> None:
        from scipy import sparse

        self.encoder = encoder or BM25Encoder()
        self.doc_ids = list(docs)
        vecs = self.encoder.encode_documents([docs[d] for d in self.doc_ids])
        self._col: dict[int, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for r, v in enumerate(vecs):
            for idx, val in zip(v.indices, v.values, strict=True):
                rows.append(r)
                cols.append(self._col.setdefault(idx, len(self._col)))
                vals.append(val)
        self.matrix = sparse.csc_matrix((vals, (rows, cols)), shape=(len(self.doc_ids), len(self._col)))
        df = np.diff(self.matrix.indptr)
        n = len(self.doc_ids)
        self.idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0)

    def top(self, query: str, k: int) -> list[str]:
        """The ``k`` best documents for ``query`` by BM25."""
        cols = [self._col[i] for i in self.encoder.encode_query(query).indices if i in self._col]
        if not cols:
            return []
        scores = self.matrix[:, cols] @ self.idf[cols]
        best = np.argsort(-scores)[:k]
        return [self.doc_ids[i] for i in best if scores[i] > 0]


class DenseMiner:
    """Exact cosine search over whole documents with an embedder, for mining hard negatives."""

    skip = 3

    def __init__(self, docs: Mapping[str, str], embedder: Embedder) -> None:
        self.embedder = embedder
        self.doc_ids = list(docs)
        self.matrix = np.asarray(embedder.embed_documents([docs[d] for d in self.doc_ids]), dtype=np.float32)

    def top(self, query: str, k: int) -> list[str]:
        """The ``k`` documents nearest to ``query``."""
        scores = self.matrix @ np.asarray(self.embedder.embed_query(query), dtype=np.float32)
        return [self.doc_ids[i] for i in np.argsort(-scores)[:k]]


class Miner(Protocol):
    """Ranks documents for a query; ``skip`` top ranks are never taken as negatives."""

    skip: int

    def top(self, query: str, k: int) -> list[str]: ...


def training_examples(
    data: BeirData,
    train_ids: Sequence[str],
    hard_negatives: int,
    seed: int,
    miner: Miner | None = None,
    skip: int | None = None,
) -> list[dict[str, str]]:
    """(anchor, positive[, negative_1..n]) rows for MultipleNegativesRankingLoss; negatives come
    from ``miner`` (BM25 over the corpus when not given), below its top ``skip`` ranks (the
    miner's own ``skip`` unless given)."""
    rng = random.Random(seed)
    docs = corpus_passages(data)
    mine = (miner or BM25Miner(docs)) if hard_negatives else None
    first = 0 if mine is None else mine.skip if skip is None else skip
    rows: list[dict[str, str]] = []
    for qid in train_ids:
        query = data.queries.get(qid, "").strip()
        positives = [d for d, g in data.qrels.get(qid, {}).items() if g > 0 and d in docs]
        if not query or not positives:
            continue
        pool = [] if mine is None else [d for d in mine.top(query, 30)[first:] if d not in positives]
        for pos in positives:
            row = {"anchor": query, "positive": docs[pos]}
            if mine is not None:
                picks = rng.sample(pool, min(hard_negatives, len(pool)))
                if len(picks) < hard_negatives:  # every row needs the same columns
                    picks += rng.sample(list(docs), hard_negatives - len(picks))
                for i, neg in enumerate(picks, 1):
                    row[f"negative_{i}"] = docs[neg]
            rows.append(row)
    rng.shuffle(rows)
    return rows


def train_embedder(
    base_path: Path,
    rows: list[dict[str, str]],
    out_dir: Path,
    cfg: FinetuneConfig,
    log: Callable[[str], None],
) -> None:
    """Fine-tune the sentence-transformers model at ``base_path`` on ``rows``; save to ``out_dir``."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(base_path), device="cpu", local_files_only=True)
    model.max_seq_length = cfg.max_seq_length
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir / "_work"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=0.1,  # a float is a ratio of the total steps (transformers 5)
        seed=cfg.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        logging_steps=5,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=MultipleNegativesRankingLoss(model),
    )
    started = time.perf_counter()
    trainer.train()
    log(f"trained on {len(rows)} pairs in {time.perf_counter() - started:.0f} s")
    model.save(str(out_dir))


def finetune_and_register(
    settings: Settings,
    engine: Engine,
    cfg: FinetuneConfig,
    queries: Path,
    qrels: Path,
    corpus: Path,
    log: Callable[[str], None] = print,
) -> ModelEntry:
    """Train, optionally evaluate on the dev split, save and register; returns the registry entry."""
    from ragd.llm_serving.model_files import minilm_dir
    from ragd.llm_serving.model_registry import data_hash, register_model

    data = load_beir(corpus, queries, qrels)
    judged = [q for q in data.queries if any(g > 0 for g in data.qrels.get(q, {}).values())]
    train_ids, dev_ids = split_query_ids(judged, cfg.dev_fraction)
    miner: Miner | None = None  # BM25 unless the base embedder mines
    if cfg.hard_negatives and cfg.negatives == "dense":
        from ragd.retrieval.registry import build_embedder

        log(f"mining negatives with {BASE_EMBEDDER} over {len(data.corpus)} documents")
        miner = DenseMiner(corpus_passages(data), build_embedder(settings, model=BASE_EMBEDDER))
    rows = training_examples(data, train_ids, cfg.hard_negatives, cfg.seed, miner=miner)
    if len(rows) < cfg.batch_size:
        raise BadRequest(f"only {len(rows)} training pairs; need at least one batch ({cfg.batch_size})")
    log(f"{len(train_ids)} training queries -> {len(rows)} pairs; {len(dev_ids)} dev queries held out")
    out_dir = settings.data_dir / "models" / "embedders" / cfg.name / time.strftime("%Y%m%dT%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    train_embedder(minilm_dir(), rows, out_dir, cfg, log)
    metrics: dict[str, Any] = {
        "train_queries": len(train_ids),
        "train_pairs": len(rows),
        "dev_queries": len(dev_ids),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "hard_negatives": cfg.hard_negatives,
        "negatives": cfg.negatives,
    }
    if cfg.evaluate_dev and dev_ids:
        metrics.update(_dev_metrics(settings, corpus, data, dev_ids, out_dir, log))
    return register_model(
        engine,
        name=cfg.name,
        kind="embedder",
        path=out_dir,
        base_model=BASE_EMBEDDER,
        training_data_hash=data_hash([queries, qrels, corpus]),
        metrics=metrics,
        stage="production" if cfg.promote else "staged",
    )


def _dev_metrics(
    settings: Settings,
    corpus: Path,
    data: BeirData,
    dev_ids: Sequence[str],
    model_dir: Path,
    log: Callable[[str], None],
) -> dict[str, float]:
    """Dense nDCG@10 / recall@100 / MRR@10 on the dev split for the new and the base embedder."""
    from ragd.retrieval.beir_eval import evaluate, open_cached_index
    from ragd.retrieval.registry import build_embedder, build_sparse_encoder, resolve_embedder
    from ragd.retrieval.search_service import SearchService

    eval_settings = settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"max_top_k": 1000, "reranker": None})}
    )
    out: dict[str, float] = {}
    sparse = build_sparse_encoder(settings)
    for prefix, model in (("dev_", str(model_dir)), ("base_dev_", BASE_EMBEDDER)):
        emb = build_embedder(settings, model=model)
        path, _ = resolve_embedder(model)
        client, index, _ = open_cached_index(settings, corpus, data.corpus, emb, path, sparse, log=log)
        try:
            res = evaluate(SearchService(eval_settings, index, emb, sparse), data, "dense", query_ids=dev_ids)
        finally:
            client.close()
        for key in ("ndcg@10", "recall@100", "mrr@10"):
            out[prefix + key] = float(res.metrics[key])
        log(f"{prefix}ndcg@10 = {out[prefix + 'ndcg@10']:.4f}")
    return out
