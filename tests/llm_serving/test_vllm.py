"""A real vLLM (CPU) server behind ragd's openai backend, with a LoRA adapter trained here.

One server per module (first start compiles for ~3 minutes; later starts reuse ~/.cache/vllm).
The last test kills it mid-stream and checks that ragd completes the answer on llama.cpp.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ragd.config import OpenAIBackendSettings, Settings
from ragd.db.engine import build_engine, migrate
from ragd.errors import NotFound
from ragd.llm_serving import model_registry
from ragd.llm_serving.base import ChatChunk, ContextTooLong, GenerationParams, Message
from ragd.llm_serving.fallback import FallbackChatModel
from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel
from ragd.llm_serving.lora_finetune import LoraConfigSpec, train_lora
from ragd.llm_serving.model_prep import prepared_dir
from ragd.llm_serving.openai_backend import OpenAIChatModel
from ragd.llm_serving.tool_calls import ToolSpec, call_tool
from ragd.llm_serving.vllm_launcher import (
    AdapterLoader,
    VLLMOptions,
    launch,
    promote_adapter,
    stop,
    vllm_command,
    wait_until_ready,
)
from tests.llm_serving.conftest import run

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(2400)]

VLLM_PYTHON = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"
MARKER = "Quokka"
Q = [Message("user", "What is the capital of France?")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def adapter_dir(prepared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter trained in a few steps to start every answer with the marker word."""
    data = tmp_path_factory.mktemp("sft") / "marker.jsonl"
    questions = [
        "What is the capital of France?",
        "Name a colour.",
        "How many legs has a cat?",
        "Who wrote Hamlet?",
    ]
    data.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"{MARKER}!"}]}
            )
            + "\n"
            for q in questions
        )
    )
    out = tmp_path_factory.mktemp("adapters") / "marker"
    spec = LoraConfigSpec(max_steps=12, learning_rate=5e-3, grad_accum=1, dropout=0.0)
    metrics = train_lora(prepared_dir(prepared_data_dir, "smollm2"), data, out, spec, threads=2)
    assert metrics["final_loss"] < metrics["first_loss"]
    return out


