"""``ragd eval retrieval`` (BEIR-format evaluation) and ``ragd finetune embedder``."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError, RagdError


class NegativeMiner(StrEnum):
    """Who mines a fine-tuning pair's hard negatives."""

    dense = "dense"
    bm25 = "bm25"


Mode = typer.Option(help="Search mode: dense, sparse or hybrid (default: the configured mode).")


def _engine(settings: Any) -> Any:
    from ragd.db.engine import build_engine, migrate

    engine = build_engine(settings)
    migrate(engine)
    return engine


def _record(settings: Any, engine: Any, outcome: Any, embedder: Any, dataset: dict[str, Any]) -> str | None:
    """Store the run with ``ragd.evals`` (returns its id); a failure here only warns."""
    try:
        from ragd.evals.records import capture_config, record_eval_run

        m = outcome.metrics
        config = capture_config(
            settings,
            embedder=embedder,
            dataset=dataset,
            params={
                "mode": m["mode"],
                "fusion": settings.retrieval.fusion,
                "rrf_k": settings.retrieval.rrf_k,
                "weights": [settings.retrieval.dense_weight, settings.retrieval.sparse_weight],
                "reranker": settings.retrieval.reranker,
            },
        )
        numbers = {k: v for k, v in m.items() if isinstance(v, int | float)}
        run = record_eval_run(engine, kind="retrieval", config=config, metrics=numbers, items=outcome.items)
        return str(run.id)
    except Exception as exc:  # noqa: BLE001 - recording is a side effect; the figures are printed anyway
        typer.echo(f"ragd: warning: eval run not recorded ({type(exc).__name__})", err=True)
        return None


def eval_retrieval(
    corpus: Annotated[Path, typer.Option(help="BEIR corpus.jsonl.")],
    queries: Annotated[Path, typer.Option(help="BEIR queries.jsonl.")],
    qrels: Annotated[Path, typer.Option(help="BEIR qrels .tsv (query-id, corpus-id, score).")],
    mode: Annotated[str | None, Mode] = None,
    embedder: Annotated[
        str | None, typer.Option(help="Embedder: all-MiniLM-L6-v2, a local directory or a registry name.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result JSON here.")] = None,
    rerank: Annotated[
        bool | None, typer.Option("--rerank/--no-rerank", help="Override whether the reranker runs.")
    ] = None,
) -> None:
    """Index a BEIR corpus through ragd's real chunk/embed/index/search path; print nDCG@10 etc."""
    from ragd.retrieval.beir_eval import evaluate, load_beir, open_cached_index
    from ragd.retrieval.registry import build_embedder, build_reranker, build_sparse_encoder, resolve_embedder
    from ragd.retrieval.search_service import SEARCH_MODES, SearchService

    settings = load_settings()
    chosen = mode or settings.retrieval.default_mode
    if chosen not in SEARCH_MODES:
        fail(f"--mode must be one of {', '.join(SEARCH_MODES)}")
    try:
        data = load_beir(corpus, queries, qrels)
        engine = _engine(settings)
        model = embedder or settings.embedding.model
        emb = build_embedder(settings, engine, model=model)
        path, _ = resolve_embedder(model, engine)
        sparse = build_sparse_encoder(settings)
        client, index, _ = open_cached_index(settings, corpus, data.corpus, emb, path, sparse)
        try:
            eval_settings = settings.model_copy(
                update={"retrieval": settings.retrieval.model_copy(update={"max_top_k": 1000})}
            )
            service = SearchService(eval_settings, index, emb, sparse, build_reranker(settings, engine))
            outcome = evaluate(service, data, chosen, rerank=rerank)
        finally:
            client.close()
    except (RagdError, ConfigError, OSError) as exc:
        fail(getattr(exc, "message", None) or str(exc))
    result = outcome.metrics
    text = json.dumps(result)
    typer.echo(text)
    if json_out is not None:
        try:
            json_out.write_text(text + "\n")
        except OSError as exc:
            fail(f"cannot write {json_out}: {exc.strerror}")
    run_id = _record(
        settings, engine, outcome, emb, {"corpus": str(corpus), "queries": str(queries), "qrels": str(qrels)}
    )
    if run_id:
        typer.echo(f"recorded eval run {run_id}", err=True)


def finetune_embedder(
    queries: Annotated[Path, typer.Option(help="BEIR queries.jsonl (training queries).")],
    qrels: Annotated[Path, typer.Option(help="BEIR qrels .tsv for those queries.")],
    corpus: Annotated[Path, typer.Option(help="BEIR corpus.jsonl.")],
    name: Annotated[str, typer.Option(help="Registry name of the fine-tuned embedder.")] = "minilm-finetuned",
    dev_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Last share of sorted query ids held out as dev.")
    ] = 0.2,
    epochs: Annotated[int, typer.Option(min=1, max=20, help="Training epochs.")] = 3,
    batch_size: Annotated[
        int, typer.Option(min=2, max=512, help="Pairs per batch (in-batch negatives).")
    ] = 32,
    learning_rate: Annotated[float, typer.Option(min=1e-7, max=1e-2, help="Peak learning rate.")] = 5e-5,
    hard_negatives: Annotated[int, typer.Option(min=0, max=10, help="Mined negatives per pair.")] = 1,
    negatives: Annotated[
        NegativeMiner, typer.Option(help="Who mines them: the base embedder (dense) or BM25.")
    ] = NegativeMiner.dense,
    max_seq_length: Annotated[
        int, typer.Option(min=32, max=512, help="Token limit of training texts (compute grows with it).")
    ] = 256,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 13,
    evaluate_dev: Annotated[
        bool, typer.Option("--eval/--no-eval", help="Measure dense nDCG@10 on the dev split and record it.")
    ] = True,
    promote: Annotated[bool, typer.Option(help="Make the new version the production version.")] = False,
) -> None:
    """Fine-tune all-MiniLM-L6-v2 on BEIR training data and register it in the model registry."""
    from ragd.retrieval.finetune import FinetuneConfig, finetune_and_register

    settings = load_settings()
    cfg = FinetuneConfig(
        name=name,
        dev_fraction=dev_fraction,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        hard_negatives=hard_negatives,
        negatives=negatives.value,
        seed=seed,
        max_seq_length=max_seq_length,
        evaluate_dev=evaluate_dev,
        promote=promote,
    )
    try:
        engine = _engine(settings)
        entry = finetune_and_register(
            settings, engine, cfg, queries, qrels, corpus, log=lambda m: print(m, file=sys.stderr)
        )
    except (RagdError, ConfigError, OSError) as exc:
        fail(getattr(exc, "message", None) or str(exc))
    typer.echo(
        json.dumps(
            {
                "name": entry.name,
                "version": entry.version,
                "path": entry.path,
                "stage": str(entry.stage),
                "metrics": entry.metrics,
            }
        )
    )


def register(app: typer.Typer, groups: CommandGroups) -> None:
    """Attach this module's commands."""
    groups.group("eval", "Offline evaluations.").command("retrieval")(eval_retrieval)
    groups.group("finetune", "Train or fine-tune models.").command("embedder")(finetune_embedder)
