"""Tool calls through constrained output; bounded repair and retry of malformed replies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ragd.errors import BadRequest
from ragd.health import ComponentHealth
from ragd.llm_serving.base import BadModelOutput, ChatChunk, ChatResult, GenerationParams, Message
from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel
from ragd.llm_serving.tool_calls import ToolSpec, call_tool, parse_tool_call, tool_call_schema
from tests.llm_serving.conftest import run

TOOLS = [
    ToolSpec(
        "search_knowledge",
        "search the document collection",
        {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    ),
    ToolSpec(
        "get_weather",
        "current weather in a city",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ),
]


class ScriptedModel:
    """A backend edge that replies with prepared texts (what a misbehaving server sends)."""

    name = "scripted"

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.calls = 0

    async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
        self.calls += 1
        return ChatResult(self.replies.pop(0), self.name)

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(self.replies.pop(0), self.name)

    async def health(self) -> ComponentHealth:
        return ComponentHealth(self.name, True)

    async def aclose(self) -> None:
        return None


def test_real_model_calls_a_listed_tool_with_valid_arguments(llama: LlamaCppChatModel) -> None:
    call = run(call_tool(llama, [Message("user", "What's the weather in Paris?")], TOOLS))
    assert call.name in {"search_knowledge", "get_weather"} and call.backend == "llamacpp"
    key = "city" if call.name == "get_weather" else "query"
    assert isinstance(call.arguments[key], str) and call.attempts == 1


def test_text_around_the_json_is_repaired() -> None:
    model = ScriptedModel(['Sure! ```json\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n```'])
    call = run(call_tool(model, [Message("user", "weather?")], TOOLS))  # type: ignore[arg-type]
    assert (call.name, call.arguments, call.attempts) == ("get_weather", {"city": "Oslo"}, 1)


def test_malformed_json_is_retried_then_accepted() -> None:
    model = ScriptedModel(
        [
            '{"name": "get_weather", "arguments": {"city": ',
            '{"name": "get_weather", "arguments": {"city": "Rome"}}',
        ]
    )
    call = run(call_tool(model, [Message("user", "weather?")], TOOLS))  # type: ignore[arg-type]
    assert call.arguments == {"city": "Rome"} and call.attempts == 2


def test_retries_are_bounded() -> None:
    model = ScriptedModel(["not json", '{"name": "rm_rf", "arguments": {}}', "never asked"])
    with pytest.raises(BadModelOutput) as err:
        run(call_tool(model, [Message("user", "x")], TOOLS, attempts=2))  # type: ignore[arg-type]
    assert err.value.status_code == 502 and model.calls == 2


def test_unknown_tool_or_bad_arguments_do_not_validate() -> None:
    schema = tool_call_schema(TOOLS)
    with pytest.raises(ValueError):
        parse_tool_call('{"name": "delete_all", "arguments": {}}', schema)
    with pytest.raises(ValueError):
        parse_tool_call('{"name": "get_weather", "arguments": {"city": 3}}', schema)


@pytest.mark.parametrize(
    "tools",
    [
        [],
        [ToolSpec("t", "d", {"type": "bogus"})],
        [ToolSpec(f"t{i}", "d", {"type": "object"}) for i in range(100)],
    ],
)
def test_bad_tool_lists_are_400(tools: list[ToolSpec]) -> None:
    with pytest.raises(BadRequest):
        tool_call_schema(tools)
