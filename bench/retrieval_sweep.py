"""Dev-split sweep of search configurations on a cached BEIR evaluation index.

    python bench/retrieval_sweep.py --data DATA_DIR [--embedder NAME_OR_PATH] [--split dev|train]

Uses the index ``ragd eval retrieval`` cached under ``DATA_DIR`` (built on first use), the split
of :func:`ragd.retrieval.beir_eval.split_query_ids` (the last 20% of the sorted SciFact train query
ids is dev), and prints nDCG@10 / recall@100 / MRR@10 for dense, sparse and hybrid fusions
(RRF with several k and weights, DBSF), with and without near-duplicate suppression. Query vectors
are computed once and reused, so the sweep costs no embedding beyond the queries.
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ragd.config import Settings
from ragd.retrieval.beir_eval import evaluate, load_beir, open_cached_index, split_query_ids
from ragd.retrieval.qdrant_index import HybridParams
from ragd.retrieval.registry import build_embedder, build_sparse_encoder, resolve_embedder
from ragd.retrieval.search_service import SearchService

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


class CachedQueries:
    """Wraps an embedder so each distinct query is embedded once across the sweep."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[attr-defined]
        self.dim = inner.dim  # type: ignore[attr-defined]
        self.embed_query = lru_cache(maxsize=None)(inner.embed_query)  # type: ignore[attr-defined]

    def embed_documents(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.inner.embed_documents(texts)  # type: ignore[attr-defined, no-any-return]

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)  # type: ignore[attr-defined, no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--embedder", default="all-MiniLM-L6-v2")
    ap.add_argument("--split", choices=("dev", "train"), default="dev")
    args = ap.parse_args()
    settings = Settings(data_dir=args.data)
    settings = settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"max_top_k": 1000})}
    )
    data = load_beir(DATA / "corpus.jsonl", DATA / "queries.train.jsonl", DATA / "qrels.train.tsv")
    train, dev = split_query_ids(data.queries)
    qids = dev if args.split == "dev" else train
    emb = build_embedder(settings, model=args.embedder)
    path, _ = resolve_embedder(args.embedder)
    sparse = build_sparse_encoder(settings)
    client, index, _ = open_cached_index(settings, DATA / "corpus.jsonl", data.corpus, emb, path, sparse)
    cached = CachedQueries(emb)
    rows = []

    def run(label: str, mode: str, hp: HybridParams | None = None, dedup: float = 0.9) -> None:
        s = settings.model_copy(
            update={"retrieval": settings.retrieval.model_copy(update={"dedup_threshold": dedup})}
        )
        svc = SearchService(s, index, cached, sparse)  # type: ignore[arg-type]
        m = evaluate(svc, data, mode, query_ids=qids, hybrid=hp).metrics  # type: ignore[arg-type]
        rows.append((label, m["ndcg@10"], m["recall@100"], m["mrr@10"]))
        print(
            f"{label:40} ndcg@10={m['ndcg@10']:.4f} recall@100={m['recall@100']:.4f} mrr@10={m['mrr@10']:.4f}"
        )

    run("dense", "dense")
    run("sparse", "sparse")
    run("hybrid dbsf", "hybrid", HybridParams(fusion="dbsf"))
    for k in (10, 30, 60):
        for wd, ws in ((1.0, 1.0), (1.0, 1.5), (1.5, 1.0), (1.0, 2.0), (2.0, 1.0)):
            run(
                f"hybrid rrf k={k} w=({wd},{ws})",
                "hybrid",
                HybridParams(rrf_k=k, dense_weight=wd, sparse_weight=ws),
            )
    run("hybrid rrf k=60 w=(1,1) no dedup", "hybrid", HybridParams(), dedup=1.0)
    best = max(rows, key=lambda r: r[1])
    print(f"best on {args.split}: {best[0]} ndcg@10={best[1]:.4f}")
    client.close()


if __name__ == "__main__":
    main()
