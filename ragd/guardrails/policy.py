"""Per-collection guard policy: what a failing guard does and what happens when a guard errors.

A collection keeps its policy in ``Collection.settings["guardrails"]``; anything not set there
comes from the defaults below (and the server-wide ``fail_closed`` setting). The policy is plain
data so that it can be shown and edited through the API.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ragd.errors import BadRequest

FailureAction = Literal["block", "redact", "flag"]


class GuardRule(BaseModel):
    """What one guard's failure does, and whether the guard fails open when it errors."""

    action: FailureAction = Field(
        description="block: refuse; redact: pass a cleaned text; flag: pass, marked."
    )
    fail_open: bool | None = Field(
        default=None,
        description="On a guard error: True allows, False blocks; empty uses the server default.",
    )
    enabled: bool = Field(default=True, description="Run this guard at all.")


def _rules() -> dict[str, GuardRule]:
    return {
        # input
        "length": GuardRule(action="block"),
        "injection": GuardRule(action="block"),
        "pii": GuardRule(action="redact"),
        "topics": GuardRule(action="block"),
        # retrieved context
        "context_injection": GuardRule(action="redact"),
        # output
        "grounding": GuardRule(action="flag"),
        "pii_leak": GuardRule(action="redact"),
        "system_prompt_leak": GuardRule(action="block"),
    }


class GuardPolicy(BaseModel):
    """The guard policy of one collection (or the server default)."""

    model_config = {"extra": "forbid"}

    rules: dict[str, GuardRule] = Field(default_factory=_rules, description="Per-guard failure handling.")
    max_input_chars: int = Field(default=8000, ge=1, le=1_000_000, description="Longest accepted message.")
    max_output_chars: int = Field(default=20000, ge=1, le=1_000_000, description="Longest accepted answer.")
    injection_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="P(attack) that fails; empty uses the model's tuned threshold.",
    )
    context_injection_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="P(attack) at which a sentence of a retrieved chunk is neutralised; empty uses "
        "injection_threshold. Raise it for prose that reads like requests (lyrics, manuals).",
    )
    pii_kinds: list[str] | None = Field(default=None, description="PII kinds to look for; empty means all.")
    allowed_topics: list[str] = Field(default_factory=list, description="If set, messages must be about one.")
    denied_topics: list[str] = Field(default_factory=list, description="Messages about these are refused.")
    topic_threshold: float = Field(
        default=0.3,
        ge=-1.0,
        le=1.0,
        description="MiniLM cosine similarity at which a message is about a denied topic.",
    )
    allowed_topic_threshold: float = Field(
        default=0.2, ge=-1.0, le=1.0, description="Similarity a message needs to one allowed topic."
    )
    context_mode: Literal["neutralise", "quarantine"] = Field(
        default="neutralise",
        description="Flagged retrieved chunks: neutralise strips the instruction sentences and marks the "
        "rest as data; quarantine drops the chunk from the prompt.",
    )
    grounding_min_support: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of a sentence's content words a cited passage must contain.",
    )

    def rule(self, guard: str) -> GuardRule:
        """The rule for ``guard`` (a block rule for names the policy does not know)."""
        return self.rules.get(guard) or GuardRule(action="block")

    def fails_open(self, guard: str, default_fail_closed: bool) -> bool:
        """Whether an error in ``guard`` lets the text through."""
        explicit = self.rule(guard).fail_open
        return (not default_fail_closed) if explicit is None else explicit

    @classmethod
    def from_collection_settings(
        cls, settings: dict[str, Any] | None, base: GuardPolicy | None = None
    ) -> GuardPolicy:
        """The policy in ``Collection.settings["guardrails"]`` over ``base``; 400 when invalid."""
        base = base or cls()
        raw = (settings or {}).get("guardrails")
        if not raw:
            return base
        if not isinstance(raw, dict):
            raise BadRequest("collection setting 'guardrails' must be an object")
        merged = base.model_dump()
        for key, value in raw.items():
            if key == "rules" and isinstance(value, dict):
                for name, rule in value.items():
                    current = merged["rules"].get(name, {"action": "block"})
                    merged["rules"][name] = {**current, **rule} if isinstance(rule, dict) else rule
            else:
                merged[key] = value
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise BadRequest(f"invalid guardrails policy at {where or 'root'}: {first.get('msg')}") from None
