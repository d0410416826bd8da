"""``ragd eval guardrails`` and ``ragd finetune injection-classifier``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError, RagdError

DEFAULT_TRAIN = Path("../shared/data/prompt_injection/deepset_train.jsonl")
DEFAULT_CORPUS = Path("../shared/data")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")


def eval_guardrails(
    dataset: Annotated[
        Path, typer.Option("--dataset", help='JSONL with {"text", "label"} rows; label 1 = attack.')
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the metrics to this file.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Injection classifier file to use instead of the configured one.")
    ] = None,
) -> None:
    """Evaluate the input guard chain: precision, recall, F1, FPR and p50 latency per message."""
    from ragd.guardrails.evaluation import evaluate_input_chain, load_dataset

    settings = load_settings()
    try:
        rows = load_dataset(dataset)
    except (ValueError, OSError) as exc:
        fail(str(exc).splitlines()[0][:300])
    try:
        service = _service(settings, model)
        metrics, _ = evaluate_input_chain(service, rows)
    except (ConfigError, RagdError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(metrics))
    if json_out is not None:
        _write_json(json_out, metrics)


def _service(settings: Any, model: Path | None) -> Any:
    from ragd.db.engine import build_engine
    from ragd.guardrails.service import GuardService, load_classifier

    if model is not None:
        return GuardService(settings, classifier=load_classifier(model, "--model"))
    return GuardService(settings, engine=build_engine(settings))


def finetune_injection_classifier(
    data: Annotated[
        Path, typer.Option(help="deepset-format training JSONL ({text, label}).")
    ] = DEFAULT_TRAIN,
    c: Annotated[
        float, typer.Option("--c", min=1e-4, max=1e4, help="Inverse L2 strength of the head.")
    ] = 32.0,
    target_fpr: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Benign FPR the threshold aims at.")
    ] = 0.02,
    promote: Annotated[bool, typer.Option(help="Make the new version the production classifier.")] = True,
    output: Annotated[Path | None, typer.Option(help="Also copy the model file here.")] = None,
    corpus_dir: Annotated[
        Path, typer.Option(help="HotpotQA/SciFact folder to derive benign requests from (skipped if absent).")
    ] = DEFAULT_CORPUS,
    n_generated: Annotated[
        int, typer.Option(min=30, max=100_000, help="Generated prompts to add (2/3 benign, 1/3 attacks).")
    ] = 3600,
) -> None:
    """Train the injection/jailbreak head on MiniLM, save it under the data dir and register it."""
    from ragd.db.engine import build_engine, check_connection, migrate
    from ragd.guardrails.injection_training import train_classifier
    from ragd.guardrails.service import REGISTRY_NAME
    from ragd.guardrails.text_encoder import MINILM_NAME, CachedEncoder, minilm_embedder
    from ragd.llm_serving.model_registry import data_hash, register_model

    settings = load_settings()
    if not data.is_file():
        fail(f"training data {data} does not exist (pass --data PATH)")
    engine = build_engine(settings)
    try:
        check_connection(engine)
        migrate(engine)
    except ConfigError as exc:
        fail(str(exc))
    encoder = CachedEncoder(minilm_embedder(settings), cache_size=200_000)
    try:
        model, metrics = train_classifier(
            data,
            encoder,
            c=c,
            target_fpr=target_fpr,
            n_benign=n_generated * 2 // 3,
            n_attack=n_generated // 3,
            corpus_dir=corpus_dir if corpus_dir.is_dir() else None,
        )
    except ValueError as exc:
        fail(str(exc).splitlines()[0][:300])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = settings.data_dir / "models" / REGISTRY_NAME / stamp / "classifier.json"
    model.save(target)
    generated = target.parent / "generated_train.jsonl"
    _dump_generated(generated, n_generated, corpus_dir if corpus_dir.is_dir() else None)
    entry = register_model(
        engine,
        name=REGISTRY_NAME,
        kind="classifier",
        path=target.resolve(),
        base_model=MINILM_NAME,
        training_data_hash=data_hash([data, generated]),
        metrics=metrics,
        stage="production" if promote else "staged",
    )
    if output is not None:
        model.save(output)
    dev = metrics["dev"]["classifier_or_rules"]
    typer.echo(
        json.dumps(
            {
                "name": entry.name,
                "version": entry.version,
                "stage": str(entry.stage),
                "path": str(target),
                "threshold": round(model.threshold, 4),
                "dev": dev,
            }
        )
    )


def _dump_generated(path: Path, n_generated: int, corpus_dir: Path | None) -> None:
    from ragd.guardrails.injection_training import generated_examples

    train, _ = generated_examples(n_generated * 2 // 3, n_generated // 3, corpus_dir)
    with path.open("w", encoding="utf-8") as fh:
        for e in train:
            fh.write(json.dumps({"text": e.text, "label": e.label, "family": e.source}) + "\n")


def register(app: typer.Typer, groups: CommandGroups) -> None:
    """Attach this module's commands."""
    groups.group("eval", "Offline evaluations.").command("guardrails")(eval_guardrails)
    groups.group("finetune", "Train or fine-tune models.").command("injection-classifier")(
        finetune_injection_classifier
    )
