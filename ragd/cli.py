"""The ``ragd`` command line (typer).

Each component's commands live in ``ragd/commands/<area>.py`` and are attached here. Start-up
problems (a bad setting, an unreachable database) print one line naming the setting and exit
with status 2; they never end in a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

import ragd
from ragd.commands.common import CommandGroups

#: Command modules, each with ``register(app, groups)``. Heavy imports stay inside commands.
COMMAND_MODULES = (
    "ragd.commands.server",
    "ragd.commands.keys",
    "ragd.commands.evals",
    "ragd.commands.guardrails",
    "ragd.commands.retrieval",
    "ragd.commands.ingest",
    "ragd.commands.models",
    "ragd.commands.llm",
    "ragd.commands.finetune_llm",
    "ragd.commands.chat",
)

app = typer.Typer(
    name="ragd",
    help="ragd: an agentic RAG orchestration server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ragd {ragd.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """ragd: an agentic RAG orchestration server."""


_groups = CommandGroups(app)
for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app, _groups)


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
