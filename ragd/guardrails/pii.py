"""PII and secret detection with checksums, and redaction.

Regexes find candidates; checksums keep false positives down: card numbers must pass Luhn,
IBANs the ISO 13616 mod-97 check with the right length for their country, US SSNs the SSA's
invalid-range rules. Secrets are matched by the well-known prefixes of API keys and tokens plus
PEM private-key blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Lengths from the SWIFT IBAN registry (the common ones; unknown countries need 15-34 chars).
IBAN_LENGTHS = {
    "AD": 24,
    "AT": 20,
    "BE": 16,
    "BG": 22,
    "CH": 21,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "EE": 20,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "GR": 27,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IS": 26,
    "IT": 27,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MT": 31,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "RO": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TR": 26,
    "UA": 29,
    "SA": 24,
    "AE": 23,
    "IL": 23,
}


@dataclass(frozen=True)
class PIIMatch:
    """One detected item: its kind, character span and the matched text."""

    kind: str
    start: int
    end: int
    text: str


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 12:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: country length and mod-97 == 1."""
    iban = re.sub(r"\s", "", candidate).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    rearranged = iban[4:] + iban[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97 == 1


def ssn_valid(candidate: str) -> bool:
    """US SSN: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    digits = re.sub(r"\D", "", candidate)
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in {"000", "666"} and not area.startswith("9") and group != "00" and serial != "0000"


_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)"
        ),
    ),
    (
        "api_key",
        re.compile(
            r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|"
            r"github_pat_[A-Za-z0-9_]{22,}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|"
            r"glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}|sk_live_[A-Za-z0-9]{20,}|rk_live_[A-Za-z0-9]{20,}|"
            r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
        ),
    ),
    (
        "secret_assignment",
        re.compile(
            r"\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)"
            r"\s*[:=]\s*['\"]?([^\s'\"]{6,})",
            re.IGNORECASE,
        ),
    ),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")),
    ("card_number", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("us_ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    (
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){2,4}(?![\w-])"
        ),
    ),
]

_VALIDATORS = {"card_number": luhn_valid, "iban": iban_valid, "us_ssn": ssn_valid}


def _phone_plausible(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    # Dates (2024-01-15), times and short numbers are not phone numbers.
    if not 8 <= len(digits) <= 15 or re.fullmatch(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}", text.strip()):
        return False
    return text.strip().startswith(("+", "(", "0")) or len(digits) >= 10


def find_pii(text: str, kinds: frozenset[str] | None = None) -> list[PIIMatch]:
    """PII and secrets in ``text``, non-overlapping, earliest and most specific first."""
    found: list[PIIMatch] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _PATTERNS:
        if kinds is not None and kind not in kinds:
            continue
        for m in pattern.finditer(text):
            start, end = m.span(1) if kind == "secret_assignment" else m.span()
            value = text[start:end]
            check = _VALIDATORS.get(kind)
            if check is not None and not check(value):
                continue
            if kind == "phone" and not _phone_plausible(value):
                continue
            if any(start < t_end and end > t_start for t_start, t_end in taken):
                continue
            taken.append((start, end))
            found.append(PIIMatch(kind=kind, start=start, end=end, text=value))
    return sorted(found, key=lambda p: p.start)


def redact(text: str, matches: list[PIIMatch]) -> str:
    """``text`` with each match replaced by ``[REDACTED_<KIND>]``."""
    out, last = [], 0
    for m in sorted(matches, key=lambda p: p.start):
        out.append(text[last : m.start])
        out.append(f"[REDACTED_{m.kind.upper()}]")
        last = m.end
    out.append(text[last:])
    return "".join(out)


ALL_KINDS = frozenset(kind for kind, _ in _PATTERNS)
