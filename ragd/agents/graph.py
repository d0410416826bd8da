"""The agent graph, compiled by a factory (never at import time)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from ragd.agents import nodes
from ragd.agents.state import AgentContext, AgentState
from ragd.llm_serving.base import model_queue_waits

Node = Callable[..., Awaitable[dict[str, Any]]]


def timed(name: str, node: Node) -> Node:
    """``node`` that also records how long it took (the turn's trace shows where time goes).

    A node that called the embedded model records its wait for the model apart, as
    ``model_queue`` before the node's own entry, which is the rest of its time.
    """

    @functools.wraps(node)
    async def run(state: AgentState, runtime: Any) -> dict[str, Any]:
        started = time.perf_counter()
        with model_queue_waits() as waits:
            update = await node(state, runtime)
        spent = (time.perf_counter() - started) * 1000
        parts = [("model_queue", round(sum(waits) * 1000, 1))] if waits else []
        own = round(max(0.0, spent - sum(ms for _, ms in parts)), 1)
        return {**update, "timings": [*state.get("timings", []), *parts, (name, own)]}

    return run


def build_agent_graph(checkpointer: Any = None) -> Any:
    """route -> retrieve -> grade -> (answer | retry retrieval once | abstain) -> verify ->
    (done | extract: quote the evidence instead of an unsupported draft).

    Bounded: one model answer per turn, at most two retrievals, and ``AgentContext.max_steps`` /
    ``deadline_s`` cut the retry when the budget is spent.
    """
    graph: StateGraph[AgentState, AgentContext, AgentState, AgentState] = StateGraph(
        AgentState, context_schema=AgentContext
    )
    graph.add_node("route", timed("route", nodes.route))
    graph.add_node("call_tools", timed("call_tools", nodes.call_tools))
    graph.add_node("chitchat", timed("chitchat", nodes.chitchat))
    graph.add_node("retrieve", timed("retrieve", nodes.retrieve))
    graph.add_node("grade", timed("grade", nodes.grade))
    graph.add_node("answer", timed("answer", nodes.answer))
    graph.add_node("verify", timed("verify", nodes.verify))
    graph.add_node("retry", timed("retry", nodes.reset_for_retry))
    graph.add_node("extract", timed("extract", nodes.extract))
    graph.add_node("abstain", timed("abstain", nodes.abstain))

    graph.add_edge(START, "route")
    graph.add_conditional_edges("route", nodes.after_route, ["call_tools", "chitchat", "retrieve"])
    graph.add_edge("call_tools", END)
    graph.add_edge("chitchat", END)
    graph.add_edge("retrieve", "grade")
    graph.add_conditional_edges("grade", nodes.after_grade, ["answer", "retry", "abstain"])
    graph.add_edge("answer", "verify")
    graph.add_conditional_edges(
        "verify", nodes.after_verify, {"done": END, "extract": "extract", "abstain": "abstain"}
    )
    graph.add_edge("extract", END)
    graph.add_edge("retry", "retrieve")
    graph.add_edge("abstain", END)
    return graph.compile(checkpointer=checkpointer, name="ragd-agent")
