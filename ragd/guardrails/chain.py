"""Guard chains: run a stage's validators in one guardrails-ai ``Guard`` and apply the policy.

A :class:`GuardChain` holds the validators of one stage (input, context or output) inside one
guardrails-ai ``Guard`` (``Guard().use(...)``; metrics collection off). ``run`` validates a text
once and turns each validator's finding into a :class:`GuardDecision` under the collection's
:class:`GuardPolicy`: a failure blocks, redacts or flags; a guard that raised fails open or closed,
and that is logged every time. Each run (all its decisions) goes to the ``audit`` callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragd.guardrails.base import Action, GuardDecision, Stage
from ragd.guardrails.policy import GuardPolicy
from ragd.privacy import disable_guardrails_metrics

log = logging.getLogger("ragd.guardrails")


@dataclass
class ChainResult:
    """The decisions of one run, the text to pass on (after redactions) and whether it may pass."""

    stage: Stage
    decisions: list[GuardDecision]
    text: str
    blocked: bool
    latency_ms: float = 0.0
    blocked_by: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        """Whether any guard flagged or redacted the text."""
        return any(d.action in ("flag", "redact") for d in self.decisions)


AuditHook = Callable[[ChainResult, dict[str, Any]], None]


def new_guardrails_guard(name: str, validators: Sequence[Any]) -> Any:
    """A guardrails-ai ``Guard`` using ``validators`` with metrics collection off.

    ``Guard()`` re-reads ``~/.guardrailsrc`` (default: metrics on) into the global settings when
    constructed, so metrics are switched off again after construction and before validators exist.
    """
    from guardrails import Guard

    guard = Guard(name=name)
    guard.configure(allow_metrics_collection=False)
    disable_guardrails_metrics()
    return guard.use(*validators)


class GuardChain:
    """The validators of one stage in one guardrails-ai Guard, under one policy."""

    def __init__(
        self,
        stage: Stage,
        validator_factories: Sequence[Callable[[], Any]],
        policy: GuardPolicy,
        *,
        default_fail_closed: bool = True,
        audit: AuditHook | None = None,
        name: str | None = None,
    ) -> None:
        from guardrails import OnFailAction

        disable_guardrails_metrics()
        self.stage: Stage = stage
        self.policy = policy
        self.default_fail_closed = default_fail_closed
        self.audit = audit
        # Validators are built after metrics are off: they read the setting when constructed.
        validators = []
        for factory in validator_factories:
            validator = factory()
            validator.on_fail_descriptor = OnFailAction.NOOP
            validators.append(validator)
        self.guard_names = [v.guard_name for v in validators]
        self._validators = {v.guard_name: v for v in validators}
        self._guard = new_guardrails_guard(name or f"ragd-{stage}", validators) if validators else None

    def run(
        self, text: str, context: dict[str, Any] | None = None, *, audit_context: dict[str, Any] | None = None
    ) -> ChainResult:
        """Validate ``text``; return one decision per guard and the (possibly redacted) text."""
        import time

        from ragd.guardrails.validators import CONTEXT_KEY, RESULTS_KEY, Finding

        started = time.perf_counter()
        results: dict[str, Any] = {}
        if self._guard is not None:
            try:
                self._guard.validate(text, metadata={RESULTS_KEY: results, CONTEXT_KEY: context or {}})
            except Exception as exc:  # noqa: BLE001 - guardrails itself failed: every guard errored
                for name in self.guard_names:
                    results.setdefault(name, exc)
        decisions: list[GuardDecision] = []
        current = text
        for name in self.guard_names:
            outcome = results.get(name)
            if outcome is None:
                outcome = RuntimeError("guard did not run")
            if isinstance(outcome, Finding):
                decision = self._decide(name, outcome, current)
                if decision.action == "redact" and decision.redacted_text is not None:
                    redacted = (
                        decision.redacted_text
                        if current == text
                        else self._redact_again(name, current, context or {})
                    )
                    current = redacted
            else:
                decision = self._on_error(name, outcome)
            decisions.append(decision)
        blocked_by = [d.guard for d in decisions if d.action == "block"]
        result = ChainResult(
            stage=self.stage,
            decisions=decisions,
            text=current,
            blocked=bool(blocked_by),
            latency_ms=(time.perf_counter() - started) * 1000,
            blocked_by=blocked_by,
        )
        if self.audit is not None:
            try:
                self.audit(result, audit_context or {})
            except Exception:  # an audit sink must not turn a guard decision into a 500
                log.exception("audit hook failed for the %s guards", self.stage)
        return result

    def _redact_again(self, name: str, current: str, context: dict[str, Any]) -> str:
        # Every validator saw the original text; a second redaction is re-derived from the
        # already redacted text so that the first one is not undone.
        finding = self._validators[name].inspect(current, context)
        return str(finding.fixed_text) if finding.failed and finding.fixed_text is not None else current

    def _decide(self, name: str, finding: Any, current: str) -> GuardDecision:
        if not finding.failed:
            return GuardDecision(
                guard=name,
                stage=self.stage,
                action="allow",
                reason=finding.reason,
                score=finding.score,
                details=finding.details,
            )
        action = self.policy.rule(name).action
        redacted = finding.fixed_text
        if action == "redact" and redacted is None:
            action = "block"  # nothing to redact to: the only safe reading of "redact"
        return GuardDecision(
            guard=name,
            stage=self.stage,
            action=action,
            reason=finding.reason,
            score=finding.score,
            redacted_text=redacted if action == "redact" else None,
            details=finding.details,
        )

    def _on_error(self, name: str, exc: BaseException) -> GuardDecision:
        fail_open = self.policy.fails_open(name, self.default_fail_closed)
        action: Action = "allow" if fail_open else "block"
        log.warning(
            "guard %s (%s) errored: %s: %s; failing %s",
            name,
            self.stage,
            type(exc).__name__,
            str(exc)[:200],
            "open" if fail_open else "closed",
        )
        return GuardDecision(
            guard=name,
            stage=self.stage,
            action=action,
            reason=f"guard error; failed {'open' if fail_open else 'closed'}",
            error=f"{type(exc).__name__}: {str(exc)[:200]}",
            details={"fail_open": fail_open},
        )
