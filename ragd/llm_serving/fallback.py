"""The fallback chain: backends tried in order, each behind a circuit breaker.

A backend that fails with a transient error (unavailable, overloaded, timed out) counts a failure
and the next backend is tried; ``breaker_failures`` consecutive failures open its circuit, so it
is skipped without waiting for timeouts. After ``breaker_reset_s`` the circuit is half-open: the
backend's health check runs first and, if it passes, one request is let through; success closes
the circuit. Client errors (bad parameters, unknown model, prompt too long) are raised at once
and never fall back, since another backend would only hide them.

A stream that breaks after some text was sent is continued on the next backend from that text
(``GenerationParams.assistant_prefix``), so the caller gets one complete answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from enum import IntEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ragd.errors import BackendUnavailable, NotFound
from ragd.health import ComponentHealth
from ragd.llm_serving.base import ChatChunk, ChatModel, ChatResult, GenerationParams, Message

log = logging.getLogger(__name__)


class CircuitState(IntEnum):
    """Breaker state (the number is the exported gauge value)."""

    closed = 0
    open = 1
    half_open = 2


@dataclass
class CircuitBreaker:
    """Consecutive-failure breaker for one backend."""

    failures_to_open: int
    reset_s: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None

    @property
    def state(self) -> CircuitState:
        if self.opened_at is None:
            return CircuitState.closed
        if self.clock() - self.opened_at >= self.reset_s:
            return CircuitState.half_open
        return CircuitState.open

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open or self.opened_at is not None:
            self.opened_at = self.clock()  # a failed half-open trial re-opens for another period


class LLMMetrics:
    """Prometheus series of the chain, registered once in the app's registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "ragd_llm_requests", "Generations by backend and outcome.", ["backend", "outcome"], registry=reg
        )
        self.fallbacks = Counter(
            "ragd_llm_fallbacks", "Requests passed on to the next backend.", ["from_backend"], registry=reg
        )
        self.circuit = Gauge(
            "ragd_llm_circuit_state", "0 closed, 1 open, 2 half-open.", ["backend"], registry=reg
        )
        self.up = Gauge("ragd_llm_backend_up", "Last health check (1 ok).", ["backend"], registry=reg)
        self.ttft = Histogram(
            "ragd_llm_time_to_first_token_seconds",
            "Time to the first streamed token.",
            ["backend"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16),
            registry=reg,
        )
        self.tokens = Counter(
            "ragd_llm_tokens", "Tokens by backend and kind.", ["backend", "kind"], registry=reg
        )


