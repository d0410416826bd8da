"""Output checks that run in milliseconds: grounding and system-prompt leaks.

Grounding is lexical on purpose: a sentence is supported when one cited passage contains most
of its content words (light stemming) and every number it states. This misses paraphrases that
share no words (those are flagged, not blocked, by default) but catches the failure that matters
for a small generator: an answer that states a fact, a name or a figure no passage contains.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_WORD = re.compile(r"[^\W_]+(?:[.,][0-9]+)*", re.UNICODE)
_CITATION = re.compile(r"\[(\d{1,3})\]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n+")
_ABSTAIN = re.compile(
    r"\b(?:i (?:do not|don't|cannot|can't) (?:know|find|answer)|not (?:mentioned|stated|found|covered) in|"
    r"no (?:information|answer) (?:about|in|on)|the (?:passages|documents|context) do(?:es)? not)\b",
    re.IGNORECASE,
)
STOPWORDS = frozenset(
    """a an the and or but if then than so of in on at to for from by with without about into over under
    is are was were be been being am do does did have has had having it its it's this that these those there
    here what which who whom whose when where why how all any both each few more most other some such no nor
    not only own same too very can will just should would could may might must shall i me my we our you your
    he him his she her they them their as also according passage passages document documents
    context""".split()
)


def _stem(word: str) -> str:
    for suffix in ("ations", "ation", "ingly", "ings", "ing", "edly", "ies", "ied", "ed", "es", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Lower-cased, lightly stemmed words that carry content (numbers included)."""
    return {
        _stem(w)
        for w in (m.group(0).lower() for m in _WORD.finditer(text))
        if w not in STOPWORDS and (len(w) > 2 or w.isdigit())
    }


def numbers(text: str) -> set[str]:
    """Numbers stated in ``text``, normalised (``1,200`` -> ``1200``)."""
    return {n.replace(",", "") for n in re.findall(r"\d+(?:[.,]\d+)*", text)}


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer (citation markers kept)."""
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


@dataclass
class SentenceSupport:
    """How well one answer sentence is supported, and by which passage (1-based)."""

    sentence: str
    support: float
    passage: int | None
    missing_numbers: list[str] = field(default_factory=list)
    supported: bool = True


def check_grounding(answer: str, passages: Sequence[str], min_support: float = 0.5) -> list[SentenceSupport]:
    """Support of every checkable sentence of ``answer`` by ``passages``.

    A sentence citing ``[n]`` is checked against passage n first (any passage may still support
    it); sentences with fewer than three content words and abstentions are not checked.
    """
    passage_words = [content_words(p) for p in passages]
    passage_numbers = [numbers(p) for p in passages]
    results: list[SentenceSupport] = []
    for sentence in split_sentences(answer):
        plain = _CITATION.sub("", sentence)
        words = content_words(plain)
        if len(words) < 3 or _ABSTAIN.search(plain):
            continue
        cited = [int(n) - 1 for n in _CITATION.findall(sentence) if 0 < int(n) <= len(passages)]
        order = cited + [i for i in range(len(passages)) if i not in cited]
        best, best_i, best_missing = 0.0, None, sorted(numbers(plain))
        for i in order:
            share = len(words & passage_words[i]) / len(words)
            missing = sorted(numbers(plain) - passage_numbers[i])
            if (share, -len(missing)) > (best, -len(best_missing)):
                best, best_i, best_missing = share, i, missing
        results.append(
            SentenceSupport(
                sentence=sentence,
                support=round(best, 3),
                passage=None if best_i is None else best_i + 1,
                missing_numbers=best_missing,
                supported=best >= min_support and not best_missing,
            )
        )
    return results


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    words = [m.group(0).lower() for m in _WORD.finditer(text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def system_prompt_overlap(answer: str, system_prompt: str, n: int = 6) -> float:
    """Share of the system prompt's word ``n``-grams that appear in ``answer`` (0 when too short)."""
    prompt = _shingles(system_prompt, n)
    if not prompt:
        return 0.0
    return len(prompt & _shingles(answer, n)) / len(prompt)


def longest_shared_run(answer: str, system_prompt: str, n: int = 6) -> bool:
    """True when ``answer`` repeats at least ``n`` consecutive words of the system prompt."""
    return bool(_shingles(system_prompt, n) & _shingles(answer, n))
