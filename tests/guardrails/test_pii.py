"""PII and secret detection: checksums keep look-alikes out, redaction keeps the rest of the text."""

from __future__ import annotations

import pytest

from ragd.guardrails.pii import find_pii, iban_valid, luhn_valid, redact, ssn_valid


def kinds(text: str) -> list[str]:
    return [m.kind for m in find_pii(text)]


def test_checksums() -> None:
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89 3704 0044 0532 0130 01")  # one digit off: mod 97 fails
    assert not iban_valid("DE89 3704 0044 0532 0130")  # wrong length for Germany
    assert ssn_valid("123-45-6789") and not ssn_valid("666-12-3456") and not ssn_valid("123-00-6789")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe@example.com today", ["email"]),
        ("call me on +44 20 7946 0958", ["phone"]),
        ("my card is 4111-1111-1111-1111", ["card_number"]),
        ("IBAN: GB82 WEST 1234 5698 7654 32", ["iban"]),
        ("SSN 123-45-6789", ["us_ssn"]),
        ("export OPENAI_API_KEY=sk-proj-Abcdefghijklmnopqrstuvwxyz123456", ["api_key"]),
        ("aws AKIAIOSFODNN7EXAMPLE", ["api_key"]),
        ("token ghp_" + "a" * 36, ["api_key"]),
        ("db password: Tr0ub4dor&3", ["secret_assignment"]),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", ["private_key"]),
    ],
)
def test_detects(text: str, expected: list[str]) -> None:
    assert kinds(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is on 2024-01-15 at 10:30 in room 204.",
        "Order 4111 1111 1111 1112 has shipped.",  # fails Luhn
        "Population grew from 1,200,000 to 1,350,000 between 1990 and 2000.",
        "Version 3.11.4 fixed 12 bugs.",
        "IBAN DE00 1234 5678 9012 3456 78 is a placeholder.",  # fails mod 97
    ],
)
def test_no_false_positives(text: str) -> None:
    assert find_pii(text) == []


def test_redact_keeps_the_rest() -> None:
    text = "Mail jane@example.com, card 4111 1111 1111 1111, thanks."
    assert redact(text, find_pii(text)) == "Mail [REDACTED_EMAIL], card [REDACTED_CARD_NUMBER], thanks."


def test_hostile_input_is_linear() -> None:
    # Long digit runs and separators must not make the regexes backtrack for seconds.
    text = ("1 " * 50_000) + "@" * 10_000
    assert isinstance(find_pii(text), list)
