"""OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``: the agent as model ``ragd-agent``.

The official ``openai`` client works unchanged. The last user message is the question and the
earlier user/assistant messages are the conversation (stateless, as in the OpenAI API); ragd's
citations come back in the ``citations`` extension field (streamed: on the last chunk), and
``collections`` may be passed as an extra body field.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ragd.agents.chat_service import ChatOutcome
from ragd.api.deps import CurrentPrincipal, ReaderPrincipal
from ragd.api.protocol import (
    AGENT_MODEL,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ChoiceMessage,
    Citation,
    ModelCard,
    ModelList,
)
from ragd.api.routers.chat import SSE_RESPONSE, ChatServiceDep, stage_totals, stream_turn, to_response
from ragd.errors import BadRequest, NotFound
from ragd.llm_serving.base import Message

router = APIRouter(prefix="/v1", tags=["openai"])
_STARTED = int(time.time())


@router.get("/models", response_model=ModelList, summary="Models (OpenAI-compatible)")
async def list_models(principal: CurrentPrincipal) -> Any:
    """The agent, served as a model."""
    return ModelList(data=[ModelCard(id=AGENT_MODEL, created=_STARTED)])


def _split(body: ChatCompletionRequest) -> tuple[str, list[Message]]:
    if body.model != AGENT_MODEL:
        raise NotFound(f"model {body.model[:128]!r} does not exist; use {AGENT_MODEL!r}")
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise BadRequest("the last message must be a user message")
    history = [Message("user" if m.role == "user" else "assistant", m.text()) for m in turns[:-1]]
    return turns[-1].text(), history


def _completion(outcome: ChatOutcome, cid: str, created: int) -> ChatCompletion:
    native = to_response(outcome)
    return ChatCompletion(
        id=cid,
        created=created,
        model=AGENT_MODEL,
        choices=[Choice(message=ChoiceMessage(content=outcome.answer), finish_reason="stop")],
        usage=native.usage,
        citations=native.citations,
        ragd=_extension(outcome),
    )


def _extension(outcome: ChatOutcome) -> dict[str, Any]:
    return {
        "trace_id": outcome.trace_id,
        "backend": outcome.backend,
        "latency_ms": outcome.latency_ms,
        "abstained": outcome.abstained,
        "blocked": outcome.blocked,
        "extractive": outcome.extractive,
        "answer_kind": outcome.answer_kind,
        "guard_decisions": outcome.guard_decisions,
        "timings_ms": stage_totals(outcome.timings),
    }


def _chunk(cid: str, created: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    data = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": AGENT_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses=SSE_RESPONSE,
    summary="Chat completions (OpenAI-compatible)",
)
async def chat_completions(
    body: ChatCompletionRequest, principal: ReaderPrincipal, service: ChatServiceDep
) -> Any:
    """Answer the last user message with the agent; streams OpenAI chunks when ``stream`` is true."""
    question, history = _split(body)
    service.check_message(question)
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if not body.stream:
        outcome = await service.ask(
            principal, question, collections=body.collections, history=history, persist=False
        )
        return _completion(outcome, cid, created)
    service.collection_ids(principal, body.collections)  # 404 for an unreadable collection, before streaming
    sent: list[str] = []

    async def run(
        on_token: Callable[[str], Awaitable[None]], on_reset: Callable[[], Awaitable[None]]
    ) -> ChatOutcome:
        return await service.ask(
            principal,
            question,
            collections=body.collections,
            history=history,
            persist=False,
            on_token=on_token,
            on_reset=on_reset,
        )

    def render(kind: str, payload: Any) -> list[str]:
        if kind == "token":
            first = not sent
            sent.append(payload)
            delta = {"role": "assistant", "content": payload} if first else {"content": payload}
            return [_chunk(cid, created, delta)]
        if kind == "reset":
            sent.clear()
            return []
        if kind == "final":
            outcome: ChatOutcome = payload
            out = []
            streamed = "".join(sent)
            if not sent:
                out.append(_chunk(cid, created, {"role": "assistant", "content": outcome.answer}))
            elif outcome.answer.startswith(streamed.strip()):
                rest = outcome.answer[len(streamed.strip()) :]
                if rest:
                    out.append(_chunk(cid, created, {"content": rest}))  # the verified citation markers
            else:
                # The verified/guarded answer differs from the streamed draft: send the final text.
                out.append(
                    _chunk(cid, created, {"content": "\n\n" + outcome.answer}, ragd={"replaced": True})
                )
            citations = [Citation(**c).model_dump(mode="json") for c in outcome.citations]
            out.append(_chunk(cid, created, {}, "stop", citations=citations, ragd=_extension(outcome)))
            out.append("data: [DONE]\n\n")
            return out
        return [f"data: {json.dumps(payload[1])}\n\n", "data: [DONE]\n\n"]

    return StreamingResponse(
        stream_turn(run, render),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
