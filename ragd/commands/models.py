"""``ragd models list|show|promote|archive|prepare``: the model registry from the command line."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError, RagdError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ragd.config import Settings
    from ragd.db.models import ModelEntry


def _engine(settings: Settings) -> Engine:
    from ragd.db.engine import build_engine, check_connection, migrate

    engine = build_engine(settings)
    try:
        check_connection(engine)
    except ConfigError as exc:
        fail(str(exc))
    migrate(engine)
    return engine


def _row(e: ModelEntry) -> dict[str, object]:
    return {
        "name": e.name,
        "version": e.version,
        "kind": e.kind,
        "stage": str(e.stage),
        "path": e.path,
        "base_model": e.base_model,
        "training_data_hash": e.training_data_hash,
        "metrics": e.metrics,
        "created_at": e.created_at.isoformat() if e.created_at else None,
    }


def list_cmd(
    kind: Annotated[str | None, typer.Option(help="base, prepared, lora, embedder or classifier.")] = None,
    stage: Annotated[str | None, typer.Option(help="staged, production or archived.")] = None,
    name: Annotated[str | None, typer.Option(help="Only this model name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered models, newest version first."""
    from ragd.llm_serving.model_registry import list_models

    try:
        rows = [_row(e) for e in list_models(_engine(load_settings()), name=name, kind=kind, stage=stage)]
    except RagdError as exc:
        fail(exc.message)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        typer.echo(f"{r['name']:<32} v{r['version']:<4} {r['kind']:<11} {r['stage']:<10} {r['path']}")
    if not rows:
        typer.echo("no models registered")


def show_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
) -> None:
    """Show one model version with its lineage and metrics (JSON)."""
    from ragd.llm_serving.model_registry import get_model

    try:
        typer.echo(
            json.dumps(_row(get_model(_engine(load_settings()), name, version)), indent=2, default=str)
        )
    except RagdError as exc:
        fail(exc.message)


def promote_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Argument(help="Version (default: latest).")] = None,
    load: Annotated[
        bool, typer.Option(help="For a LoRA adapter, (re)load it on the configured vLLM servers.")
    ] = True,
) -> None:
    """Make a version the production one; a LoRA adapter is loaded on running vLLM servers."""
    from ragd.llm_serving.model_registry import get_model, promote
    from ragd.llm_serving.vllm_launcher import AdapterLoader, promote_adapter

    settings = load_settings()
    engine = _engine(settings)
    try:
        entry = get_model(engine, name, version)
        servers = settings.llm.openai_backends if "openai" in settings.llm.chain else []
        if entry.kind == "lora" and load and servers:
            loaders = [AdapterLoader(s.base_url, s.api_key.get_secret_value(), s.timeout_s) for s in servers]

            async def go() -> ModelEntry:
                try:
                    return await promote_adapter(engine, name, entry.version, loaders)
                finally:
                    for loader in loaders:
                        await loader.aclose()

            entry = asyncio.run(go())
            typer.echo(
                f"{entry.name} v{entry.version} is in production and loaded on {len(loaders)} server(s)"
            )
        else:
            entry = promote(engine, name, entry.version)
            typer.echo(f"{entry.name} v{entry.version} is in production")
    except RagdError as exc:
        fail(exc.message)


def archive_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to archive.")],
) -> None:
    """Archive a version (kept for lineage, no longer promotable)."""
    from ragd.llm_serving.model_registry import archive

    try:
        entry = archive(_engine(load_settings()), name, version)
    except RagdError as exc:
        fail(exc.message)
    typer.echo(f"{entry.name} v{entry.version} archived")


def prepare_cmd(
    name: Annotated[str, typer.Argument(help="Packaged model to prepare (smollm2).")],
    force: Annotated[bool, typer.Option(help="Rebuild even when already prepared.")] = False,
) -> None:
    """Turn the packaged GGUF into an HF safetensors directory for vLLM, and register it."""
    from ragd.llm_serving.model_prep import PREPARABLE, is_prepared, prepare_model, prepared_dir
    from ragd.llm_serving.model_registry import get_production, register_model

    if name not in PREPARABLE:
        fail(f"cannot prepare {name!r}; choose one of {', '.join(PREPARABLE)}")
    settings = load_settings()
    out = prepared_dir(settings.data_dir, name).resolve()
    fresh = force or not is_prepared(out)
    try:
        prepare_model(name, out, force=force)
        engine = _engine(settings)
        current = get_production(engine, name)
        if fresh or current is None or current.path != str(out):
            entry = register_model(
                engine, name=name, kind="prepared", path=out, base_model=f"{name}-gguf", stage="production"
            )
            typer.echo(f"prepared {name} at {out} (registered v{entry.version}, production)")
        else:
            typer.echo(f"{name} is already prepared at {out}")
    except RagdError as exc:
        fail(exc.message)


def register(app: typer.Typer, groups: CommandGroups) -> None:
    models = groups.group("models", "The model registry: base, prepared, adapters, embedders, classifiers.")
    models.command("list")(list_cmd)
    models.command("show")(show_cmd)
    models.command("promote")(promote_cmd)
    models.command("archive")(archive_cmd)
    models.command("prepare")(prepare_cmd)
