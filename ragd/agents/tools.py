"""The agent's tools (LangChain tools with JSON-schema arguments) and the operator plugin point.

Built-in: ``search_knowledge`` (hybrid search over the caller's readable collections),
``get_document`` (a document's metadata and neighbouring chunks) and ``calculator`` (safe
arithmetic). Operators add tools through the ``ragd.tools`` entry-point group: each entry point
names a LangChain ``BaseTool`` or a zero-argument factory returning one. Tools that need the
caller's knowledge base are built per run from it, so their reach is exactly the caller's.

A tool error never escapes: it comes back to the agent as ``{"error": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from ragd.agents.calculator import CalculatorError, calculate, format_number
from ragd.agents.evidence import title_of
from ragd.agents.state import KnowledgeBase
from ragd.errors import RagdError
from ragd.llm_serving.tool_calls import ToolSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ragd.tools"
BUILTIN_NAMES = ("search_knowledge", "get_document", "calculator")
MAX_TOOL_RESULT_CHARS = 4000


class SearchKnowledgeArgs(BaseModel):
    """Arguments of ``search_knowledge``."""

    query: str = Field(min_length=1, max_length=500, description="What to look for.")
    top_k: int = Field(default=5, ge=1, le=20, description="How many passages.")


class GetDocumentArgs(BaseModel):
    """Arguments of ``get_document``."""

    document_id: str = Field(min_length=1, max_length=64, description="The document's id.")
    chunk_index: int | None = Field(default=None, ge=0, description="Centre of the chunk window.")
    window: int = Field(default=1, ge=0, le=3, description="Neighbouring chunks on each side.")


class CalculatorArgs(BaseModel):
    """Arguments of ``calculator``."""

    expression: str = Field(min_length=1, max_length=200, description="Arithmetic, e.g. (3 + 4) * 2.")


def _hit_dict(hit: Any) -> dict[str, Any]:
    return {
        "document_id": hit.document_id,
        "title": title_of(hit),
        "version": hit.version,
        "chunk_index": hit.chunk_index,
        "page": hit.page,
        "score": round(float(hit.score), 4),
        "text": hit.text[:800],
    }


def build_tools(knowledge: KnowledgeBase, plugins: Sequence[BaseTool] = ()) -> list[BaseTool]:
    """The tools of one run: built-ins bound to ``knowledge``, then the operators' plugins."""

    async def search_knowledge(query: str, top_k: int = 5) -> dict[str, Any]:
        hits = await knowledge.search(query, top_k=top_k)
        return {"passages": [_hit_dict(h) for h in hits]}

    async def get_document(
        document_id: str, chunk_index: int | None = None, window: int = 1
    ) -> dict[str, Any]:
        view = await knowledge.document(document_id, chunk_index=chunk_index, window=window)
        return {
            "document_id": view.document_id,
            "version": view.version,
            "title": view.title,
            "metadata": view.metadata,
            "chunks": [_hit_dict(h) for h in view.chunks],
        }

    def calculator(expression: str) -> dict[str, Any]:
        return {"expression": expression, "value": format_number(calculate(expression))}

    builtins: list[BaseTool] = [
        StructuredTool.from_function(
            coroutine=search_knowledge,
            name="search_knowledge",
            description="Search the knowledge base for passages about a query.",
            args_schema=SearchKnowledgeArgs,
        ),
        StructuredTool.from_function(
            coroutine=get_document,
            name="get_document",
            description="Get a document's metadata and the chunks around one chunk.",
            args_schema=GetDocumentArgs,
        ),
        StructuredTool.from_function(
            func=calculator,
            name="calculator",
            description="Evaluate an arithmetic expression.",
            args_schema=CalculatorArgs,
        ),
    ]
    return builtins + [p for p in plugins if p.name not in BUILTIN_NAMES]


def tool_specs(tools: Sequence[BaseTool]) -> list[ToolSpec]:
    """Each tool's name, description and JSON schema (what constrained decoding needs)."""
    specs = []
    for tool in tools:
        schema = (
            tool.tool_call_schema.model_json_schema()
            if hasattr(tool.tool_call_schema, "model_json_schema")
            else {}
        )
        schema = {k: v for k, v in schema.items() if k not in ("title", "description")}
        schema.setdefault("type", "object")
        specs.append(ToolSpec(tool.name, tool.description[:300], schema))
    return specs


async def run_tool(tools: Sequence[BaseTool], name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call tool ``name``; failures become ``{"error": ...}`` for the agent, never exceptions."""
    tool = next((t for t in tools if t.name == name), None)
    if tool is None:
        return {"error": f"unknown tool {name[:64]!r}"}
    try:
        result = await tool.ainvoke(arguments)
    except (CalculatorError, RagdError) as exc:
        return {"error": str(exc)[:300]}
    except Exception as exc:  # noqa: BLE001 - operators' tools may raise anything; the agent carries on
        log.warning("tool %s failed: %s", name, type(exc).__name__)
        return {"error": f"{name} failed: {type(exc).__name__}"}
    if isinstance(result, dict):
        return result
    return {"result": str(result)[:MAX_TOOL_RESULT_CHARS]}


def load_plugin_tools(group: str = ENTRY_POINT_GROUP) -> list[BaseTool]:
    """Operators' tools from the ``ragd.tools`` entry points; a broken plugin is logged and skipped."""
    tools: list[BaseTool] = []
    for entry in metadata.entry_points(group=group):
        try:
            obj = entry.load()
            tool = obj if isinstance(obj, BaseTool) else obj()
        except Exception as exc:  # noqa: BLE001 - one bad plugin must not stop the server
            log.error("tool plugin %s could not be loaded: %s", entry.name, exc)
            continue
        if not isinstance(tool, BaseTool):
            log.error("tool plugin %s is not a LangChain BaseTool; skipped", entry.name)
            continue
        if tool.name in BUILTIN_NAMES:
            log.error("tool plugin %s reuses the built-in name %s; skipped", entry.name, tool.name)
            continue
        tools.append(tool)
    return tools
