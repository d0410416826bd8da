"""The guard service: shared models, one chain per stage and policy, and the model lookup.

Built once by the app factory (or a CLI command) and shared: the MiniLM encoder and the injection
classifier are loaded once; chains are cached per policy. ``check_input``, ``check_context`` and
``check_output`` are what chat calls; ingestion uses :attr:`GuardService.scanner` to score chunks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from ragd.config import Settings
from ragd.errors import ConfigError
from ragd.guardrails.chain import AuditHook, ChainResult, GuardChain
from ragd.guardrails.context_guard import InjectionScanner
from ragd.guardrails.injection_classifier import PACKAGED_MODEL, InjectionClassifier
from ragd.guardrails.policy import GuardPolicy
from ragd.guardrails.text_encoder import BatchEmbedder, CachedEncoder, minilm_embedder

log = logging.getLogger("ragd.guardrails")

REGISTRY_NAME = "injection-classifier"


def resolve_classifier_path(settings: Settings, engine: Engine | None = None) -> tuple[Path, str]:
    """Where the injection classifier comes from: the setting, the registry's production
    version of ``injection-classifier``, or the model packaged with ragd (in that order)."""
    if settings.guardrails.injection_model is not None:
        return settings.guardrails.injection_model, "setting"
    if engine is not None:
        try:
            from ragd.llm_serving.model_registry import get_production

            entry = get_production(engine, REGISTRY_NAME)
        except Exception as exc:  # noqa: BLE001 - no registry table yet: use the packaged model
            log.debug("model registry unavailable for %s: %s", REGISTRY_NAME, exc)
            entry = None
        if entry is not None:
            return Path(entry.path), f"registry v{entry.version}"
    return PACKAGED_MODEL, "packaged"


def load_classifier(path: Path, setting: str = "RAGD_GUARDRAILS__INJECTION_MODEL") -> InjectionClassifier:
    """Load a classifier file or raise :class:`ConfigError` naming the setting."""
    try:
        return InjectionClassifier.load(path)
    except ValueError as exc:
        raise ConfigError(setting, str(exc)) from exc


def audit_to_store(engine: Engine) -> AuditHook:
    """An audit hook writing one ``guard.<stage>`` event per chain run (all its decisions).

    ``audit_context`` may carry ``principal``, ``tenant``, ``request_id`` and ``collection``.
    """
    from ragd.security.audit import audit

    def hook(result: ChainResult, ctx: dict[str, Any]) -> None:
        decisions = [
            {"guard": d.guard, "action": d.action, "reason": d.reason, "score": d.score, "error": d.error}
            for d in result.decisions
        ]
        audit(
            engine,
            action=f"guard.{result.stage}",
            outcome="blocked"
            if result.blocked
            else ("error" if any(d.error for d in result.decisions) else "ok"),
            principal=ctx.get("principal"),
            tenant=str(ctx.get("tenant", "")),
            request_id=str(ctx.get("request_id", "")),
            target=f"collection:{ctx['collection']}" if ctx.get("collection") else "",
            detail={"decisions": decisions, "blocked_by": result.blocked_by},
        )

    return hook


class GuardService:
    """Guards for chat and ingestion, per collection policy."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        embedder: BatchEmbedder | None = None,
        classifier: InjectionClassifier | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        self.settings = settings
        self.audit = audit
        if classifier is None:
            path, source = resolve_classifier_path(settings, engine)
            classifier = load_classifier(path)
            log.info("injection classifier loaded from %s (%s)", path, source)
        self.classifier = classifier
        self.encoder = CachedEncoder(embedder or minilm_embedder(settings))
        self.scanner = InjectionScanner(classifier, self.encoder)
        try:
            self.default_policy = GuardPolicy.from_collection_settings(
                {"guardrails": settings.guardrails.policy}
            )
        except Exception as exc:
            raise ConfigError("RAGD_GUARDRAILS__POLICY", str(exc)) from exc
        self._chains: dict[tuple[str, str], GuardChain] = {}
        self._lock = threading.Lock()

    def policy_for(self, collection_settings: dict[str, Any] | None) -> GuardPolicy:
        """A collection's policy over the server default."""
        return GuardPolicy.from_collection_settings(collection_settings, self.default_policy)

    # -- chains ---------------------------------------------------------------------------------
    def _factories(self, stage: str, policy: GuardPolicy) -> list[Callable[[], Any]]:
        from ragd.guardrails import validators as v

        threshold = policy.injection_threshold
        context_threshold = policy.context_injection_threshold
        scanner = (
            self.scanner
            if threshold is None and context_threshold is None
            else InjectionScanner(self.classifier, self.encoder, threshold, context_threshold)
        )
        on = {name: rule.enabled for name, rule in policy.rules.items()}
        table: dict[str, list[tuple[str, Callable[[], Any]]]] = {
            "input": [
                ("length", lambda: v.LengthValidator(max_chars=policy.max_input_chars)),
                ("injection", lambda: v.InjectionValidator(scanner)),
                ("pii", lambda: v.PIIValidator(kinds=policy.pii_kinds)),
                (
                    "topics",
                    lambda: v.TopicValidator(
                        self.encoder,
                        policy.allowed_topics,
                        policy.denied_topics,
                        policy.topic_threshold,
                        policy.allowed_topic_threshold,
                    ),
                ),
            ],
            "context": [("context_injection", lambda: v.ContextInjectionValidator(scanner))],
            "output": [
                ("length", lambda: v.LengthValidator(max_chars=policy.max_output_chars)),
                ("grounding", lambda: v.GroundingValidator(policy.grounding_min_support)),
                ("pii_leak", lambda: v.PIILeakValidator(kinds=policy.pii_kinds)),
                ("system_prompt_leak", lambda: v.SystemPromptLeakValidator()),
            ],
        }
        chosen = []
        for name, factory in table[stage]:
            if not on.get(name, True):
                continue
            if name == "topics" and not (policy.allowed_topics or policy.denied_topics):
                continue
            chosen.append(factory)
        return chosen

    def chain(self, stage: str, policy: GuardPolicy | None = None) -> GuardChain:
        """The (cached) chain of ``stage`` under ``policy``."""
        if stage not in ("input", "context", "output"):
            raise ValueError(f"unknown guard stage {stage!r}")
        policy = policy or self.default_policy
        key = (stage, policy.model_dump_json())
        with self._lock:
            chain = self._chains.get(key)
            if chain is None:
                chain = GuardChain(
                    stage,  # type: ignore[arg-type]
                    self._factories(stage, policy),
                    policy,
                    default_fail_closed=self.settings.guardrails.fail_closed,
                    audit=self.audit,
                )
                self._chains[key] = chain
            return chain

    # -- what chat and ingestion call -----------------------------------------------------------
    def check_input(self, text: str, policy: GuardPolicy | None = None, **audit: Any) -> ChainResult:
        """Input guards on a user message."""
        return self.chain("input", policy).run(text, audit_context=audit)

    def check_context(
        self, chunks: Sequence[str], policy: GuardPolicy | None = None, **audit: Any
    ) -> list[ChainResult]:
        """Context guard on retrieved chunks; with ``context_mode=quarantine`` a flagged chunk is
        blocked (drop it), with ``neutralise`` it is redacted (use ``result.text``)."""
        policy = policy or self.default_policy
        self.scanner.prepare_context(chunks)  # one batched encode warms the cache
        if policy.context_mode == "quarantine":
            rules = dict(policy.rules)
            rules["context_injection"] = rules["context_injection"].model_copy(update={"action": "block"})
            policy = policy.model_copy(update={"rules": rules})
        chain = self.chain("context", policy)
        return [chain.run(chunk, audit_context={**audit, "chunk": i}) for i, chunk in enumerate(chunks)]

    def check_output(
        self,
        answer: str,
        *,
        passages: Sequence[str] = (),
        question: str = "",
        system_prompt: str = "",
        policy: GuardPolicy | None = None,
        **audit: Any,
    ) -> ChainResult:
        """Output guards on an answer, given the cited passages, the question and the system prompt."""
        context = {"passages": list(passages), "question": question, "system_prompt": system_prompt}
        return self.chain("output", policy).run(answer, context, audit_context=audit)


#: Key of the guard service in ``AppState.extras``.
GUARDS_KEY = "guards"


def build_guard_service(settings: Settings, engine: Engine) -> GuardService | None:
    """The app's guard service (None when ``guardrails.enabled`` is false); every chain run is
    audited. Builds in seconds (MiniLM is shared with retrieval); guardrails-ai is imported on
    the first chain, not here."""
    if not settings.guardrails.enabled:
        return None
    return GuardService(settings, engine=engine, audit=audit_to_store(engine))


def build_injection_scanner(settings: Settings, engine: Engine | None) -> InjectionScanner | None:
    """The chunk scanner ingestion uses at index time (None when guardrails are disabled).

    Lighter than :class:`GuardService`: the classifier and the encoder, no guardrails-ai.
    """
    if not settings.guardrails.enabled:
        return None
    path, source = resolve_classifier_path(settings, engine)
    log.info("ingestion injection scanner loaded from %s (%s)", path, source)
    return InjectionScanner(load_classifier(path), CachedEncoder(minilm_embedder(settings)))
