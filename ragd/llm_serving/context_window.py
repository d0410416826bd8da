"""Fitting a conversation into a model's context window, by policy.

``reject`` answers a clear 400 (``context_length_exceeded``) with the numbers; ``truncate`` drops
the oldest turns (never the system prompt or the last message), then shortens the longest
remaining message from its middle, so that instructions at the start and the question at the end
survive. Either way the backend never sees a prompt it would fail on with a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from ragd.llm_serving.base import ContextTooLong, Message

log = logging.getLogger(__name__)

ContextPolicy = Literal["reject", "truncate"]
_ELLIPSIS = "\n[...]\n"
_CHARS_PER_TOKEN = 3  # conservative for English BPE vocabularies (SmolLM2 averages ~4)


def estimate_tokens(messages: list[Message]) -> int:
    """A tokenizer-free upper-ish estimate (for servers whose tokenizer ragd does not hold)."""
    return sum(len(m.content) // _CHARS_PER_TOKEN + 4 for m in messages) + 2


def fit_messages(
    messages: list[Message],
    *,
    count_tokens: Callable[[list[Message]], int],
    context_window: int,
    max_tokens: int,
    policy: ContextPolicy,
) -> list[Message]:
    """``messages`` fitted so that prompt + ``max_tokens`` <= ``context_window``."""
    if not messages:
        raise ContextTooLong("messages must not be empty")
    if max_tokens >= context_window:
        raise ContextTooLong(
            f"max_tokens ({max_tokens}) must be below the context window ({context_window})",
            details={"context_window": context_window, "max_tokens": max_tokens},
        )
    budget = context_window - max_tokens
    used = count_tokens(messages)
    if used <= budget:
        return messages
    if policy == "reject":
        raise ContextTooLong(
            f"the prompt has {used} tokens; with max_tokens={max_tokens} it exceeds the "
            f"context window of {context_window}",
            details={"prompt_tokens": used, "context_window": context_window, "max_tokens": max_tokens},
        )
    fitted = list(messages)
    # Drop the oldest turns that are neither system prompts nor the last message.
    while count_tokens(fitted) > budget:
        droppable = [i for i, m in enumerate(fitted[:-1]) if m.role != "system"]
        if not droppable:
            break
        del fitted[droppable[0]]
    # Then shorten the longest message from the middle until it fits.
    for _ in range(32):
        used = count_tokens(fitted)
        if used <= budget:
            break
        i = max(range(len(fitted)), key=lambda k: len(fitted[k].content))
        text = fitted[i].content
        chars_per_token = sum(len(m.content) for m in fitted) / max(used, 1)
        over_chars = int((used - budget) * chars_per_token) + len(_ELLIPSIS) + 8
        keep = len(text) - over_chars
        if keep <= 32:
            raise ContextTooLong(
                f"the prompt cannot be truncated to fit {budget} tokens",
                details={"context_window": context_window, "max_tokens": max_tokens},
            )
        head = keep // 2
        fitted[i] = replace(fitted[i], content=text[:head] + _ELLIPSIS + text[len(text) - (keep - head) :])
    else:
        raise ContextTooLong("the prompt cannot be truncated to fit the context window")
    log.warning(
        "prompt truncated to fit the context window",
        extra={"messages_before": len(messages), "messages_after": len(fitted), "budget": budget},
    )
    return fitted
