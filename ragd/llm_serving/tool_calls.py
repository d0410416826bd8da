"""Tool calls through JSON-schema constrained output.

A 135M model cannot be trusted to follow a tool-calling format on its own, but with its output
constrained to ``{"name": <one of the tools>, "arguments": <that tool's parameters>}`` (a grammar
in llama.cpp, structured outputs in vLLM) it calls tools reliably. The reply is still checked:
a malformed or schema-violating reply is repaired when that is unambiguous (text around the JSON
object) and otherwise generated again, a bounded number of times.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import jsonschema

from ragd.errors import BadRequest
from ragd.llm_serving.base import BadModelOutput, ChatModel, GenerationParams, Message

log = logging.getLogger(__name__)

MAX_TOOLS = 64


@dataclass(frozen=True)
class ToolSpec:
    """A callable tool: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """The model's choice of tool and arguments, and which backend made it."""

    name: str
    arguments: dict[str, Any]
    backend: str
    attempts: int


def tool_call_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    """The JSON schema that any valid call of one of ``tools`` satisfies."""
    if not tools or len(tools) > MAX_TOOLS:
        raise BadRequest(f"give between 1 and {MAX_TOOLS} tools")
    options = []
    for tool in tools:
        try:
            jsonschema.Draft202012Validator.check_schema(tool.parameters)
        except jsonschema.SchemaError as exc:
            raise BadRequest(
                f"tool {tool.name!r} has an invalid parameters schema: {exc.message[:200]}"
            ) from exc
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_tool_call(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The call in ``text``; repairs surrounding noise; raises ValueError when not valid."""
    candidates = [text.strip()]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])  # prose or code fences around the object
    last: Exception = ValueError("empty reply")
    for candidate in candidates:
        try:
            value = json.loads(candidate)
            jsonschema.validate(value, schema)
        except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
            last = exc
            continue
        if isinstance(value, dict):
            return value
    raise ValueError(str(last)[:200])


def _system_prompt(tools: list[ToolSpec]) -> str:
    lines = ["Choose one tool and its arguments. Reply with JSON only. Tools:"]
    lines += [f"- {t.name}: {t.description}" for t in tools]
    return "\n".join(lines)


async def call_tool(
    model: ChatModel,
    messages: list[Message],
    tools: list[ToolSpec],
    params: GenerationParams | None = None,
    *,
    attempts: int = 2,
) -> ToolCall:
    """Ask ``model`` to call one of ``tools``; at most ``attempts`` generations."""
    schema = tool_call_schema(tools)
    base = params or GenerationParams(max_tokens=128)
    params = replace(base, json_schema=schema)
    prompt = [Message("system", _system_prompt(tools)), *messages]
    problem = ""
    for attempt in range(1, attempts + 1):
        result = await model.generate(prompt, params)
        try:
            call = parse_tool_call(result.text, schema)
        except ValueError as exc:
            problem = str(exc)
            log.warning("malformed tool call from %s (attempt %d): %s", result.backend, attempt, problem)
            # Sample differently next time: a greedy retry would reproduce the same reply.
            params = replace(params, temperature=max(params.temperature, 0.7))
            continue
        return ToolCall(call["name"], dict(call["arguments"]), result.backend, attempt)
    raise BadModelOutput(f"the model produced no valid tool call in {attempts} attempts: {problem}")
