"""The agent end to end on real components: cited answers, abstention, tools, fallbacks, streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ragd.agents.state import ABSTAIN_ANSWER
from ragd.agents.support import cited_numbers
from ragd.agents.tools import build_tools, load_plugin_tools, run_tool
from ragd.db.models import Role
from ragd.health import ComponentHealth
from ragd.llm_serving.base import ChatChunk, ChatResult, GenerationParams, Message
from ragd.security.principal import Principal
from tests.agents.conftest import Stack
from tests.fixtures.models import DownModel


class InventingModel:
    """A model that answers fluently from memory, citing evidence that does not say so."""

    name = "inventing"
    answer = "The bridge was designed by Napoleon Bonaparte in Paris [1]."

    async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
        return ChatResult(self.answer, self.name)

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[ChatChunk]:
        for word in self.answer.split(" "):
            yield ChatChunk(word + " ", self.name)

    async def health(self) -> ComponentHealth:
        return ComponentHealth(self.name, True, "")

    async def aclose(self) -> None:
        return None


def ask(stack: Stack, question: str, **kw: Any) -> Any:
    service = kw.pop("service", None) or stack.service()
    collections = kw.pop("collections", [stack.collection])
    return asyncio.run(service.ask(stack.principal, question, collections=collections, **kw))


def test_unsupported_draft_gives_way_to_quoted_evidence(stack: Stack) -> None:
    tokens: list[str] = []
    resets: list[bool] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    async def on_reset() -> None:
        resets.append(True)
        tokens.clear()

    service = stack.service(llm=InventingModel())
    out = ask(
        stack, "Who designed the Zorblax Bridge?", service=service, on_token=on_token, on_reset=on_reset
    )
    assert "Napoleon" not in out.answer and "extract" in out.events
    assert out.extractive and out.answer_kind == "extractive"
    assert "Quillfeather" in out.answer and not out.abstained
    numbers = cited_numbers(out.answer)
    assert numbers and {c["number"] for c in out.citations} == set(numbers)
    assert resets and "".join(tokens) == out.answer  # the streamed draft was withdrawn


def test_injected_instruction_is_neutralised_and_reported(stack: Stack) -> None:
    from ragd.guardrails.service import build_guard_service
    from tests.agents.conftest import INJECTED_INSTRUCTION

    guards = build_guard_service(stack.settings, stack.engine)
    seen: list[str] = []

    class Recording(InventingModel):
        answer = "The Ostrava Steel Company repaired the crane [1]."

        async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
            seen.extend(m.content for m in messages)
            return await super().generate(messages, params)

    service = stack.service(llm=Recording(), guards=guards)
    out = ask(stack, "Who repaired the Velmont harbour crane?", service=service, collections=[stack.inbox])
    assert seen and not any("Ignore all previous instructions" in m for m in seen)
    assert any("Ostrava" in m for m in seen)  # the rest of the chunk is still evidence
    context = [d for d in out.guard_decisions if d.get("stage") == "context"]
    assert context and context[0]["action"] in ("redact", "block") and context[0]["document_id"]
    assert INJECTED_INSTRUCTION not in out.answer


def test_answer_cites_passages_that_support_it_or_abstains(stack: Stack) -> None:
    out = ask(stack, "Who designed the Zorblax Bridge?")
    assert out.events[:3] == ["route", "retrieve", "grade"]
    if out.abstained:
        assert out.answer == ABSTAIN_ANSWER and out.citations == []
        assert "verify" in out.events  # it tried, checked, and refused to guess
    else:
        numbers = cited_numbers(out.answer)
        assert numbers and {c["number"] for c in out.citations} == set(numbers)
        assert any("Quillfeather" in c["text"] for c in out.citations)
        assert all(c["document_id"] and c["version"] >= 1 for c in out.citations)
    assert out.backend in ("llamacpp", "none")
    assert out.latency_ms > 0 and out.trace_id


def test_question_outside_the_knowledge_base_is_not_answered_from_memory(stack: Stack) -> None:
    out = ask(stack, "What is the boiling point of liquid nitrogen in Kelvin?")
    assert out.abstained and out.answer == ABSTAIN_ANSWER and out.citations == []


def test_multi_hop_question_searches_more_than_once(stack: Stack) -> None:
    out = ask(stack, "Where was the engineer who designed the Zorblax Bridge born?")
    searches = [c for c in out.tool_calls if c["name"] == "search_knowledge"]
    assert len(searches) >= 2  # the first hop names the engineer; the second looks her up
    titles = {p.title for p in out.evidence}
    assert {"Zorblax Bridge", "Mara Quillfeather"} <= titles


def test_arithmetic_goes_to_the_calculator(stack: Stack) -> None:
    out = ask(stack, "What is (17 + 4) * 3?")
    assert out.answer.endswith("= 63") and out.tool_calls[0]["name"] == "calculator"


def test_every_backend_down_gives_a_labelled_extractive_answer(stack: Stack) -> None:
    out = ask(stack, "Who designed the Zorblax Bridge?", service=stack.service(llm=DownModel()))
    assert out.extractive and out.backend == "extractive"
    assert out.answer.startswith("[Extractive answer") and out.citations


def test_streaming_sends_tokens_then_the_final_answer(stack: Stack) -> None:
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    out = ask(stack, "When did the Zorblax Bridge open?", on_token=on_token)
    assert tokens
    if not out.abstained:
        assert "".join(tokens).strip().split()[0] in out.answer


def test_caller_without_grants_finds_nothing(stack: Stack) -> None:
    stranger = Principal(id="u-stranger", tenant="acme", role=Role.reader)
    service = stack.service()
    out = asyncio.run(service.ask(stranger, "Who designed the Zorblax Bridge?"))
    assert out.abstained and out.citations == []
    other_tenant = Principal(id="admin2", tenant="globex", role=Role.admin)
    out = asyncio.run(service.ask(other_tenant, "Who designed the Zorblax Bridge?"))
    assert out.abstained


def test_sessions_keep_history_and_belong_to_their_owner(stack: Stack) -> None:
    service = stack.service()
    first = asyncio.run(service.ask(stack.principal, "What is 2 + 2?"))
    second = asyncio.run(service.ask(stack.principal, "What is 3 * 3?", session_id=first.session_id))
    assert second.session_id == first.session_id
    _, messages = service.sessions.get(stack.principal, first.session_id)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    from ragd.errors import NotFound

    intruder = Principal(id="other", tenant="acme", role=Role.admin)
    with pytest.raises(NotFound):
        service.sessions.get(intruder, first.session_id)
    with pytest.raises(NotFound):
        asyncio.run(service.ask(intruder, "hi", session_id=first.session_id))


def test_tool_errors_come_back_as_data(stack: Stack) -> None:
    service = stack.service()
    kb = service.knowledge_for(stack.principal, service.collection_ids(stack.principal, ["kb"]))
    tools = build_tools(kb)
    assert asyncio.run(run_tool(tools, "get_document", {"document_id": "nope"}))["error"]
    assert asyncio.run(run_tool(tools, "calculator", {"expression": "__import__('os')"}))["error"]
    assert asyncio.run(run_tool(tools, "no_such_tool", {}))["error"].startswith("unknown tool")
    found = asyncio.run(run_tool(tools, "search_knowledge", {"query": "saffron", "top_k": 2}))
    doc = found["passages"][0]
    view = asyncio.run(run_tool(tools, "get_document", {"document_id": doc["document_id"], "chunk_index": 0}))
    assert view["chunks"] and view["document_id"] == doc["document_id"]
    assert load_plugin_tools("ragd.tools.none-installed") == []


@pytest.mark.slow
def test_model_picks_a_tool_under_constrained_decoding(stack: Stack) -> None:
    from ragd.agents import nodes
    from ragd.agents.state import AgentContext

    service = stack.service()
    kb = service.knowledge_for(stack.principal, service.collection_ids(stack.principal, ["kb"]))
    ctx = AgentContext(knowledge=kb, llm=stack.llm, embedder=None, tools=build_tools(kb), planner="model")
    call = asyncio.run(nodes._model_tool_call(ctx, "Find documents about saffron bread"))
    assert call is not None and call["name"] in ("search_knowledge", "get_document", "calculator")
    assert isinstance(call["arguments"], dict)


def test_client_disconnect_cancels_generation(stack: Stack) -> None:
    from ragd.api.routers.chat import stream_turn

    service = stack.service()
    before = stack.llm.cancelled_streams
    finished: list[bool] = []

    async def run(on_token: Any, on_reset: Any) -> Any:
        out = await service.ask(
            stack.principal,
            "Tell me about saffron bread.",
            collections=["kb"],
            on_token=on_token,
            on_reset=on_reset,
            persist=False,
        )
        finished.append(True)
        return out

    async def consume() -> list[str]:
        seen: list[str] = []
        events = stream_turn(run, lambda kind, payload: [kind])
        async for kind in events:
            seen.append(kind)
            if kind == "token":
                break  # the client goes away after the first token
        await events.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)
        return seen

    seen = asyncio.run(consume())
    assert seen == ["token"] and not finished
    deadline = time.monotonic() + 30
    while stack.llm.cancelled_streams == before and time.monotonic() < deadline:
        time.sleep(0.1)  # the generating thread notices the flag at its next token
    assert stack.llm.cancelled_streams > before


def test_a_b_experiment_variant_shapes_the_turn_and_is_recorded(stack: Stack) -> None:
    from sqlmodel import Session, select

    from ragd.config import EvalSettings
    from ragd.db.models import MonitorTurn
    from ragd.evals.experiments import ExperimentSpec, VariantSpec, assign, create_experiment, stop_experiment
    from ragd.evals.monitoring import Monitor

    spec = ExperimentSpec(
        name="retrieval depth",
        variants=[
            VariantSpec(name="shallow", config={"top_k": 1}),
            VariantSpec(name="deep", config={"top_k": 5}),
        ],
    )
    exp = create_experiment(stack.engine, stack.principal.tenant, spec)
    try:
        variant = assign(stack.engine, stack.principal.tenant, exp.id, stack.principal.id).variant
        service = stack.service(monitor=Monitor(stack.engine, EvalSettings()))
        out = ask(stack, "Who designed the Zorblax Bridge?", service=service)
        first_search = next(c for c in out.tool_calls if c["name"] == "search_knowledge")
        assert first_search["arguments"]["top_k"] == {"shallow": 1, "deep": 5}[variant]
        assert out.experiment == (exp.id, variant)
        with Session(stack.engine) as s:
            turn = s.exec(select(MonitorTurn).where(MonitorTurn.experiment_id == exp.id)).one()
        assert turn.variant == variant
    finally:
        stop_experiment(stack.engine, stack.principal.tenant, exp.id)
