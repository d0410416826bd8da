"""The embedded llama.cpp backend with the real SmolLM2."""

from __future__ import annotations

import json

import pytest

from ragd.config import LlamaCppSettings
from ragd.errors import BackendUnavailable, BadRequest
from ragd.llm_serving.base import ChatModel, ContextTooLong, GenerationParams, Message
from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel
from tests.llm_serving.conftest import run

Q = [Message("user", "Name three colours.")]


def test_is_a_chat_model(llama: LlamaCppChatModel) -> None:
    assert isinstance(llama, ChatModel)


def test_generate_reports_usage_and_backend(llama: LlamaCppChatModel) -> None:
    out = run(llama.generate(Q, GenerationParams(max_tokens=12)))
    assert out.backend == "llamacpp" and out.text
    assert out.usage.prompt_tokens > 5 and 0 < out.usage.completion_tokens <= 12


def test_stream_usage_matches_generate(llama: LlamaCppChatModel) -> None:
    async def collect() -> list:  # type: ignore[type-arg]
        return [c async for c in llama.stream(Q, GenerationParams(max_tokens=12))]

    chunks = run(collect())
    full = run(llama.generate(Q, GenerationParams(max_tokens=12)))
    last = chunks[-1]
    assert last.usage is not None and last.finish_reason == "length"
    assert last.usage.prompt_tokens == full.usage.prompt_tokens  # was always 0 before
    assert "".join(c.text for c in chunks) == full.text  # greedy: same text either way
    assert last.usage.completion_tokens >= 10


def test_stop_sequence_cuts_the_answer(llama: LlamaCppChatModel) -> None:
    free = run(llama.generate(Q, GenerationParams(max_tokens=24)))
    word = free.text.split()[1]
    cut = run(llama.generate(Q, GenerationParams(max_tokens=24, stop=(word,))))
    assert word not in cut.text and len(cut.text) < len(free.text)


def test_json_schema_constrains_output(llama: LlamaCppChatModel) -> None:
    schema = {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["red", "green", "blue"]},
            "n": {"type": "integer"},
        },
        "required": ["colour", "n"],
    }
    out = run(llama.generate(Q, GenerationParams(max_tokens=40, json_schema=schema)))
    value = json.loads(out.text)
    assert value["colour"] in {"red", "green", "blue"} and isinstance(value["n"], int)


def test_closing_a_stream_stops_generation(llama: LlamaCppChatModel) -> None:
    before = llama.cancelled_streams

    async def read_two_then_leave() -> str:
        it = llama.stream(
            [Message("user", "Write a long story about a dragon.")], GenerationParams(max_tokens=400)
        )
        got = [await it.__anext__(), await it.__anext__()]  # type: ignore[attr-defined]
        await it.aclose()  # type: ignore[attr-defined]  # what a client disconnect does
        # The next request is served by the same thread, so it completes only after the
        # cancelled generation has stopped.
        after = await llama.generate(Q, GenerationParams(max_tokens=4))
        return "".join(c.text for c in got) + after.text

    assert run(read_two_then_leave())
    assert llama.cancelled_streams == before + 1


def test_continues_an_assistant_prefix(llama: LlamaCppChatModel) -> None:
    params = GenerationParams(max_tokens=8, assistant_prefix="The three colours are red,")
    out = run(llama.generate(Q, params))
    assert out.text and not out.text.startswith("The three colours")


def test_prompt_over_window_is_a_clear_400(llama: LlamaCppChatModel) -> None:
    huge = [Message("user", "word " * 5000)]
    with pytest.raises(ContextTooLong) as err:
        run(llama.generate(huge, GenerationParams(max_tokens=16)))
    assert err.value.status_code == 400 and err.value.details["context_window"] == 1024
    with pytest.raises(ContextTooLong):
        run(llama.generate(Q, GenerationParams(max_tokens=5000)))


def test_truncate_policy_fits_long_history() -> None:
    model = LlamaCppChatModel(LlamaCppSettings(n_ctx=512, n_threads=2), context_policy="truncate")
    try:
        history = [Message("system", "Answer briefly.")]
        history += [
            Message("user" if i % 2 == 0 else "assistant", f"turn {i} " + "blah " * 60) for i in range(12)
        ]
        history.append(Message("user", "What is 2+2?"))
        out = run(model.generate(history, GenerationParams(max_tokens=8)))
        assert out.usage.prompt_tokens + 8 <= 512
    finally:
        run(model.aclose())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tokens": 0},
        {"max_tokens": 10**9},
        {"temperature": -1.0},
        {"temperature": 9.0},
        {"top_p": 0.0},
        {"stop": ("",)},
        {"stop": tuple(str(i) for i in range(20))},
        {"stop": ("x" * 1000,)},
        {"timeout_s": -1.0},
        {"model": ""},
    ],
)
def test_invalid_sampling_parameters_are_400(kwargs: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        GenerationParams(**kwargs)  # type: ignore[arg-type]


def test_invalid_json_schema_is_400() -> None:
    with pytest.raises(BadRequest):
        GenerationParams(json_schema={"type": "no-such-type"})
    with pytest.raises(BadRequest):
        GenerationParams(json_schema={"enum": ["x" * 100] * 1000})


def test_full_queue_is_503_not_a_hang() -> None:
    model = LlamaCppChatModel(LlamaCppSettings(n_ctx=512, n_threads=2, max_queue=1))

    async def flood() -> list[object]:
        import asyncio

        return await asyncio.gather(
            *(model.generate(Q, GenerationParams(max_tokens=16)) for _ in range(4)), return_exceptions=True
        )

    try:
        results = run(flood())
    finally:
        run(model.aclose())
    assert any(isinstance(r, BackendUnavailable) for r in results)
    assert any(not isinstance(r, BaseException) for r in results)
