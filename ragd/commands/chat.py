"""``ragd chat`` (one question, or an interactive session) and ``ragd eval qa``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError, RagdError

if TYPE_CHECKING:
    from ragd.agents.chat_service import ChatOutcome, ChatService
    from ragd.security.principal import Principal

QUIT = {"exit", "quit", ":q", "/quit", "/exit"}


async def _build_service() -> tuple[ChatService, Any]:
    from ragd.agents.chat_service import ChatService
    from ragd.db.engine import build_engine, check_connection, migrate
    from ragd.guardrails.service import build_guard_service
    from ragd.llm_serving.registry import build_chat_model
    from ragd.retrieval.qdrant_connection import open_qdrant
    from ragd.retrieval.search_service import SearchService

    settings = load_settings()
    engine = build_engine(settings)
    check_connection(engine)
    migrate(engine)
    qdrant = open_qdrant(settings)
    search = await asyncio.to_thread(SearchService.from_settings, settings, qdrant, engine)
    guards = await asyncio.to_thread(build_guard_service, settings, engine)
    llm = build_chat_model(settings)

    async def close() -> None:
        await llm.aclose()
        qdrant.close()
        engine.dispose()

    return ChatService(settings, engine, llm, search, guards=guards), close


def _print_outcome(outcome: ChatOutcome, streamed: bool) -> None:
    if not streamed or outcome.replaced:
        if streamed:
            typer.echo("\n(replaced) ", nl=False)
        typer.echo(outcome.answer, nl=False)
    typer.echo("")
    for c in outcome.citations:
        where = f", page {c['page']}" if c.get("page") else ""
        typer.echo(f"  [{c['number']}] {c['title']} (v{c['version']}, chunk {c['chunk_index']}{where})")
    typer.echo(f"  -- {outcome.backend}, {outcome.latency_ms:.0f} ms", err=True)


async def _ask(
    service: ChatService,
    principal: Principal,
    question: str,
    session: str | None,
    collections: list[str] | None,
) -> ChatOutcome:
    streamed = sys.stdout.isatty()

    async def on_token(text: str) -> None:
        typer.echo(text, nl=False)

    async def on_reset() -> None:
        typer.echo("\n(retrying) ", nl=False)

    outcome = await service.ask(
        principal,
        question,
        session_id=session,
        collections=collections,
        on_token=on_token if streamed else None,
        on_reset=on_reset if streamed else None,
    )
    _print_outcome(outcome, streamed)
    return outcome


def chat(
    question: Annotated[
        str | None, typer.Argument(help="The question; omit it for an interactive session.")
    ] = None,
    collection: Annotated[
        list[str] | None, typer.Option("--collection", "-c", help="Collection to search (repeatable).")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant whose collections to search.")] = "default",
) -> None:
    """Ask the agent a question in this process (or chat interactively), with cited answers.

    Runs as the local operator (an admin of ``--tenant``) against the configured stores; with
    local-mode Qdrant, stop the server first (one process per storage path).
    """
    from ragd.db.models import Role
    from ragd.security.principal import Principal

    if question is not None and not question.strip():
        fail("the question is empty")
    principal = Principal(id="cli", tenant=tenant, role=Role.admin, auth_method="cli")

    async def main() -> None:
        try:
            service, close = await _build_service()
        except ConfigError as exc:
            fail(str(exc))
        try:
            if question is not None:
                await _ask(service, principal, question, None, collection)
                return
            session: str | None = None
            typer.echo("ragd chat: ask a question (empty line or 'exit' to quit)", err=True)
            while True:
                try:
                    line = input("> ").strip()
                except EOFError:
                    break
                if not line or line.lower() in QUIT:
                    break
                try:
                    outcome = await _ask(service, principal, line, session, collection)
                    session = outcome.session_id
                except RagdError as exc:
                    typer.echo(f"ragd: {exc.message}", err=True)
        except RagdError as exc:
            fail(exc.message)
        finally:
            await close()

    asyncio.run(main())


def eval_qa(
    dataset: Annotated[Path, typer.Option("--dataset", help="HotpotQA-format JSONL file.")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures (and items) here.")
    ] = None,
) -> None:
    """End-to-end QA: ingest the paragraphs, ask every question through the full chat path, score.

    Prints ``{"questions", "em", "f1", "context_recall", "grounded_rate", "abstain_rate",
    "latency_p50_ms", "latency_p95_ms", ...}`` and stores the run (``ragd eval list``).
    """
    from ragd.agents.prompts import SYSTEM_PROMPT
    from ragd.agents.qa_eval import load_dataset, run_qa_eval

    settings = load_settings()
    try:
        items = load_dataset(dataset, limit)
        metrics, results, facts = asyncio.run(
            run_qa_eval(settings, items, progress=lambda m: typer.echo(m, err=True))
        )
    except (RagdError, ConfigError) as exc:
        fail(getattr(exc, "message", str(exc)))
    run_id = _record(settings, metrics, results, facts, dataset, limit, SYSTEM_PROMPT)
    out = {**metrics, "run_id": run_id}
    typer.echo(json.dumps(out, indent=2))
    if json_out is not None:
        try:
            json_out.write_text(json.dumps({**out, "config": facts, "items": results}, indent=2, default=str))
        except OSError as exc:
            fail(f"cannot write {json_out}: {exc.strerror}")


def _record(
    settings: Any,
    metrics: dict[str, Any],
    results: list[dict[str, Any]],
    facts: dict[str, Any],
    dataset: Path,
    limit: int | None,
    system_prompt: str,
) -> str | None:
    """Store the run in the configured metadata store; a store problem only costs the record."""
    try:
        from ragd.db.engine import build_engine, migrate
        from ragd.evals.records import capture_config, record_eval_run

        engine = build_engine(settings)
        migrate(engine)
        config = capture_config(
            settings,
            embedder=facts.get("embedder"),
            prompts={"system": system_prompt},
            dataset={"name": dataset.stem, "path": str(dataset), "limit": limit},
            params=facts,
        )
        run = record_eval_run(
            engine, kind="qa", config=config, metrics=metrics, items=results, created_by="cli"
        )
        engine.dispose()
        return run.id
    except Exception as exc:  # noqa: BLE001 - the figures are printed either way
        typer.echo(f"ragd: the run was not stored ({type(exc).__name__})", err=True)
        return None


def register(app: typer.Typer, groups: CommandGroups) -> None:
    """Attach this module's commands."""
    app.command("chat")(chat)
    groups.group("eval", "Offline evaluations, stored runs, gates and reports.").command("qa")(eval_qa)