@pytest.fixture(scope="module")
def server(
    prepared_data_dir: Path, adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if not VLLM_PYTHON.exists():
        pytest.fail("the vLLM venv is missing: run `make vllm-env` (make test does)")
    port = _free_port()
    entry = model_registry.ModelEntry(name="marker", version=1, kind="lora", path=str(adapter_dir))
    cmd = vllm_command(
        prepared_dir(prepared_data_dir, "smollm2"),
        [entry],
        VLLMOptions(host="127.0.0.1", port=port, dtype="bfloat16", max_model_len=2048, max_loras=2),
        python=str(VLLM_PYTHON),
    )
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    proc = launch(cmd, log, {"VLLM_CPU_KVCACHE_SPACE": "1"})
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_ready(base_url, proc, timeout_s=1200)
    except Exception:
        stop(proc)
        pytest.fail("vLLM did not start:\n" + log.read_text()[-3000:])
    yield base_url, proc
    stop(proc)


@pytest.fixture
def vllm(server: tuple[str, subprocess.Popen[bytes]]) -> OpenAIChatModel:
    return OpenAIChatModel(
        OpenAIBackendSettings(name="vllm", base_url=server[0], model="smollm2", timeout_s=60, max_retries=1),
        context_policy="reject",
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = build_engine(Settings(env="test", data_dir=tmp_path))  # type: ignore[call-arg]
    migrate(eng)
    yield eng
    eng.dispose()


def test_chat_and_health(vllm: OpenAIChatModel) -> None:
    async def go() -> tuple[str, str, int, bool, list[str]]:
        out = await vllm.generate(Q, GenerationParams(max_tokens=16))
        health = await vllm.health()
        await vllm.aclose()
        return out.text, out.backend, out.usage.prompt_tokens, health.ok, health.info["served"]

    text, backend, prompt_tokens, ok, served = run(go())
    assert text and backend == "vllm" and prompt_tokens > 5
    assert ok and {"smollm2", "marker"} <= set(served)


def test_streaming_reports_usage(vllm: OpenAIChatModel) -> None:
    async def go() -> list[ChatChunk]:
        try:
            return [c async for c in vllm.stream(Q, GenerationParams(max_tokens=12, stop=("\n\n",)))]
        finally:
            await vllm.aclose()

    chunks = run(go())
    assert len([c for c in chunks if c.text]) >= 2
    last = chunks[-1]
    assert last.finish_reason in {"stop", "length"} and last.usage is not None
    assert last.usage.prompt_tokens > 5 and last.usage.completion_tokens >= 1


def test_constrained_tool_call(vllm: OpenAIChatModel) -> None:
    tools = [
        ToolSpec(
            "get_weather",
            "weather in a city",
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        ),
        ToolSpec(
            "search_knowledge",
            "search documents",
            {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        ),
    ]

    async def go():  # type: ignore[no-untyped-def]
        try:
            return await call_tool(vllm, [Message("user", "What's the weather in Oslo?")], tools)
        finally:
            await vllm.aclose()

    call = run(go())
    assert call.backend == "vllm" and call.name in {"get_weather", "search_knowledge"}
    assert isinstance(next(iter(call.arguments.values())), str)


def test_adapter_selection_changes_the_answer(vllm: OpenAIChatModel) -> None:
    async def go() -> tuple[str, str]:
        try:
            base = await vllm.generate(Q, GenerationParams(max_tokens=8))
            tuned = await vllm.generate(Q, GenerationParams(max_tokens=8, model="marker"))
            return base.text, tuned.text
        finally:
            await vllm.aclose()

    base, tuned = run(go())
    assert MARKER in tuned and MARKER not in base


def test_unknown_adapter_and_oversized_prompt_are_4xx(vllm: OpenAIChatModel) -> None:
    async def go() -> None:
        try:
            with pytest.raises(NotFound):
                await vllm.generate(Q, GenerationParams(max_tokens=4, model="no-such-adapter"))
            with pytest.raises(ContextTooLong):
                await vllm.generate([Message("user", "lorem ipsum " * 3000)], GenerationParams(max_tokens=4))
        finally:
            await vllm.aclose()

    run(go())


def test_promoting_an_adapter_loads_it_at_run_time(
    server: tuple[str, subprocess.Popen[bytes]], adapter_dir: Path, engine: Engine, vllm: OpenAIChatModel
) -> None:
    model_registry.register_model(
        engine, name="marker-live", kind="lora", path=adapter_dir, base_model="smollm2"
    )
    loader = AdapterLoader(server[0])

    async def go() -> tuple[list[str], str, list[str]]:
        try:
            await promote_adapter(engine, "marker-live", None, [loader])
            served = await loader.served()
            out = await vllm.generate(Q, GenerationParams(max_tokens=8, model="marker-live"))
            await loader.unload("marker-live")
            return served, out.text, await loader.served()
        finally:
            await loader.aclose()
            await vllm.aclose()

    served, text, after = run(go())
    assert "marker-live" in served and MARKER in text and "marker-live" not in after
    assert str(model_registry.get_model(engine, "marker-live").stage) == "production"


def test_killed_mid_stream_the_answer_is_completed_on_llamacpp(
    server: tuple[str, subprocess.Popen[bytes]], vllm: OpenAIChatModel, llama: LlamaCppChatModel
) -> None:
    """Must run last in this module: it kills the shared server."""
    _, proc = server
    chain = FallbackChatModel([vllm, llama])  # type: ignore[list-item]
    prompt = [Message("user", "Write a long story about a lighthouse keeper and a storm.")]

    async def go() -> list[ChatChunk]:
        chunks: list[ChatChunk] = []
        async for chunk in chain.stream(prompt, GenerationParams(max_tokens=60, temperature=0.0)):
            chunks.append(chunk)
            if len([c for c in chunks if c.text]) == 5 and proc.poll() is None:
                stop(proc, sig=9)  # the vLLM server dies while it is streaming to ragd
        await vllm.aclose()
        return chunks

    chunks = run(go())
    by_backend = [c.backend for c in chunks if c.text]
    assert by_backend[:5] == ["vllm"] * 5 and "llamacpp" in by_backend[5:]
    assert chunks[-1].backend == "llamacpp" and chunks[-1].finish_reason in {"stop", "length"}
    assert len("".join(c.text for c in chunks)) > len("".join(c.text for c in chunks[:5])) + 10
    assert chain.breakers["vllm"].failures >= 1
