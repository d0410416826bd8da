"""The calculator parses arithmetic and refuses everything else (it never evaluates code)."""

from __future__ import annotations

import pytest

from ragd.agents.calculator import CalculatorError, calculate, format_number, looks_like_arithmetic


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("(3 + 4) * 2", "14"),
        ("what is 2^10?", "1024"),
        ("7 / 2", "3.5"),
        ("-3 + +5", "2"),
        ("1,000 x 3", "3000"),
        ("17 % 5", "2"),
        ("7 // 2", "3"),
    ],
)
def test_arithmetic(expression: str, value: str) -> None:
    assert format_number(calculate(expression)) == value


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('id')",
        "().__class__",
        "open('/etc/passwd')",
        "9**9**9",
        "10**10000",
        "1/0",
        "a + 1",
        "[1, 2]",
        "lambda: 1",
        "",
        "   ",
        "1 +",
        "(" * 150 + "1" + ")" * 150,
        "2" * 300,
    ],
)
def test_refuses_non_arithmetic_and_huge_values(hostile: str) -> None:
    with pytest.raises(CalculatorError):
        calculate(hostile)


def test_routing_recognises_only_arithmetic() -> None:
    assert looks_like_arithmetic("What is 12 * 7?")
    assert looks_like_arithmetic("calculate (1+2)/3")
    assert not looks_like_arithmetic("What is the capital of France?")
    assert not looks_like_arithmetic("1999")  # a year is not a calculation
