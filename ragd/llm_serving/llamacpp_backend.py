"""The embedded chat model: llama-cpp-python in process, off the event loop.

llama.cpp contexts are not thread-safe, so one dedicated thread owns the model and serves
requests one at a time from a bounded queue (full -> 503, which the fallback chain treats as a
reason to try the next backend); callers await results without blocking the loop. ragd renders
the chat template itself and calls the completion API with the token ids, so it knows the exact
prompt length (usage, context-window policy) and can continue a half-written assistant message.
A cancelled stream sets a flag that the generating thread checks after every token, so a client
disconnect stops generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ragd.config import LlamaCppSettings
from ragd.errors import BackendUnavailable, BadRequest, NotFound
from ragd.health import ComponentHealth
from ragd.llm_serving.base import (
    ChatChunk,
    ChatResult,
    ContextTooLong,
    GenerationParams,
    Message,
    Usage,
    queue_wait_sink,
)
from ragd.llm_serving.context_window import ContextPolicy, fit_messages
from ragd.llm_serving.gguf_weights import serving_weights
from ragd.llm_serving.model_files import smollm2_gguf

log = logging.getLogger(__name__)

_STOP = object()


class LlamaCppChatModel:
    """SmolLM2 (or any GGUF chat model) through llama-cpp-python."""

    def __init__(
        self,
        settings: LlamaCppSettings,
        name: str = "llamacpp",
        context_policy: ContextPolicy = "truncate",
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir`` holds the re-encoded weights (``settings.weights``); without one the
        file is loaded as it is."""
        self.name = name
        self._settings = settings
        self._policy: ContextPolicy = context_policy
        self._path: Path = settings.model_path or smollm2_gguf()
        self._cache_dir = cache_dir
        self._weights: Path = self._path  # the file actually loaded (see load)
        self._llm: Any = None
        self._formatter: Any = None
        self._stop_tokens: list[str] = []
        self._load_lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=settings.max_queue)
        self._thread: threading.Thread | None = None
        self._load_error: str | None = None
        self.cancelled_streams = 0  # streams stopped early because their consumer went away

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model and start the serving thread (idempotent, blocking)."""
        with self._load_lock:
            if self._llm is not None:
                return
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._weights = serving_weights(self._path, self._settings.weights, self._cache_dir)
            try:
                llm = Llama(
                    model_path=str(self._weights),
                    n_ctx=self._settings.n_ctx,
                    n_threads=self._settings.n_threads or os.cpu_count() or 1,
                    flash_attn=self._settings.flash_attn,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                self._load_error = f"cannot load {self._path.name}: {exc}"
                raise BackendUnavailable(self._load_error) from exc
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                self._load_error = f"{self._path.name} has no chat template"
                raise BackendUnavailable(self._load_error)
            eos = llm._model.token_get_text(llm.token_eos())
            bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
            self._stop_tokens = [eos]
            self._llm = llm
            self._thread = threading.Thread(target=self._serve, name="llamacpp", daemon=True)
            self._thread.start()
            log.info(
                "llama.cpp model loaded", extra={"model": self._path.name, "weights": self._weights.name}
            )

    async def aclose(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join, 10)
            self._thread = None
        self._llm = None

    async def health(self) -> ComponentHealth:
        ok = self._llm is not None and self._thread is not None and self._thread.is_alive()
        detail = self._load_error or ("" if ok else "model not loaded")
        return ComponentHealth(
            self.name,
            ok,
            detail,
            {"model": self._path.name, "weights": self._weights.name, "queued": self._queue.qsize()},
        )

    @property
    def context_window(self) -> int:
        return self._settings.n_ctx

    def serves(self, model: str | None) -> bool:
        """Whether a request for ``model`` can be answered here (the base model only, no adapters)."""
        return model is None or model in {self.name, "smollm2", self._path.stem}

    # -- prompts -----------------------------------------------------------------------------

    def _render(self, messages: list[Message], prefix: str = "") -> list[int]:
        """Token ids of the chat prompt, ending with the open assistant turn (plus ``prefix``)."""
        result = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        text: str = result.prompt + prefix
        tokens: list[int] = self._llm.tokenize(
            text.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        return tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the model's tokenizer."""
        self.load()
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False))

    def _prepare(self, messages: list[Message], params: GenerationParams) -> tuple[list[int], dict[str, Any]]:
        fitted = fit_messages(
            messages,
            count_tokens=lambda msgs: len(self._render(msgs, params.assistant_prefix)),
            context_window=self._settings.n_ctx,
            max_tokens=params.max_tokens,
            policy=self._policy,
        )
        tokens = self._render(fitted, params.assistant_prefix)
        kwargs: dict[str, Any] = {
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": list(params.stop) + self._stop_tokens,
        }
        if params.json_schema is not None:
            from llama_cpp.llama_grammar import LlamaGrammar

            try:
                kwargs["grammar"] = LlamaGrammar.from_json_schema(
                    json.dumps(params.json_schema), verbose=False
                )
            except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as exc:
                raise BadRequest(f"unsupported JSON schema: {str(exc)[:200]}") from exc
        return tokens, kwargs

    # -- serving thread ----------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                fut.set_exception(exc)

    def _submit(self, fn: Callable[[], Any]) -> Future[Any]:
        fut: Future[Any] = Future()
        sink, submitted = queue_wait_sink(), time.perf_counter()

        def run() -> Any:
            if sink is not None:  # the caller measures its wait for the model (see base.py)
                sink.append(time.perf_counter() - submitted)
            return fn()

        try:
            self._queue.put_nowait((run, fut))
        except queue.Full as exc:
            raise BackendUnavailable("the embedded model is busy; try again shortly") from exc
        return fut

    def _completion(self, tokens: list[int], kwargs: dict[str, Any], stream: bool) -> Any:
        try:
            return self._llm.create_completion(prompt=tokens, stream=stream, **kwargs)
        except ValueError as exc:  # llama.cpp's own context check; fit_messages should prevent it
            raise ContextTooLong(f"the request does not fit the context window: {str(exc)[:200]}") from exc

    # -- ChatModel ---------------------------------------------------------------------------

    def _check_model(self, params: GenerationParams) -> None:
        if not self.serves(params.model):
            raise NotFound(f"unknown model or adapter {params.model!r}")

    async def generate(self, messages: list[Message], params: GenerationParams) -> ChatResult:
        self._check_model(params)
        await asyncio.to_thread(self.load)
        tokens, kwargs = await asyncio.to_thread(self._prepare, messages, params)
        fut = self._submit(lambda: self._completion(tokens, kwargs, stream=False))
        out = await asyncio.wrap_future(fut)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return ChatResult(
            text=choice["text"] or "",
            backend=self.name,
            usage=Usage(len(tokens), usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason") or "stop",
        )

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[ChatChunk]:
        self._check_model(params)
        await asyncio.to_thread(self.load)
        tokens, kwargs = await asyncio.to_thread(self._prepare, messages, params)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def run() -> None:
            pieces: list[str] = []
            finish: str | None = None
            it: Iterator[dict[str, Any]] | None = None
            try:
                it = self._completion(tokens, kwargs, stream=True)
                for part in it:
                    if cancelled.is_set():
                        finish = "cancelled"
                        self.cancelled_streams += 1
                        break
                    choice = part["choices"][0]
                    text = choice.get("text") or ""
                    finish = choice.get("finish_reason") or finish
                    if text:
                        pieces.append(text)
                        loop.call_soon_threadsafe(chunks.put_nowait, text)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # stops llama.cpp's generator so the context is free for the next request
                produced = (
                    len(self._llm.tokenize("".join(pieces).encode("utf-8"), add_bos=False)) if pieces else 0
                )
                usage = Usage(len(tokens), produced)
                loop.call_soon_threadsafe(chunks.put_nowait, (_STOP, finish or "stop", usage))

        fut = self._submit(run)
        try:
            while True:
                item = await chunks.get()
                if isinstance(item, tuple) and item and item[0] is _STOP:
                    await asyncio.wrap_future(fut)  # re-raises a failure of the generating thread
                    yield ChatChunk("", self.name, finish_reason=item[1], usage=item[2])
                    break
                yield ChatChunk(item, self.name)
        finally:
            cancelled.set()
