"""Chat-model backends (llama.cpp embedded, vLLM / OpenAI-compatible), the fallback chain, the model
registry, model preparation, LoRA fine-tuning and the vLLM launcher."""

from ragd.llm_serving.base import (
    BadModelOutput,
    ChatChunk,
    ChatModel,
    ChatResult,
    ContextTooLong,
    GenerationParams,
    Message,
    Usage,
)

__all__ = [
    "BadModelOutput",
    "ChatChunk",
    "ChatModel",
    "ChatResult",
    "ContextTooLong",
    "GenerationParams",
    "Message",
    "Usage",
]
