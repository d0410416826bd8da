"""``ragd serve`` and ``ragd config show``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default RAGD_API__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (default RAGD_API__PORT).")] = None,
) -> None:
    """Serve the HTTP API with the configured backends."""
    from ragd.allocator import tune_allocator
    from ragd.log_config import configure_logging
    from ragd.preflight import preflight

    # Settings and preflight first: a bad setting fails in about a second, before the app's
    # heavy imports (torch, LangChain, unstructured) are paid.
    settings = load_settings()
    tune_allocator(settings.memory)  # before any thread starts (see ragd.allocator)
    configure_logging(settings.log_level, settings.log_json)
    try:
        preflight(settings)
    except ConfigError as exc:
        fail(str(exc))
    import uvicorn

    from ragd.api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def config_show() -> None:
    """Print the effective configuration as JSON, secrets masked."""
    settings = load_settings()
    typer.echo(json.dumps(settings.masked(), indent=2, default=str))


def register(app: typer.Typer, groups: CommandGroups) -> None:
    """Attach this module's commands."""
    app.command()(serve)
    groups.group("config", "Inspect the effective configuration.").command("show")(config_show)