class FallbackChatModel:
    """A :class:`ChatModel` over an ordered list of backends."""

    name = "chain"

    def __init__(
        self,
        backends: list[ChatModel],
        *,
        breaker_failures: int = 3,
        breaker_reset_s: float = 30.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("the fallback chain needs at least one backend")
        self.backends = backends
        self.breakers = {b.name: CircuitBreaker(breaker_failures, breaker_reset_s, clock) for b in backends}
        self.metrics = LLMMetrics(registry)
        for b in backends:
            self.metrics.circuit.labels(b.name).set(0)

    def load(self) -> None:
        """Load embedded backends (blocking; the app calls it off the loop at start-up)."""
        for b in self.backends:
            load = getattr(b, "load", None)
            if load is not None:
                load()

    async def aclose(self) -> None:
        for b in self.backends:
            await b.aclose()

    async def health(self) -> ComponentHealth:
        """Ok when at least one backend can serve; every backend's state is in ``info``."""
        results = await asyncio.gather(*(b.health() for b in self.backends), return_exceptions=True)
        per: dict[str, object] = {}
        first_ok: ComponentHealth | None = None
        for b, r in zip(self.backends, results, strict=True):
            h = r if isinstance(r, ComponentHealth) else ComponentHealth(b.name, False, type(r).__name__)
            state = self.breakers[b.name].state
            self.metrics.up.labels(b.name).set(1 if h.ok else 0)
            self.metrics.circuit.labels(b.name).set(int(state))
            per[b.name] = {"ok": h.ok, "detail": h.detail, "circuit": state.name, **h.info}
            if h.ok and first_ok is None:
                first_ok = h
        info: dict[str, object] = {"backends": per, "serving": first_ok.name if first_ok else None}
        if first_ok is not None and "model" in first_ok.info:
            info["model"] = first_ok.info["model"]
        return ComponentHealth("llm", first_ok is not None, "" if first_ok else "no backend can serve", info)

    # -- routing -----------------------------------------------------------------------------

    def _candidates(self, params: GenerationParams) -> list[ChatModel]:
        """Backends that can serve the requested model (an adapter lives on vLLM only)."""
        found = [b for b in self.backends if getattr(b, "serves", lambda _m: True)(params.model)]
        if not found:
            raise NotFound(f"unknown model or adapter {params.model!r}")
        return found

    async def _admit(self, backend: ChatModel) -> bool:
        breaker = self.breakers[backend.name]
        state = breaker.state
        if state is CircuitState.closed:
            return True
        if state is CircuitState.open:
            return False
        health = await backend.health()  # half-open: a cheap health check before a real request
        self.metrics.up.labels(backend.name).set(1 if health.ok else 0)
        if not health.ok:
            breaker.record_failure()
            self.metrics.circuit.labels(backend.name).set(int(breaker.state))
        return health.ok

    def _failed(self, backend: ChatModel, exc: BaseException) -> None:
        breaker = self.breakers[backend.name]
        breaker.record_failure()
        self.metrics.circuit.labels(backend.name).set(int(breaker.state))
        self.metrics.requests.labels(backend.name, "error").inc()
        self.metrics.fallbacks.labels(backend.name).inc()
        log.warning("backend %s failed, trying the next: %s", backend.name, exc)

    def _succeeded(self, backend: ChatModel, prompt: int, completion: int) -> None:
        self.breakers[backend.name].record_success()
        self.metrics.circuit.labels(backend.name).set(0)
        self.metrics.requests.labels(backend.name, "ok").inc()
        self.metrics.tokens.labels(backend.name, "prompt").inc(prompt)
        self.metrics.tokens.labels(backend.name, "completion").inc(completion)

    async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
        errors: list[str] = []
        for backend in self._candidates(params):
            if not await self._admit(backend):
                errors.append(f"{backend.name}: circuit open")
                continue
            try:
                async with asyncio.timeout(params.timeout_s):
                    result = await backend.generate(messages, params)
            except (BackendUnavailable, TimeoutError) as exc:
                self._failed(backend, exc)
                errors.append(f"{backend.name}: {type(exc).__name__}")
                continue
            self._succeeded(backend, result.usage.prompt_tokens, result.usage.completion_tokens)
            return result
        raise BackendUnavailable("no chat-model backend could serve the request", details={"tried": errors})

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[ChatChunk]:
        sent: list[str] = []
        errors: list[str] = []
        started = time.perf_counter()
        first = True
        for backend in self._candidates(params):
            if not await self._admit(backend):
                errors.append(f"{backend.name}: circuit open")
                continue
            attempt = params
            if sent:
                attempt = replace(
                    params,
                    assistant_prefix=params.assistant_prefix + "".join(sent),
                    max_tokens=max(1, params.max_tokens - len(sent)),
                )
            it = backend.stream(messages, attempt)
            try:
                async for chunk in it:
                    if chunk.text:
                        if first:
                            self.metrics.ttft.labels(backend.name).observe(time.perf_counter() - started)
                            first = False
                        sent.append(chunk.text)
                    if chunk.usage is not None:
                        self._succeeded(backend, chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    yield chunk
                return
            except (BackendUnavailable, TimeoutError) as exc:
                self._failed(backend, exc)
                errors.append(f"{backend.name}: {type(exc).__name__}")
            finally:
                await it.aclose()  # type: ignore[attr-defined]
        raise BackendUnavailable("no chat-model backend could serve the request", details={"tried": errors})
