"""Context-window policy without a model (token counts from the estimator)."""

from __future__ import annotations

import pytest

from ragd.llm_serving.base import ContextTooLong, Message
from ragd.llm_serving.context_window import estimate_tokens, fit_messages


def _fit(
    msgs: list[Message], policy: str = "truncate", window: int = 300, max_tokens: int = 50
) -> list[Message]:
    return fit_messages(
        msgs, count_tokens=estimate_tokens, context_window=window, max_tokens=max_tokens, policy=policy
    )  # type: ignore[arg-type]


def test_short_prompts_pass_untouched() -> None:
    msgs = [Message("system", "be brief"), Message("user", "hi")]
    assert _fit(msgs) == msgs


def test_truncate_drops_oldest_turns_but_keeps_system_and_last() -> None:
    msgs = [Message("system", "rules")] + [Message("user", f"old {i} " + "x" * 300) for i in range(5)]
    msgs.append(Message("user", "the real question?"))
    out = _fit(msgs)
    assert out[0].content == "rules" and out[-1].content == "the real question?"
    assert estimate_tokens(out) <= 250 and len(out) < len(msgs)


def test_truncate_shortens_one_huge_message_from_the_middle() -> None:
    text = "START " + "filler " * 2000 + " END?"
    out = _fit([Message("user", text)])
    assert (
        out[0].content.startswith("START") and out[0].content.endswith("END?") and "[...]" in out[0].content
    )
    assert estimate_tokens(out) <= 250


def test_reject_policy_is_a_400_with_numbers() -> None:
    with pytest.raises(ContextTooLong) as err:
        _fit([Message("user", "y" * 5000)], policy="reject")
    assert err.value.status_code == 400 and err.value.details["context_window"] == 300


def test_impossible_budgets_are_400() -> None:
    with pytest.raises(ContextTooLong):
        _fit([Message("user", "hi")], max_tokens=300)
    with pytest.raises(ContextTooLong):
        _fit([])
    with pytest.raises(ContextTooLong):
        _fit([Message("system", "s" * 3000), Message("user", "u" * 3000)], window=260, max_tokens=250)
