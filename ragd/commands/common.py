"""Helpers shared by every CLI command module."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError

from ragd.config import Settings
from ragd.privacy import disable_telemetry


class CommandGroups:
    """Sub-command groups (``ragd eval``, ``ragd finetune``, ...) shared by several modules.

    A group is created on first use, so ``ragd --help`` lists only groups that have commands.
    """

    def __init__(self, root: typer.Typer) -> None:
        self._root = root
        self._groups: dict[str, typer.Typer] = {}

    def group(self, name: str, help: str) -> typer.Typer:
        """The group ``name``, created and attached to the root on first use."""
        if name not in self._groups:
            self._groups[name] = typer.Typer(help=help, no_args_is_help=True)
            self._root.add_typer(self._groups[name], name=name)
        return self._groups[name]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit."""
    typer.echo(f"ragd: {message}", err=True)
    raise typer.Exit(code)


def settings_error_lines(exc: ValidationError) -> list[str]:
    """One line per invalid setting, named as its environment variable."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if not str(p).isdigit()]
        name = "RAGD_" + "__".join(p.upper() for p in loc) if loc else "settings"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        got = err.get("input")
        shown = isinstance(got, str | int | float) and len(str(got)) < 80
        lines.append(f"{name}: {msg}" + (f" (got {got!r})" if loc and shown else ""))
    return lines


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or exit with one line per problem."""
    disable_telemetry()
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for line in settings_error_lines(exc):
            typer.echo(f"ragd: invalid setting {line}", err=True)
        raise typer.Exit(2) from None
