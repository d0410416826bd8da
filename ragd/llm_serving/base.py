"""The ChatModel interface that every generation backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ragd.errors import BadRequest, RagdError
from ragd.health import ComponentHealth

MAX_STOP_SEQUENCES = 8
MAX_STOP_LENGTH = 64
MAX_SCHEMA_CHARS = 65536


class ContextTooLong(BadRequest):
    """The prompt plus the generation budget does not fit the model's context window."""

    code = "context_length_exceeded"


class BadModelOutput(RagdError):
    """The model kept producing output that does not parse (e.g. malformed tool-call JSON)."""

    status_code = 502
    code = "bad_model_output"


_QUEUE_WAITS: ContextVar[list[float] | None] = ContextVar("ragd_model_queue_waits", default=None)


@contextmanager
def model_queue_waits() -> Iterator[list[float]]:
    """Collect how long (seconds) the block's calls waited for a busy in-process model.

    The embedded model answers one request at a time; a turn that arrives while another is
    generating waits for it. That wait is other turns' generation, not this one's, so the agent
    reports it apart (``timings_ms["model_queue"]``): a queue says the model is short of capacity,
    a slow answer says it is short of CPU.
    """
    waits: list[float] = []
    token = _QUEUE_WAITS.set(waits)
    try:
        yield waits
    finally:
        _QUEUE_WAITS.reset(token)


def queue_wait_sink() -> list[float] | None:
    """The list the current :func:`model_queue_waits` block collects into (None outside one)."""
    return _QUEUE_WAITS.get()


@dataclass(frozen=True)
class Message:
    """One chat message in OpenAI form."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """Sampling and output constraints for one request."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None  # constrain the output to this JSON schema
    model: str | None = None  # served model or adapter name (OpenAI-compatible backends)
    timeout_s: float | None = None
    # Text the assistant has already said: the backend continues this message instead of starting
    # a new one (how the fallback chain completes a stream that a dead backend left half-done).
    assistant_prefix: str = ""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 1 <= self.max_tokens <= 32768:
            problems.append("max_tokens must be between 1 and 32768")
        if not 0.0 <= self.temperature <= 2.0:
            problems.append("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            problems.append("top_p must be in (0, 1]")
        if len(self.stop) > MAX_STOP_SEQUENCES:
            problems.append(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not s or len(s) > MAX_STOP_LENGTH for s in self.stop):
            problems.append(f"stop sequences must be 1-{MAX_STOP_LENGTH} characters")
        if self.timeout_s is not None and not 0 < self.timeout_s <= 3600:
            problems.append("timeout_s must be in (0, 3600]")
        if self.model is not None and not 0 < len(self.model) <= 128:
            problems.append("model must be 1-128 characters")
        if self.json_schema is not None:
            problems.extend(_schema_problems(self.json_schema))
        if problems:
            raise BadRequest("invalid generation parameters: " + "; ".join(problems))


def _schema_problems(schema: dict[str, Any]) -> list[str]:
    import json

    import jsonschema

    if not isinstance(schema, dict) or len(json.dumps(schema, default=str)) > MAX_SCHEMA_CHARS:
        return [f"json_schema must be an object of at most {MAX_SCHEMA_CHARS} characters"]
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"json_schema is not a valid JSON schema: {exc.message[:200]}"]
    return []


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatResult:
    """A finished generation and the backend that produced it."""

    text: str
    backend: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ChatChunk:
    """A streamed piece of a generation; the last one carries usage and finish reason."""

    text: str
    backend: str
    finish_reason: str | None = None
    usage: Usage | None = None


@runtime_checkable
class ChatModel(Protocol):
    """A chat-completion backend."""

    name: str

    async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
        """Generate a full answer."""
        ...

    def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[ChatChunk]:
        """Generate an answer piece by piece; closing the iterator cancels generation."""
        ...

    async def health(self) -> ComponentHealth:
        """Whether the backend can serve now."""
        ...

    async def aclose(self) -> None:
        """Release the model or client."""
        ...
