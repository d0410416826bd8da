"""One chat turn end to end: input guards -> agent -> output guards -> stored turn -> monitoring.

Used by the native and OpenAI-compatible routes, ``ragd chat`` and ``ragd eval qa``, so every
path answers the same way. Streaming callers pass ``on_token``/``on_reset``; cancelling the
awaiting task (a client disconnect) cancels the model's generation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session

from ragd.agents import prompts
from ragd.agents.graph import build_agent_graph
from ragd.agents.knowledge import ScopedKnowledgeBase
from ragd.agents.sessions import SessionStore, TurnRecord
from ragd.agents.state import (
    ABSTAIN_ANSWER,
    AgentContext,
    AgentState,
    ContextScreen,
    KnowledgeBase,
    Passage,
    TokenSink,
)
from ragd.agents.support import strip_citations
from ragd.agents.tools import build_tools, load_plugin_tools
from ragd.config import AgentSettings, Settings
from ragd.db.models import Permission
from ragd.errors import BadRequest
from ragd.evals.experiments import Assignment, assignment_for
from ragd.llm_serving.base import ChatModel, Message
from ragd.log_config import request_id_var
from ragd.retrieval.base import Embedder, SearchFilter
from ragd.security.policy import readable_collection_ids, resolve_collection
from ragd.security.principal import Principal

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from ragd.retrieval.search_service import SearchService

log = logging.getLogger(__name__)

BLOCKED_ANSWER = "I can't help with that request."
WITHHELD_ANSWER = "The answer was withheld by the output guards."
MAX_COLLECTIONS = 50


@dataclass
class ChatOutcome:
    """Everything one turn produced (the APIs shape it into their wire models)."""

    session_id: str | None
    message_id: str | None
    answer: str
    citations: list[dict[str, Any]]
    guard_decisions: list[dict[str, Any]]
    backend: str
    usage: dict[str, int]
    latency_ms: float
    trace_id: str
    abstained: bool = False
    blocked: bool = False
    extractive: bool = False
    answer_kind: str = "model"  # "model" | "extractive" | "extractive_fallback"
    replaced: bool = False  # a streamed draft was replaced by the final answer
    events: list[str] = field(default_factory=list)
    #: (stage, ms) in order: "prepare" (scope, session, history), "input_guard", the agent's
    #: nodes ("retrieve", "answer", ...; a retried node appears twice), "output_guard".
    timings: list[tuple[str, float]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[Passage] = field(default_factory=list)  # what the model saw (evaluation reads it)
    #: Every passage the turn's searches found, fused, in the order grading considered them.
    retrieved: list[Passage] = field(default_factory=list)
    experiment: tuple[str, str] | None = None  # (experiment id, variant) the turn ran under


def _decision_dict(decision: Any) -> dict[str, Any]:
    is_instance = dataclasses.is_dataclass(decision) and not isinstance(decision, type)
    data = dataclasses.asdict(decision) if is_instance else dict(decision)
    return {k: v for k, v in data.items() if v not in (None, {}, "")}


def variant_agent_settings(base: AgentSettings, config: dict[str, Any]) -> AgentSettings:
    """``base`` with an experiment variant's agent settings applied: the keys of its config
    that name agent settings (``top_k``, ``evidence_passages``, ...), or its ``agents`` object;
    other keys (a model or adapter) are for the serving layer and ignored here."""
    wanted = {**{k: v for k, v in config.items() if k in AgentSettings.model_fields}}
    nested = config.get("agents")
    if isinstance(nested, dict):
        wanted.update({k: v for k, v in nested.items() if k in AgentSettings.model_fields})
    if not wanted:
        return base
    try:
        return AgentSettings.model_validate({**base.model_dump(), **wanted})
    except ValueError as exc:
        log.warning("experiment variant settings are invalid, using the defaults: %s", exc)
        return base


def _needs_context_check(passage: Passage) -> bool:
    payload = passage.hit.payload
    return bool(payload.get("flagged")) or not isinstance(payload.get("injection_score"), int | float)


def grounding_score(decisions: list[dict[str, Any]]) -> float | None:
    """The output grounding guard's support score among a turn's decisions (None if it did not run)."""
    for d in decisions:
        if d.get("guard") == "grounding" and isinstance(d.get("score"), int | float):
            return float(d["score"])
    return None


class ChatService:
    """Answers chat turns for authenticated principals."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        llm: ChatModel,
        search: SearchService | None,
        *,
        embedder: Embedder | None = None,
        guards: Any = None,
        monitor: Any = None,
        plugins: Sequence[BaseTool] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.llm = llm
        self.search = search
        self.embedder = embedder or (search.embedder if search is not None else None)
        self.guards = guards
        self.monitor = monitor
        self.sessions = SessionStore(engine)
        self.plugins = (
            list(plugins)
            if plugins is not None
            else (load_plugin_tools() if settings.agents.load_plugins else [])
        )
        self.graph = build_agent_graph()

    # --- scope -----------------------------------------------------------------------------------

    def collection_ids(self, principal: Principal, names: Sequence[str] | None) -> list[str]:
        """Ids of the named collections (each must be readable: else 404), or of all readable ones."""
        with Session(self.engine) as s:
            if names:
                unique = list(dict.fromkeys(names))
                if len(unique) > MAX_COLLECTIONS:
                    raise BadRequest(f"at most {MAX_COLLECTIONS} collections")
                return [resolve_collection(s, principal, n, Permission.read).collection.id for n in unique]
            return readable_collection_ids(s, principal)

    def knowledge_for(self, principal: Principal, collection_ids: Sequence[str]) -> KnowledgeBase:
        """The knowledge base limited to ``collection_ids`` and the caller's ACL subjects."""
        if self.search is None:
            from ragd.errors import ServiceUnavailable

            raise ServiceUnavailable("search is not available on this server")
        flt = SearchFilter(
            tenant=principal.tenant, collection_ids=list(collection_ids), subjects=list(principal.subjects)
        )
        return ScopedKnowledgeBase(self.search, flt)

    def check_message(self, message: str) -> str:
        """The stripped message, or a 400 (empty, too long, control characters)."""
        text = (message or "").strip()
        if not text:
            raise BadRequest("message is empty")
        if len(text) > self.settings.agents.max_message_chars:
            raise BadRequest(f"message is longer than {self.settings.agents.max_message_chars} characters")
        if "\x00" in text:
            raise BadRequest("message contains a NUL character")
        return text

    # --- one turn --------------------------------------------------------------------------------

    async def ask(
        self,
        principal: Principal,
        message: str,
        *,
        session_id: str | None = None,
        collections: Sequence[str] | None = None,
        on_token: TokenSink | None = None,
        on_reset: Callable[[], Awaitable[None]] | None = None,
        persist: bool = True,
        knowledge: KnowledgeBase | None = None,
        history: Sequence[Message] | None = None,
    ) -> ChatOutcome:
        """Answer ``message`` for ``principal`` (guards included) and store the turn."""
        started = time.perf_counter()
        stages: list[tuple[str, float]] = []  # (stage, ms): where the turn's time went
        clock = [started]

        def lap(stage: str) -> None:
            now = time.perf_counter()
            stages.append((stage, round((now - clock[0]) * 1000, 1)))
            clock[0] = now

        trace_id = request_id_var.get() or uuid.uuid4().hex
        text = self.check_message(message)
        if knowledge is None:
            ids = await asyncio.to_thread(self.collection_ids, principal, collections)
            knowledge = self.knowledge_for(principal, ids)
        sid: str | None = None
        turns: list[Message] = list(history or [])[-self.settings.agents.history_messages :]
        if persist:
            sid = await asyncio.to_thread(self.sessions.open, principal, session_id, text)
            if history is None:
                turns = await asyncio.to_thread(
                    self.sessions.history, sid, self.settings.agents.history_messages
                )

        lap("prepare")
        decisions: list[dict[str, Any]] = []
        if self.guards is not None:
            checked = await asyncio.to_thread(
                self.guards.check_input,
                text,
                principal=principal,
                tenant=principal.tenant,
                request_id=trace_id,
            )
            lap("input_guard")
            decisions += [_decision_dict(d) for d in checked.decisions]
            if checked.blocked:
                if on_token is not None:
                    await on_token(BLOCKED_ANSWER)
                outcome = ChatOutcome(
                    sid,
                    None,
                    BLOCKED_ANSWER,
                    [],
                    decisions,
                    "none",
                    {},
                    0.0,
                    trace_id,
                    blocked=True,
                    events=["input_blocked"],
                    timings=stages,
                )
                return await self._finish(principal, text, outcome, started, persist)
            text = checked.text or text

        screen = self._context_screen(principal, trace_id, decisions) if self.guards is not None else None
        assignment = await asyncio.to_thread(self._assignment, principal)
        agent_settings = self.settings.agents
        if assignment is not None:
            agent_settings = variant_agent_settings(agent_settings, assignment.config)
        lap("prepare")
        state = await self._run_agent(text, turns, knowledge, on_token, on_reset, screen, agent_settings)
        stages += list(state.get("timings") or [])
        clock[0] = time.perf_counter()
        evidence = state.get("evidence") or []
        cited = set(state.get("cited") or [])
        citations = (
            [p.citation() for p in evidence if p.number in cited] if not state.get("abstained") else []
        )
        answer = state.get("answer") or ABSTAIN_ANSWER
        outcome = ChatOutcome(
            sid,
            None,
            answer,
            citations,
            decisions,
            state.get("backend") or "none",
            dict(state.get("usage") or {}),
            0.0,
            trace_id,
            abstained=bool(state.get("abstained")),
            extractive=bool(state.get("extractive")),
            answer_kind=state.get("answer_kind") or "model",
            events=list(state.get("events") or []),
            timings=stages,
            tool_calls=list(state.get("tool_calls") or []),
            evidence=list(evidence),
            retrieved=list(state.get("passages") or []),
            experiment=(assignment.experiment_id, assignment.variant) if assignment else None,
        )
        if self.guards is not None and not outcome.abstained and state.get("route") == "knowledge":
            await self._output_guards(principal, text, outcome, trace_id)
            lap("output_guard")
        return await self._finish(principal, text, outcome, started, persist)

    async def _run_agent(
        self,
        question: str,
        history: list[Any],
        knowledge: KnowledgeBase,
        on_token: TokenSink | None,
        on_reset: Callable[[], Awaitable[None]] | None,
        screen: ContextScreen | None = None,
        agent_settings: AgentSettings | None = None,
    ) -> AgentState:
        a = agent_settings or self.settings.agents
        ctx = AgentContext(
            knowledge=knowledge,
            llm=self.llm,
            embedder=self.embedder,
            tools=build_tools(knowledge, self.plugins),
            max_steps=a.max_steps,
            deadline_s=a.deadline_s,
            top_k=a.top_k,
            evidence_passages=a.evidence_passages,
            evidence_sentences=a.evidence_sentences,
            max_answer_tokens=a.max_answer_tokens,
            planner=a.planner,
            on_token=on_token,
            on_reset=on_reset,
            screen=screen,
        )
        initial: AgentState = {
            "question": question,
            "history": history,
            "steps": 0,
            "attempts": 0,
            "events": [],
        }
        result: AgentState = await self.graph.ainvoke(
            initial, context=ctx, config={"recursion_limit": a.max_steps * 2 + 4}
        )
        return result

    def _assignment(self, principal: Principal) -> Assignment | None:
        """The caller's variant under the tenant's A/B experiment (None without one, or when
        monitoring, which records the outcomes, is off)."""
        if self.monitor is None:
            return None
        return assignment_for(self.engine, principal.tenant, principal.id)

    def _context_screen(
        self, principal: Principal, trace_id: str, decisions: list[dict[str, Any]]
    ) -> ContextScreen:
        """The context guard for one turn: passages are scored again when retrieved; a flagged
        one is neutralised (its instruction sentences replaced) or quarantined (left out), as
        the policy says, and every such decision joins the turn's ``decisions``."""
        guards = self.guards
        assert guards is not None

        async def screen(passages: list[Passage]) -> list[Passage]:
            # Ingestion scored every chunk with the same scanner; only chunks it flagged, or
            # never scored, go through the guard chain (a chain run per chunk costs ~100 ms).
            suspect = [p for p in passages if _needs_context_check(p)]
            if not suspect:
                return passages
            results = await asyncio.to_thread(
                guards.check_context,
                [p.hit.text for p in suspect],
                principal=principal,
                tenant=principal.tenant,
                request_id=trace_id,
            )
            verdicts = {p.key: r for p, r in zip(suspect, results, strict=True)}
            kept: list[Passage] = []
            for passage in passages:
                result = verdicts.get(passage.key)
                if result is None:
                    kept.append(passage)
                    continue
                acted = [d for d in result.decisions if d.action != "allow"]
                decisions.extend(
                    {**_decision_dict(d), "document_id": passage.hit.document_id, "chunk": passage.key}
                    for d in acted
                )
                if result.blocked:
                    continue
                if result.text and result.text != passage.hit.text:
                    passage.hit = dataclasses.replace(passage.hit, text=result.text)
                kept.append(passage)
            return kept

        return screen

    async def _output_guards(
        self, principal: Principal, question: str, outcome: ChatOutcome, trace_id: str
    ) -> None:
        passages = [c["text"] for c in outcome.citations]
        checked = await asyncio.to_thread(
            self.guards.check_output,
            outcome.answer,
            passages=passages,
            question=question,
            system_prompt=prompts.SYSTEM_PROMPT,
            principal=principal,
            tenant=principal.tenant,
            request_id=trace_id,
        )
        outcome.guard_decisions += [_decision_dict(d) for d in checked.decisions]
        if checked.blocked:
            grounding = "grounding" in checked.blocked_by
            outcome.answer = ABSTAIN_ANSWER if grounding else WITHHELD_ANSWER
            outcome.abstained = grounding
            outcome.blocked = not grounding
            outcome.citations = []
            outcome.replaced = True
        elif checked.text and checked.text != outcome.answer:
            outcome.answer = checked.text  # redacted (e.g. PII)
            outcome.replaced = True

    async def _finish(
        self, principal: Principal, question: str, outcome: ChatOutcome, started: float, persist: bool
    ) -> ChatOutcome:
        outcome.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        if persist and outcome.session_id is not None:
            record = TurnRecord(
                outcome.answer,
                outcome.citations,
                outcome.guard_decisions,
                outcome.backend,
                outcome.usage,
                outcome.latency_ms,
                outcome.trace_id,
            )
            outcome.message_id = await asyncio.to_thread(
                self.sessions.add_turn, outcome.session_id, question, record
            )
        if self.monitor is not None:
            try:
                await asyncio.to_thread(
                    self.monitor.record_turn,
                    tenant=principal.tenant,
                    subject=principal.id,
                    message_id=outcome.message_id,
                    session_id=outcome.session_id,
                    query=question,
                    retrieval_scores=[p.score for p in outcome.evidence],
                    grounding_score=grounding_score(outcome.guard_decisions),
                    abstained=outcome.abstained,
                    guard_decisions=outcome.guard_decisions,
                    backend=outcome.backend,
                    latency_ms=outcome.latency_ms,
                    experiment_id=outcome.experiment[0] if outcome.experiment else None,
                    variant=outcome.experiment[1] if outcome.experiment else None,
                )
            except Exception as exc:  # noqa: BLE001 - monitoring must never fail a chat turn
                log.warning("monitoring could not record the turn: %s", type(exc).__name__)
        return outcome


def plain_answer(outcome: ChatOutcome) -> str:
    """The answer without citation markers (what EM/F1 are computed on)."""
    return strip_citations(outcome.answer)
