"""``POST /v1/chat``: one turn with the agent, as JSON or as server-sent events.

Streaming sends ``token`` events as the model writes, ``reset`` when a draft is dropped (the
agent retrieves again or abstains), then one ``final`` event with the whole response (citations,
guard decisions, usage). A client that disconnects cancels the turn, model generation included.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from ragd.agents.chat_service import ChatOutcome, ChatService
from ragd.api.deps import ReaderPrincipal
from ragd.api.errors import error_body
from ragd.api.protocol import ChatRequest, ChatResponse, Citation, UsageInfo
from ragd.api.state import AppState, StateDep
from ragd.errors import RagdError
from ragd.log_config import request_id_var
from ragd.security.principal import Principal

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["chat"])
CHAT_KEY = "chat"
_DONE = object()


def build_chat_service(state: AppState) -> ChatService:
    """The chat service over the app's long-lived parts (the lifespan calls this once)."""
    from ragd.api.routers.monitoring import MONITOR_KEY
    from ragd.api.routers.search import SEARCH_KEY
    from ragd.guardrails.service import GUARDS_KEY, build_guard_service

    guards = state.extras.get(GUARDS_KEY)
    if guards is None and state.settings.guardrails.enabled:
        guards = state.extras[GUARDS_KEY] = build_guard_service(state.settings, state.engine)
    return ChatService(
        state.settings,
        state.engine,
        state.llm,
        state.extras.get(SEARCH_KEY),
        guards=guards,
        monitor=state.extras.get(MONITOR_KEY),
    )


def get_chat_service(state: StateDep) -> ChatService:
    """The app's chat service (built in the lifespan; built here on first use otherwise)."""
    service: ChatService | None = state.extras.get(CHAT_KEY)
    if service is None:
        service = state.extras[CHAT_KEY] = build_chat_service(state)
    return service


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]


def to_response(outcome: ChatOutcome) -> ChatResponse:
    """The wire form of a turn."""
    usage = outcome.usage
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return ChatResponse(
        session_id=outcome.session_id,
        message_id=outcome.message_id,
        answer=outcome.answer,
        citations=[Citation(**c) for c in outcome.citations],
        guard_decisions=outcome.guard_decisions,
        backend=outcome.backend,
        usage=UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        latency_ms=outcome.latency_ms,
        trace_id=outcome.trace_id,
        abstained=outcome.abstained,
        blocked=outcome.blocked,
        extractive=outcome.extractive,
        answer_kind=outcome.answer_kind,
        replaced=outcome.replaced,
        timings_ms=stage_totals(outcome.timings),
    )


def stage_totals(timings: list[tuple[str, float]]) -> dict[str, float]:
    """Milliseconds per stage, first-seen order, a repeated stage (a retry) summed."""
    totals: dict[str, float] = {}
    for stage, ms in timings:
        totals[stage] = round(totals.get(stage, 0.0) + ms, 1)
    return totals


def sse(event: str, data: Any) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


Run = Callable[[Callable[[str], Awaitable[None]], Callable[[], Awaitable[None]]], Awaitable[ChatOutcome]]


async def stream_turn(run: Run, render: Callable[[str, Any], list[str]]) -> AsyncIterator[str]:
    """Run a turn in a task and yield its events; closing the iterator (disconnect) cancels it.

    ``render(kind, payload)`` turns ("token", text) / ("reset", None) / ("final", outcome) /
    ("error", (status, body)) into wire strings.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def on_token(text: str) -> None:
        await queue.put(("token", text))

    async def on_reset() -> None:
        await queue.put(("reset", None))

    async def work() -> None:
        try:
            outcome = await run(on_token, on_reset)
            await queue.put(("final", outcome))
        except RagdError as exc:
            await queue.put(("error", (exc.status_code, error_body(exc.status_code, exc.code, exc.message))))
        except Exception:
            log.exception("chat turn failed")
            await queue.put(("error", (500, error_body(500, "internal_error", "internal error"))))
        finally:
            await queue.put(_DONE)

    task = asyncio.create_task(work())
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            for chunk in render(*item):
                yield chunk
    finally:
        if not task.done():
            task.cancel()  # the client went away: stop retrieval and generation
            try:
                await task
            except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - already reported or cancelled
                log.debug("chat turn ended by disconnect: %s", type(exc).__name__)


def _native_render(kind: str, payload: Any) -> list[str]:
    if kind == "token":
        return [sse("token", {"text": payload})]
    if kind == "reset":
        return [sse("reset", {})]
    if kind == "final":
        return [sse("final", to_response(payload).model_dump(mode="json"))]
    return [sse("error", payload[1])]


#: The 200 response is JSON, or server-sent events when the request says ``stream: true``.
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/event-stream": {
                "schema": {
                    "description": "One server-sent event; `data` is a JSON document.",
                    "type": "object",
                    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
                }
            }
        }
    }
}


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses=SSE_RESPONSE,
    summary="Ask the agent (JSON or server-sent events)",
)
async def chat(body: ChatRequest, principal: ReaderPrincipal, service: ChatServiceDep) -> Any:
    """Answer ``message`` from the collections the caller may read, with citations.

    With ``stream: true`` the response is ``text/event-stream``: ``token`` events
    (``{"text"}``), ``reset`` events, and a ``final`` event carrying this endpoint's JSON body.
    """
    service.check_message(body.message)  # a 400 before any work (and before the stream starts)
    if not body.stream:
        outcome = await service.ask(
            principal, body.message, session_id=body.session_id, collections=body.collections
        )
        return to_response(outcome)
    # Resolve the session and collections now, so that 404s are real HTTP errors.
    await _precheck(service, principal, body)

    async def run(
        on_token: Callable[[str], Awaitable[None]], on_reset: Callable[[], Awaitable[None]]
    ) -> ChatOutcome:
        return await service.ask(
            principal,
            body.message,
            session_id=body.session_id,
            collections=body.collections,
            on_token=on_token,
            on_reset=on_reset,
        )

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Request-ID": request_id_var.get()}
    return StreamingResponse(
        stream_turn(run, _native_render), media_type="text/event-stream", headers=headers
    )


async def _precheck(service: ChatService, principal: Principal, body: ChatRequest) -> None:
    await asyncio.to_thread(service.collection_ids, principal, body.collections)
    if body.session_id is not None:
        await asyncio.to_thread(service.sessions.get, principal, body.session_id)
