"""Wire models of the chat APIs: ragd's native ``/v1/chat`` and the OpenAI-compatible routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AGENT_MODEL = "ragd-agent"
MAX_MESSAGES = 100
MAX_CONTENT_CHARS = 100_000

CollectionName = Annotated[str, Field(min_length=1, max_length=128)]


# --- native --------------------------------------------------------------------------------------


class ChatRequest(BaseModel):
    """One user turn."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="The user's message.", max_length=MAX_CONTENT_CHARS)
    session_id: str | None = Field(
        default=None, max_length=32, description="Continue this session (yours); empty starts a new one."
    )
    collections: list[CollectionName] | None = Field(
        default=None, max_length=50, description="Collection names to search; empty: all you may read."
    )
    stream: bool = Field(default=False, description="Server-sent events: token events, then a final event.")


class Citation(BaseModel):
    """A passage the answer cites as ``[number]``."""

    number: int
    document_id: str
    title: str
    version: int
    chunk_index: int
    collection_id: str
    page: int | None = None
    section: str | None = None
    source: str | None = None
    score: float
    text: str
    quote: str = Field(description="The sentences of the passage that the model was shown.")


class UsageInfo(BaseModel):
    """Token counts of the turn (all model calls)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatResponse(BaseModel):
    """The answer to one turn."""

    session_id: str | None
    message_id: str | None
    answer: str
    citations: list[Citation]
    guard_decisions: list[dict[str, Any]]
    backend: str = Field(description="The model backend that answered ('extractive' when none could).")
    usage: UsageInfo
    latency_ms: float
    trace_id: str
    abstained: bool = Field(description="The knowledge base did not support an answer.")
    blocked: bool = Field(description="A guard blocked the message or the answer.")
    extractive: bool = Field(description="The answer quotes passages, not model text (see answer_kind).")
    answer_kind: str = Field(
        default="model",
        description="'model'; 'extractive': the model's draft was not supported by the passages, so "
        "the answer quotes them; 'extractive_fallback': no model backend was available.",
    )
    replaced: bool = Field(default=False, description="The final answer differs from the streamed draft.")
    timings_ms: dict[str, float] = Field(
        default_factory=dict,
        description="Milliseconds per stage of the turn, in order: 'prepare' (scope, session, history), "
        "'input_guard', the agent's steps ('route', 'retrieve', 'grade', 'answer', 'verify', ...; a step "
        "that ran twice is summed; 'model_queue' is the wait for the embedded model while it answered "
        "another turn, apart from 'answer') and 'output_guard'. Where latency_ms went.",
    )


class MessagePublic(BaseModel):
    """A stored message."""

    id: str
    role: str
    content: str
    citations: list[dict[str, Any]]
    guard_decisions: list[dict[str, Any]]
    backend: str | None
    latency_ms: float | None
    trace_id: str | None
    created_at: str


class SessionPublic(BaseModel):
    """A session and its messages, oldest first."""

    id: str
    title: str
    created_at: str
    updated_at: str
    messages: list[MessagePublic]


# --- OpenAI-compatible ---------------------------------------------------------------------------


class OAIMessage(BaseModel):
    """An OpenAI chat message (text content, or a list of text parts)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(default=AGENT_MODEL, max_length=128)
    messages: list[OAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    user: str | None = Field(default=None, max_length=256)
    collections: list[CollectionName] | None = Field(
        default=None, max_length=50, description="ragd extension: collection names to search."
    )


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: str = "stop"


class ChatCompletion(BaseModel):
    """An OpenAI ``chat.completion`` with ragd's citations as an extension field."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo
    citations: list[Citation] = Field(default_factory=list, description="ragd extension.")
    ragd: dict[str, Any] = Field(default_factory=dict, description="ragd extension: trace, guards, backend.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragd"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
