"""``ragd finetune llm`` (LoRA on chat records) and ``ragd finetune make-sft`` (HotpotQA -> records)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError, RagdError


def make_sft_cmd(
    dataset: Annotated[Path, typer.Option("--dataset", help="HotpotQA-format JSONL.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the chat-format records.")] = Path(
        "sft.jsonl"
    ),
    passages: Annotated[int, typer.Option(help="Passages per question.")] = 3,
    passage_chars: Annotated[int, typer.Option(help="Characters kept per passage.")] = 400,
    hold_out: Annotated[int, typer.Option(help="Percent of ids held out for evaluation (hash split).")] = 0,
    limit: Annotated[int | None, typer.Option(help="Read at most this many lines.")] = None,
) -> None:
    """Build grounded-answer records (question + passages -> short answer citing a passage)."""
    from ragd.llm_serving.sft_data import make_sft

    try:
        counts = make_sft(
            dataset, out, k=passages, max_chars=passage_chars, eval_percent=hold_out, limit=limit
        )
    except RagdError as exc:
        fail(exc.message)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {dataset}: {type(exc).__name__}")
    typer.echo(f"wrote {counts['written']} records to {out} ({counts['held_out']} held out)")


def llm_cmd(
    data: Annotated[Path, typer.Option("--data", help="Chat-format JSONL ({'messages': [...]}).")],
    base: Annotated[str, typer.Option(help="Prepared base model (ragd models prepare NAME).")] = "smollm2",
    name: Annotated[
        str, typer.Option(help="Adapter name (also its served model name).")
    ] = "smollm2-grounded",
    epochs: Annotated[float, typer.Option(help="Passes over the data.")] = 1.0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimiser steps.")] = None,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (linear decay).")] = 1e-3,
    rank: Annotated[int, typer.Option(help="LoRA rank (vLLM serves up to --max-lora-rank 8).")] = 8,
    promote: Annotated[bool, typer.Option(help="Register straight into production.")] = False,
) -> None:
    """Train a LoRA adapter with peft and register it (staged) in the model registry."""
    from ragd.db.engine import build_engine, check_connection, migrate
    from ragd.llm_serving.lora_finetune import LoraConfigSpec, train_lora
    from ragd.llm_serving.model_registry import data_hash, list_models, register_model
    from ragd.llm_serving.vllm_launcher import production_model_dir

    settings = load_settings()
    engine = build_engine(settings)
    try:
        check_connection(engine)
        migrate(engine)
        spec = LoraConfigSpec(epochs=epochs, max_steps=max_steps, learning_rate=learning_rate, rank=rank)
        base_dir = production_model_dir(engine, settings.data_dir.resolve(), base)
        version = 1 + max((e.version for e in list_models(engine, name=name)), default=0)
        out = (settings.data_dir / "models" / "adapters" / name / f"v{version}").resolve()
        if not data.is_file():
            fail(f"{data} is not a file")
        metrics = train_lora(base_dir, data, out, spec)
        entry = register_model(
            engine,
            name=name,
            kind="lora",
            path=out,
            base_model=base,
            training_data_hash=data_hash([data]),
            metrics=metrics,
            stage="production" if promote else "staged",
        )
    except ConfigError as exc:
        fail(str(exc))
    except RagdError as exc:
        fail(exc.message)
    typer.echo(
        f"trained {entry.name} v{entry.version} ({metrics['steps']} steps, loss {metrics['first_loss']} -> "
        f"{metrics['final_loss']}, {metrics['train_seconds']} s) at {out}; stage {entry.stage}"
    )


def register(app: typer.Typer, groups: CommandGroups) -> None:
    finetune = groups.group("finetune", "Fine-tune models and register the results.")
    finetune.command("llm")(llm_cmd)
    finetune.command("make-sft")(make_sft_cmd)
