"""The fallback chain: real llama.cpp behind broken, hung and flaky upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from ragd.api.app import create_app
from ragd.config import OpenAIBackendSettings
from ragd.errors import BackendUnavailable
from ragd.health import ComponentHealth
from ragd.llm_serving.base import ChatChunk, ChatResult, GenerationParams, Message
from ragd.llm_serving.fallback import CircuitState, FallbackChatModel
from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel
from ragd.llm_serving.openai_backend import OpenAIChatModel
from tests.conftest import make_settings
from tests.llm_serving.conftest import run

Q = [Message("user", "Name three colours.")]


class NoCloseLlama:
    """The shared module model, without letting a chain's aclose() unload it."""

    def __init__(self, model: LlamaCppChatModel) -> None:
        self._m = model
        self.name = model.name

    async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
        return await self._m.generate(messages, params)

    def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[ChatChunk]:
        return self._m.stream(messages, params)

    async def health(self) -> ComponentHealth:
        return await self._m.health()

    def serves(self, model: str | None) -> bool:
        return self._m.serves(model)

    async def aclose(self) -> None:
        return None


class FlakyUpstream:
    """An upstream that streams a few tokens and then drops the connection (a killed server)."""

    name = "flaky"

    def __init__(self, text: str) -> None:
        self.text = text

    async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
        raise BackendUnavailable("connection reset")

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[ChatChunk]:
        for word in self.text.split(" "):
            yield ChatChunk(word + " ", self.name)
        raise BackendUnavailable("flaky stream broke: RemoteProtocolError")

    async def health(self) -> ComponentHealth:
        return ComponentHealth(self.name, True)

    async def aclose(self) -> None:
        return None


def _openai(url: str, timeout_s: float = 30.0, retries: int = 1) -> OpenAIChatModel:
    return OpenAIChatModel(
        OpenAIBackendSettings(
            name="vllm", base_url=url, model="smollm2", timeout_s=timeout_s, max_retries=retries
        )
    )


def test_dead_upstream_falls_back_and_names_the_backend(llama: LlamaCppChatModel, dead_url: str) -> None:
    registry = CollectorRegistry()
    chain = FallbackChatModel([_openai(dead_url), NoCloseLlama(llama)], registry=registry)  # type: ignore[list-item]
    out = run(chain.generate(Q, GenerationParams(max_tokens=6)))
    assert out.backend == "llamacpp"
    assert registry.get_sample_value("ragd_llm_fallbacks_total", {"from_backend": "vllm"}) == 1
    assert registry.get_sample_value("ragd_llm_requests_total", {"backend": "llamacpp", "outcome": "ok"}) == 1


def test_hung_upstream_times_out_then_falls_back(llama: LlamaCppChatModel, hanging_server: str) -> None:
    chain = FallbackChatModel([_openai(hanging_server, timeout_s=0.5, retries=0), NoCloseLlama(llama)])  # type: ignore[list-item]

    async def both() -> tuple[ChatResult, str]:
        full = await chain.generate(Q, GenerationParams(max_tokens=6))
        streamed = [c async for c in chain.stream(Q, GenerationParams(max_tokens=6))]
        return full, streamed[-1].backend

    full, stream_backend = run(both())
    assert full.backend == "llamacpp" and stream_backend == "llamacpp"


def test_circuit_opens_then_half_opens_after_a_health_check(llama: LlamaCppChatModel, dead_url: str) -> None:
    now = [0.0]
    up = _openai(dead_url, retries=0)
    chain = FallbackChatModel(
        [up, NoCloseLlama(llama)],  # type: ignore[list-item]
        breaker_failures=2,
        breaker_reset_s=10,
        clock=lambda: now[0],
    )
    for _ in range(2):
        assert run(chain.generate(Q, GenerationParams(max_tokens=2))).backend == "llamacpp"
    assert chain.breakers["vllm"].state is CircuitState.open
    failures = chain.breakers["vllm"].failures
    run(chain.generate(Q, GenerationParams(max_tokens=2)))
    assert chain.breakers["vllm"].failures == failures  # skipped while open: no new attempt
    now[0] = 11.0
    assert chain.breakers["vllm"].state is CircuitState.half_open
    run(chain.generate(Q, GenerationParams(max_tokens=2)))  # health check fails: re-opened
    assert chain.breakers["vllm"].state is CircuitState.open


def test_a_stream_broken_midway_is_completed_by_the_next_backend(llama: LlamaCppChatModel) -> None:
    chain = FallbackChatModel([FlakyUpstream("The three colours are"), NoCloseLlama(llama)])  # type: ignore[list-item]

    async def collect() -> list[ChatChunk]:
        return [c async for c in chain.stream(Q, GenerationParams(max_tokens=16))]

    chunks = run(collect())
    text = "".join(c.text for c in chunks)
    assert text.startswith("The three colours are ") and len(text) > len("The three colours are ") + 2
    assert {c.backend for c in chunks if c.text} == {"flaky", "llamacpp"}
    assert chunks[-1].backend == "llamacpp" and chunks[-1].finish_reason is not None


def test_every_backend_down_is_503() -> None:
    chain = FallbackChatModel([FlakyUpstream("x")])  # type: ignore[list-item]
    with pytest.raises(BackendUnavailable) as err:
        run(chain.generate(Q, GenerationParams()))
    assert err.value.status_code == 503 and err.value.details["tried"]


def test_readyz_and_metrics_show_each_backend(tmp_path: Path, dead_url: str) -> None:
    settings = make_settings(
        tmp_path,
        llm={
            "chain": ["openai", "llamacpp"],
            "openai_backends": [{"name": "vllm-a", "base_url": dead_url, "model": "smollm2"}],
            "llamacpp": {"n_ctx": 512, "n_threads": 2},
        },
    )
    with TestClient(create_app(settings)) as client:
        body = client.get("/readyz").json()
        llm = body["components"]["llm"]
        assert llm["ok"] and llm["info"]["serving"] == "llamacpp"
        assert llm["info"]["backends"]["vllm-a"]["ok"] is False
        assert llm["info"]["backends"]["llamacpp"]["circuit"] == "closed"
        metrics = client.get("/metrics").text
    assert 'ragd_llm_backend_up{backend="vllm-a"} 0.0' in metrics
    assert 'ragd_llm_backend_up{backend="llamacpp"} 1.0' in metrics


def test_unknown_model_is_404_and_adapters_skip_the_embedded_model(
    llama: LlamaCppChatModel, dead_url: str
) -> None:
    from ragd.errors import NotFound

    with pytest.raises(NotFound):
        run(llama.generate(Q, GenerationParams(max_tokens=2, model="no-such-adapter")))
    chain = FallbackChatModel([NoCloseLlama(llama)])  # type: ignore[list-item]
    with pytest.raises(NotFound):
        run(chain.generate(Q, GenerationParams(max_tokens=2, model="no-such-adapter")))
    assert run(chain.generate(Q, GenerationParams(max_tokens=2, model="smollm2"))).backend == "llamacpp"
    # With vLLM down, a request for an adapter is a 503 (only vLLM could serve it), not base-model text.
    both = FallbackChatModel([_openai(dead_url, retries=0), NoCloseLlama(llama)])  # type: ignore[list-item]
    with pytest.raises(BackendUnavailable):
        run(both.generate(Q, GenerationParams(max_tokens=2, model="qa-adapter")))
