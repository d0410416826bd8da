# ruff: noqa: E501, RUF001  (regex alternations read better unbroken; Cyrillic/other scripts are intended)
"""Cheap, high-precision rules for known injection and jailbreak patterns.

The trained classifier generalises; these rules catch the phrasings every public attack list
starts with ("ignore all previous instructions", "you are DAN", fake ``<|im_start|>system`` turns)
in microseconds and in several languages. Each rule is deliberately narrow: it needs both an
override verb *and* an instruction noun, so "ignore the typos" or "forget the budget" do not fire.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_OVERRIDE_VERB = (
    r"ignore|ignoring|disregard|disregarding|forget|override|bypass|abandon|discard|drop|skip|"
    r"stop following|do not follow|don'?t follow|pay no attention to|set aside|throw away|erase|delete"
)
_INSTR_NOUN = (
    r"instructions?|rules|guidelines|directions|directives|prompts?|orders|commands|constraints|restrictions|"
    r"polic(?:y|ies)|programming|assignments|tasks|context|safety (?:rules|settings|filters|guidelines)|"
    r"training|everything(?!\s+(?:i|we)\b)(?: (?:above|before|else|you (?:know|were told|have been told)))?"
)
_QUALIFIER = r"(?:all|any|the|your|my|these|those|every|each|of|previous|prior|above|preceding|earlier|original|initial|former|system|old|current|existing|given|provided|\s)*"


@dataclass(frozen=True)
class RuleHit:
    """One rule that matched, with the matched text (truncated)."""

    rule: str
    match: str


RULES: dict[str, re.Pattern[str]] = {
    "override_instructions": re.compile(
        rf"\b(?:{_OVERRIDE_VERB})\b\s+{_QUALIFIER}\b(?:{_INSTR_NOUN})\b", re.IGNORECASE
    ),
    "forget_everything": re.compile(
        r"\b(?:forget|ignore|disregard)\s+(?:about\s+)?(?:everything|all)\b(?!\s+(?:about|i|we)\b)",
        re.IGNORECASE,
    ),
    "new_instructions": re.compile(
        r"\b(?:new|updated|following|changed?)\s+(?:instructions|rules|directives|tasks?)\s+(?:follow|are|apply)\b|"
        r"\byour (?:new|only) (?:task|rule|objective|instruction)s? (?:is|are)\b|"
        r"\bchange your instructions\b|\byour instructions (?:are now|have changed)\b",
        re.IGNORECASE,
    ),
    "prompt_extraction": re.compile(
        # Verbs that copy text out may target "the text above"; a question ("what is the main
        # claim of the text above?") may not: that is how people ask about a pasted document.
        r"\b(?:reveal|print|show|repeat|output|display|dump|leak|recite|write out|spell out|tell me)\b"
        r"[^.?!\n]{0,40}\b(?:(?:your|the) (?:system|initial|original|hidden|secret|pre-?) ?(?:prompt|instructions|rules|message|guidelines)|"
        r"your (?:prompt|instructions|rules|configuration)|(?:the )?(?:text|words|everything) (?:above|before (?:this|my))|"
        r"(?:beginning|start) of (?:this|the) (?:prompt|conversation))|"
        r"\bwhat (?:is|are|was|were)\b[^.?!\n]{0,40}\b(?:(?:your|the) (?:system|initial|original|hidden|secret|pre-?) ?(?:prompt|instructions|rules|message|guidelines)|"
        r"your (?:prompt|instructions|rules|configuration)|(?:beginning|start) of (?:this|the) (?:prompt|conversation))",
        re.IGNORECASE,
    ),
    "jailbreak_persona": re.compile(
        r"\b(?:(?-i:DAN)|do anything now|developer mode|dev ?mode|jailbroken|jailbreak (?:mode|enabled|successful)|unfiltered (?:ai|model|assistant)|"
        r"uncensored (?:ai|model|mode)|no (?:content )?(?:restrictions|filters|rules|guidelines|morals)|"
        r"without (?:any )?(?:restrictions|filters|censorship|limitations)|broken free|sudo mode|"
        r"(?:filters?|safety|restrictions) (?:are |is )?(?:disabled|off|turned off|suspended|lifted))\b",
        re.IGNORECASE,
    ),
    "fake_system_turn": re.compile(
        r"(?:<\|im_start\|>\s*system|<\s*/?\s*system\s*>|\[/?(?:SYSTEM|INST|ADMIN)\]|^\s*#{2,}\s*(?:system|instruction)s?\s*(?::|#{2,}|$)|"
        r"\bsystem\s*(?:override|prompt)\s*:|\bBEGIN (?:ADMIN|SYSTEM) (?:OVERRIDE|INSTRUCTIONS)|END OF USER INPUT|"
        r"</user>)",
        re.IGNORECASE | re.MULTILINE,
    ),
    "output_hijack": re.compile(
        r"\b(?:i have been pwned|pwned|access granted)\b|"
        r"\b(?:do not|don'?t) answer[^.?!\n]{0,30}\b(?:just|only|instead)\b[^.?!\n]{0,20}\b(?:say|output|print|write|reply)",
        re.IGNORECASE,
    ),
    "ai_directed_note": re.compile(
        r"\b(?:ai|llm|language model|assistant|chatbot)s?\s+(?:reading|processing|summari[sz]ing|that reads?)\s+this\b|"
        r"\b(?:instructions?|note) (?:for|to) (?:the )?(?:ai|assistant|llm|language model)\b|"
        r"\bif you are an? (?:ai|language model|llm|assistant)\b",
        re.IGNORECASE,
    ),
    "override_other_languages": re.compile(
        r"\b(?:ignorier(?:e|en)?|vergiss|vergessen sie|missachte)\b[^.?!\n]{0,30}\b(?:anweisungen|regeln|aufgaben|instruktionen|befehle|alles|aufträge|informationen)\b|"
        r"\b(?:ignora|olvida|olvide|ignorez|oubliez|oublie|ignore[sz]?|esqueça|negeer|vergeet|zaboravi)\b[^.?!\n]{0,30}"
        r"\b(?:instrucciones|instructions|istruzioni|instruções|instructies|instrukcije|reglas|règles|regole|consignes|todo|tout|tutto)\b|"
        r"\b(?:obigen|vorherigen|bisherigen|vorangehenden|vorangegangenen)\b[^.?!\n]{0,40}\b(?:ignorieren|vergessen|missachten)\b|"
        r"\bзабудьте\b|\bигнорируй",
        re.IGNORECASE,
    ),
}


def normalise(text: str) -> str:
    """NFKC, zero-width characters removed, spaces collapsed (defeats trivial obfuscation)."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[\u200b-\u200f\u2060\ufeff]", "", text)
    return re.sub(r"[ \t\f\v\u00a0]+", " ", text).strip()


def match_rules(text: str) -> list[RuleHit]:
    """Every rule that matches ``text`` (after normalisation)."""
    norm = normalise(text)
    hits = []
    for name, pattern in RULES.items():
        found = pattern.search(norm)
        if found:
            hits.append(RuleHit(rule=name, match=found.group(0)[:80]))
    return hits
