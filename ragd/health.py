"""Health reports shared by every component that /readyz checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ComponentHealth:
    """The state of one dependency as /readyz reports it."""

    name: str
    ok: bool
    detail: str = ""
    info: dict[str, Any] = field(default_factory=dict)
