"""An OpenAI-compatible chat backend (vLLM first of all) through one shared async client.

One ``AsyncOpenAI`` client per upstream holds the connection pool; timeouts are explicit; ragd
retries with exponential backoff and jitter on transient failures only (connection errors,
timeouts, 408/429/5xx) and never on other 4xx, which are the caller's fault and are mapped to
ragd's 4xx errors (an unknown model or adapter name is a 404, a prompt over the window a 400).
Closing a stream closes the HTTP response, which makes vLLM abort the request.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import openai

from ragd.config import OpenAIBackendSettings
from ragd.errors import BackendUnavailable, BadRequest, NotFound
from ragd.health import ComponentHealth
from ragd.llm_serving.base import (
    ChatChunk,
    ChatResult,
    ContextTooLong,
    GenerationParams,
    Message,
    Usage,
)
from ragd.llm_serving.context_window import ContextPolicy, estimate_tokens, fit_messages

log = logging.getLogger(__name__)

T = TypeVar("T")
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_BACKOFF_BASE_S = 0.2
_BACKOFF_MAX_S = 2.0


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | openai.APIConnectionError | httpx.TransportError):
        return True  # APITimeoutError is an APIConnectionError
    return isinstance(exc, openai.APIStatusError) and exc.status_code in _TRANSIENT_STATUS


def _client_error(exc: openai.APIStatusError, model: str) -> Exception:
    """ragd's 4xx for an upstream 4xx that is the caller's fault (never retried, never fallen back)."""
    text = str(exc.message)[:300]
    if exc.status_code == 404 or "does not exist" in text:
        return NotFound(f"unknown model or adapter {model!r}")
    if "context length" in text or "maximum context" in text or "too long" in text:
        return ContextTooLong("the prompt does not fit the model's context window")
    return BadRequest(f"the model server refused the request: {text}")


class OpenAIChatModel:
    """A chat model served by an OpenAI-compatible HTTP server."""

    def __init__(self, settings: OpenAIBackendSettings, context_policy: ContextPolicy = "truncate") -> None:
        self.name = settings.name
        self._settings = settings
        self._policy: ContextPolicy = context_policy
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value(),
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            max_retries=0,  # ragd retries itself: transient errors only, with its own backoff
        )

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The shared client (for adapter management on the same server)."""
        return self._client

    @property
    def context_window(self) -> int:
        return self._settings.context_window

    async def aclose(self) -> None:
        await self._client.close()

    async def health(self) -> ComponentHealth:
        info: dict[str, Any] = {"base_url": self._settings.base_url, "model": self._settings.model}
        try:
            models = await self._client.models.list(timeout=min(self._settings.timeout_s, 3.0))
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            return ComponentHealth(self.name, False, type(exc).__name__, info)
        served = [m.id for m in models.data]
        info["served"] = served
        if self._settings.model not in served:
            return ComponentHealth(self.name, False, f"model {self._settings.model!r} is not served", info)
        return ComponentHealth(self.name, True, "", info)

    # -- requests ----------------------------------------------------------------------------

    async def _with_retries(self, call: Callable[[], Awaitable[T]], model: str) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except openai.APIStatusError as exc:
                if not _is_transient(exc):
                    raise _client_error(exc, model) from exc
                failure: BaseException = exc
            except (TimeoutError, openai.APIConnectionError, httpx.TransportError) as exc:
                failure = exc
            if attempt >= self._settings.max_retries:
                raise BackendUnavailable(
                    f"{self.name} failed after {attempt + 1} attempts: {type(failure).__name__}"
                ) from failure
            delay = min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2**attempt) * (0.5 + random.random() / 2)
            log.info("retrying %s after %s", self.name, type(failure).__name__, extra={"delay_s": delay})
            attempt += 1
            await asyncio.sleep(delay)

    def _request(self, messages: list[Message], params: GenerationParams) -> dict[str, Any]:
        fitted = fit_messages(
            messages,
            count_tokens=estimate_tokens,
            context_window=self._settings.context_window,
            max_tokens=params.max_tokens,
            policy=self._policy,
        )
        wire: list[dict[str, str]] = [{"role": m.role, "content": m.content} for m in fitted]
        extra: dict[str, Any] = {}
        if params.assistant_prefix:
            wire.append({"role": "assistant", "content": params.assistant_prefix})
            # vLLM: continue the final (assistant) message instead of opening a new turn.
            extra = {"continue_final_message": True, "add_generation_prompt": False}
        body: dict[str, Any] = {
            "model": params.model or self._settings.model,
            "messages": wire,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": params.json_schema},
            }
        if extra:
            body["extra_body"] = extra
        if params.timeout_s is not None:
            body["timeout"] = httpx.Timeout(params.timeout_s, connect=self._settings.connect_timeout_s)
        return body

    async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
        body = self._request(messages, params)
        async with self._slots:
            out = await self._with_retries(
                lambda: self._client.chat.completions.create(**body), body["model"]
            )
        choice = out.choices[0]
        usage = out.usage
        return ChatResult(
            text=choice.message.content or "",
            backend=self.name,
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
            finish_reason=choice.finish_reason or "stop",
        )

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[ChatChunk]:
        body = self._request(messages, params)
        body["stream_options"] = {"include_usage": True}
        async with self._slots:
            # Retries apply to opening the stream; once tokens flow, a failure is the caller's to
            # handle (the fallback chain continues the message on another backend).
            stream = await self._with_retries(
                lambda: self._client.chat.completions.create(stream=True, **body), body["model"]
            )
            finish: str | None = None
            usage = Usage()
            try:
                async for part in stream:
                    if part.usage is not None:
                        usage = Usage(part.usage.prompt_tokens, part.usage.completion_tokens)
                    if not part.choices:
                        continue
                    choice = part.choices[0]
                    finish = choice.finish_reason or finish
                    if choice.delta.content:
                        yield ChatChunk(choice.delta.content, self.name)
            except (openai.APIError, httpx.HTTPError) as exc:
                raise BackendUnavailable(f"{self.name} stream broke: {type(exc).__name__}") from exc
            finally:
                await stream.close()  # a client disconnect ends up here: vLLM aborts the request
            yield ChatChunk("", self.name, finish_reason=finish or "stop", usage=usage)
