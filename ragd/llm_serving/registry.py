"""Builds the configured chat model from settings (the ChatModel registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ragd.config import Settings
from ragd.errors import ConfigError
from ragd.llm_serving.base import ChatModel
from ragd.llm_serving.fallback import FallbackChatModel


def build_backends(settings: Settings) -> list[ChatModel]:
    """The backends that ``settings.llm.chain`` names, in order (``openai`` expands to every server)."""
    llm = settings.llm
    models: list[ChatModel] = []
    for kind in dict.fromkeys(llm.chain):  # an entry listed twice adds nothing
        if kind == "llamacpp":
            from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel

            models.append(
                LlamaCppChatModel(
                    llm.llamacpp, context_policy=llm.context_policy, cache_dir=settings.gguf_cache_dir
                )
            )
        elif kind == "openai":
            from ragd.llm_serving.openai_backend import OpenAIChatModel

            models.extend(OpenAIChatModel(s, context_policy=llm.context_policy) for s in llm.openai_backends)
        else:  # pragma: no cover - the settings Literal rejects it first
            raise ConfigError("RAGD_LLM__CHAIN", f"unknown backend {kind!r}; choose llamacpp or openai")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError("RAGD_LLM__OPENAI_BACKENDS", f"backend names must be unique, got {names}")
    return models


def build_chat_model(settings: Settings, registry: CollectorRegistry | None = None) -> FallbackChatModel:
    """The fallback chain over the configured backends; its metrics go to ``registry``."""
    return FallbackChatModel(
        build_backends(settings),
        breaker_failures=settings.llm.breaker_failures,
        breaker_reset_s=settings.llm.breaker_reset_s,
        registry=registry,
    )
