"""Safe arithmetic: parses an expression into a syntax tree and walks it (never ``eval``).

Only numbers, + - * / // % **, unary signs and parentheses are allowed; sizes are bounded so that
an expression cannot exhaust memory or time (``9**9**9``).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/%()^,x\u00d7\u00f7=?]+$")


class CalculatorError(ValueError):
    """The expression is not plain arithmetic, or its value is out of bounds."""


def looks_like_arithmetic(text: str) -> bool:
    """Whether ``text`` (after a "what is"/"calculate" lead-in) is only an arithmetic expression."""
    body = re.sub(
        r"^\s*(what\s+is|what's|calculate|compute|evaluate)\s+", "", text.strip(), flags=re.IGNORECASE
    )
    body = body.rstrip(" ?=")
    return (
        bool(body)
        and bool(_ARITHMETIC.match(body))
        and any(c.isdigit() for c in body)
        and any(c in body for c in "+-*/%^x\u00d7\u00f7")
    )


def normalise(text: str) -> str:
    """The bare expression in ``text``: lead-in words dropped, ^, x, times and divide signs mapped."""
    body = re.sub(
        r"^\s*(what\s+is|what's|calculate|compute|evaluate)\s+", "", text.strip(), flags=re.IGNORECASE
    )
    body = body.rstrip(" ?=").replace("^", "**").replace("\u00d7", "*").replace("\u00f7", "/")
    body = re.sub(r"(?<=\d)\s*x\s*(?=\d)", "*", body)
    return re.sub(r"(?<=\d),(?=\d{3})", "", body)


def _walk(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _walk(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _walk(node.operand)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > MAX_MAGNITUDE**0.5):
            raise CalculatorError("exponent too large")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError as exc:
            raise CalculatorError("division by zero") from exc
        except OverflowError as exc:
            raise CalculatorError("result too large") from exc
        if isinstance(value, complex):
            raise CalculatorError("the result is not a real number")
        if isinstance(value, float) and (math.isnan(value) or abs(value) > MAX_MAGNITUDE):
            raise CalculatorError("result too large")
        if isinstance(value, int) and abs(value) > MAX_MAGNITUDE:
            raise CalculatorError("result too large")
        return value
    raise CalculatorError("only numbers, + - * / // % ** and parentheses are allowed")


def calculate(expression: str) -> float:
    """The value of an arithmetic ``expression``; raises :class:`CalculatorError`."""
    if not expression or not expression.strip():
        raise CalculatorError("empty expression")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(normalise(expression), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError("not an arithmetic expression") from exc
    return _walk(tree)


def format_number(value: float) -> str:
    """``value`` without a spurious ``.0`` and with at most 10 significant decimals."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.10g}"
