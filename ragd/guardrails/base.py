"""The Guard interface: every guard returns a typed decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Action = Literal["allow", "block", "redact", "flag"]
Stage = Literal["input", "context", "output"]


@dataclass(frozen=True)
class GuardDecision:
    """What one guard decided about one text."""

    guard: str
    stage: Stage
    action: Action
    reason: str = ""
    score: float | None = None
    redacted_text: str | None = None  # set when action == "redact"
    error: str | None = None  # set when the guard itself failed (and the fail policy applied)
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Guard(Protocol):
    """A check on user input, retrieved context or model output."""

    name: str
    stage: Stage

    def check(self, text: str, context: dict[str, Any] | None = None) -> GuardDecision:
        """Decide about ``text``; ``context`` carries e.g. cited passages or the system prompt."""
        ...
