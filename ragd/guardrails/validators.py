"""ragd's guards as guardrails-ai validators, registered locally (the hub is unreachable).

Each validator wraps one check (:meth:`RagdValidator.inspect`) and reports through guardrails-ai's
``PassResult``/``FailResult``. The detailed finding (score, redacted text, details) and any
exception are also written into a per-call results dict passed in the validation metadata, so a
chain runs every validator of a stage in one ``Guard.validate`` call, thread-safely, and still gets
one typed decision per guard. Exceptions are caught here so that one broken guard does not hide
the others' results; the chain applies the fail-open/closed policy to them.

Importing this module imports guardrails-ai (seconds, ~250 MB): only ``chain`` does, lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrails.validators import FailResult, PassResult, ValidationResult, Validator, register_validator

from ragd.guardrails.context_guard import InjectionScanner
from ragd.guardrails.grounding import check_grounding, longest_shared_run, system_prompt_overlap
from ragd.guardrails.injection_rules import match_rules
from ragd.guardrails.pii import ALL_KINDS, find_pii, redact
from ragd.guardrails.text_encoder import CachedEncoder

#: Metadata key of the per-call results dict.
RESULTS_KEY = "ragd_results"
#: Metadata key of the caller's context (cited passages, system prompt, question).
CONTEXT_KEY = "ragd_context"


@dataclass
class Finding:
    """What a check found: ``failed`` plus reason, score, a cleaned text and details."""

    failed: bool
    reason: str = ""
    score: float | None = None
    fixed_text: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class RagdValidator(Validator):  # type: ignore[misc]
    """Base: run :meth:`inspect`, record the finding (or the error) and map it to guardrails-ai."""

    guard_name = "ragd"

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        """Check ``value``; subclasses implement this."""
        raise NotImplementedError

    def _validate(self, value: Any, metadata: dict[str, Any]) -> ValidationResult:
        results: dict[str, Any] = metadata.setdefault(RESULTS_KEY, {})
        try:
            finding = self.inspect(str(value), metadata.get(CONTEXT_KEY) or {})
        except Exception as exc:  # noqa: BLE001 - recorded and handled by the fail policy
            results[self.guard_name] = exc
            return FailResult(error_message=f"{self.guard_name} errored: {type(exc).__name__}")
        results[self.guard_name] = finding
        if not finding.failed:
            return PassResult()
        # No result metadata: guardrails-ai's sequential service hands a result's metadata to the
        # next validator in place of the call's, which would lose the shared results dict.
        return FailResult(error_message=finding.reason, fix_value=finding.fixed_text)


@register_validator(name="ragd/length", data_type="string")
class LengthValidator(RagdValidator):
    """Refuses texts longer than ``max_chars`` (and empty ones)."""

    guard_name = "length"

    def __init__(self, max_chars: int, on_fail: Any = None, **kwargs: Any) -> None:
        super().__init__(on_fail=on_fail, max_chars=max_chars, **kwargs)
        self.max_chars = max_chars

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        if not value.strip():
            return Finding(True, "empty text", details={"chars": len(value)})
        if len(value) > self.max_chars:
            return Finding(
                True,
                f"text is {len(value)} characters, over the limit of {self.max_chars}",
                details={"chars": len(value), "limit": self.max_chars},
            )
        return Finding(False, details={"chars": len(value)})


@register_validator(name="ragd/injection", data_type="string")
class InjectionValidator(RagdValidator):
    """Prompt injection / jailbreak: the trained classifier plus the known-pattern rules."""

    guard_name = "injection"

    def __init__(
        self, scanner: InjectionScanner, threshold: float | None = None, on_fail: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(on_fail=on_fail, **kwargs)
        self.scanner = scanner
        self.threshold = scanner.threshold if threshold is None else threshold

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        hits = match_rules(value[:20000])
        score = self.scanner.classifier.score(
            self.scanner._clip(value), self.scanner.encoder, threshold=self.threshold
        )
        details = {
            "classifier_score": round(score, 4),
            "threshold": round(self.threshold, 4),
            "rules": [h.rule for h in hits],
        }
        if hits:
            return Finding(True, f"matches known injection pattern {hits[0].rule!r}", 1.0, details=details)
        if score >= self.threshold:
            return Finding(True, "classified as prompt injection or jailbreak", score, details=details)
        return Finding(False, score=score, details=details)


@register_validator(name="ragd/pii", data_type="string")
class PIIValidator(RagdValidator):
    """E-mail, phone, card (Luhn), IBAN (mod 97), US SSN, API keys and secrets; fix = redacted."""

    guard_name = "pii"

    def __init__(self, kinds: Sequence[str] | None = None, on_fail: Any = None, **kwargs: Any) -> None:
        super().__init__(on_fail=on_fail, **kwargs)
        self.kinds = frozenset(kinds) if kinds else ALL_KINDS

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        found = find_pii(value, self.kinds)
        if not found:
            return Finding(False)
        kinds = sorted({m.kind for m in found})
        return Finding(
            True,
            f"contains {', '.join(kinds)}",
            1.0,
            redact(value, found),
            {"kinds": kinds, "count": len(found)},
        )


@register_validator(name="ragd/pii_leak", data_type="string")
class PIILeakValidator(PIIValidator):
    """PII in an answer that the user did not give in the question."""

    guard_name = "pii_leak"

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        own = {m.text for m in find_pii(str(context.get("question", "")), self.kinds)}
        leaked = [m for m in find_pii(value, self.kinds) if m.text not in own]
        if not leaked:
            return Finding(False)
        kinds = sorted({m.kind for m in leaked})
        return Finding(
            True,
            f"answer discloses {', '.join(kinds)}",
            1.0,
            redact(value, leaked),
            {"kinds": kinds, "count": len(leaked)},
        )


@register_validator(name="ragd/topics", data_type="string")
class TopicValidator(RagdValidator):
    """Allowed / denied topics by MiniLM similarity to the topic names (or a literal mention)."""

    guard_name = "topics"

    def __init__(
        self,
        encoder: CachedEncoder,
        allowed: Sequence[str],
        denied: Sequence[str],
        threshold: float,
        allowed_threshold: float,
        on_fail: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(on_fail=on_fail, **kwargs)
        self.encoder, self.allowed, self.denied = encoder, list(allowed), list(denied)
        self.threshold, self.allowed_threshold = threshold, allowed_threshold

    def _similarities(self, value: str, topics: list[str]) -> dict[str, float]:
        vectors = self.encoder.encode([value[:2000], *topics])
        sims = vectors[1:] @ vectors[0]
        lowered = value.lower()
        return {
            t: 1.0 if t.lower() in lowered else round(float(s), 4) for t, s in zip(topics, sims, strict=True)
        }

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        if self.denied:
            sims = self._similarities(value, self.denied)
            topic, best = max(sims.items(), key=lambda kv: kv[1])
            if best >= self.threshold:
                return Finding(True, f"about denied topic {topic!r}", best, details={"denied": sims})
        if self.allowed:
            sims = self._similarities(value, self.allowed)
            topic, best = max(sims.items(), key=lambda kv: kv[1])
            if best < self.allowed_threshold:
                return Finding(True, "not about an allowed topic", best, details={"allowed": sims})
            return Finding(False, score=best, details={"topic": topic})
        return Finding(False)


@register_validator(name="ragd/context_injection", data_type="string")
class ContextInjectionValidator(RagdValidator):
    """Instructions hidden in a retrieved chunk; fix = the chunk with them neutralised."""

    guard_name = "context_injection"

    def __init__(self, scanner: InjectionScanner, on_fail: Any = None, **kwargs: Any) -> None:
        super().__init__(on_fail=on_fail, **kwargs)
        self.scanner = scanner

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        cleaned, found = self.scanner.neutralise(value)
        details = {"rules": list(found.rules), "sentences": [s[:200] for s in found.sentences]}
        if not found.flagged:
            return Finding(False, score=found.score, details=details)
        return Finding(True, "retrieved text contains instructions", found.score, cleaned, details)


@register_validator(name="ragd/grounding", data_type="string")
class GroundingValidator(RagdValidator):
    """Every checkable answer sentence must be supported by a cited passage."""

    guard_name = "grounding"

    def __init__(self, min_support: float, on_fail: Any = None, **kwargs: Any) -> None:
        super().__init__(on_fail=on_fail, **kwargs)
        self.min_support = min_support

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        passages = [str(p) for p in context.get("passages", [])]
        checked = check_grounding(value, passages, self.min_support)
        unsupported = [s for s in checked if not s.supported]
        score = 1.0 - (len(unsupported) / len(checked)) if checked else 1.0
        details = {
            "checked": len(checked),
            "unsupported": [
                {"sentence": s.sentence[:300], "support": s.support, "missing_numbers": s.missing_numbers}
                for s in unsupported
            ],
        }
        if unsupported:
            return Finding(
                True,
                f"{len(unsupported)} of {len(checked)} sentences are not supported by the passages",
                round(score, 4),
                details=details,
            )
        return Finding(False, score=round(score, 4), details=details)


@register_validator(name="ragd/system_prompt_leak", data_type="string")
class SystemPromptLeakValidator(RagdValidator):
    """An answer that repeats the system prompt (a run of 8 words or 30% of its 6-grams)."""

    guard_name = "system_prompt_leak"

    def inspect(self, value: str, context: dict[str, Any]) -> Finding:
        prompt = str(context.get("system_prompt", ""))
        if not prompt.strip():
            return Finding(False)
        overlap = system_prompt_overlap(value, prompt)
        run = longest_shared_run(value, prompt, n=8)
        if run or overlap >= 0.3:
            return Finding(
                True,
                "answer repeats the system prompt",
                round(max(overlap, 1.0 if run else 0.0), 4),
                details={"overlap": round(overlap, 4)},
            )
        return Finding(False, score=round(overlap, 4))
