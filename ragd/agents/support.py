"""Is an answer supported by the passages it cites? (The agent's own check before it answers.)

Each sentence of the answer must be backed by its cited passages: the words it adds beyond the
question must appear there (a small model copies its facts or invents them; copying is what a
grounded answer looks like). This is deliberately lexical and cheap: the guardrails' grounding
guard runs after it on the finished answer as an independent check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ragd.agents.evidence import STOPWORDS, content_words, question_entities, words
from ragd.retrieval.sentences import split_sentences

_CITATION = re.compile(r"\[(\d{1,2})\]")
_YES_NO = {"yes", "no"}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
#: Share of an answer sentence's new words that must occur in its cited passages.
MIN_SUPPORT = 0.75


@dataclass(frozen=True)
class SentenceSupport:
    """How well one answer sentence is backed."""

    sentence: str
    cited: list[int]
    score: float
    supported: bool
    missing: list[str]


def cited_numbers(text: str) -> list[int]:
    """Passage numbers cited as ``[n]``, in order of first appearance."""
    seen: list[int] = []
    for match in _CITATION.finditer(text):
        n = int(match.group(1))
        if n not in seen:
            seen.append(n)
    return seen


def strip_citations(text: str) -> str:
    """``text`` without ``[n]`` markers."""
    return " ".join(_CITATION.sub("", text).split()).replace(" .", ".").replace(" ,", ",")


def _stem(word: str) -> str:
    # Plurals and possessives differ between a paraphrase and its source; nothing subtler.
    for suffix in ("'s", "\u2019s", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in words(text)}


def _share(new: set[str], text: str) -> float:
    """Share of the words ``new`` that ``text`` holds (stemmed)."""
    source = _stems(text)
    return sum(1 for w in new if _stem(w) in source) / len(new) if new else 0.0


def backs(answer: str, passage: str, question: str) -> bool:
    """Whether ``passage`` holds any word ``answer`` adds to the question (or, for an answer
    that only picks something the question names, any word of the answer)."""
    said = content_words(strip_citations(answer))
    return _share((said - content_words(question)) or said, passage) > 0


def sentence_support(sentence: str, passages: Sequence[str], question: str) -> tuple[float, list[str]]:
    """Share of the sentence's new content words found in ``passages``, and the missing ones."""
    body = strip_citations(sentence)
    new = content_words(body) - content_words(question)
    if not new:
        # Restates the question or is a bare yes/no: backed if passages exist at all.
        has_claim = bool(set(words(body)) & _YES_NO) or bool(content_words(body))
        return (1.0 if passages and has_claim else 0.0), []
    source = {_stem(w) for p in passages for w in words(p)}
    missing = sorted(w for w in new if _stem(w) not in source and w not in STOPWORDS)
    # A number the passages do not state is an invented fact however many words match (the
    # output grounding guard refuses it too): no partial credit.
    stated = {n for p in passages for n in _numbers(p)}
    if any(n not in stated for n in _numbers(body) - _numbers(question)):
        return 0.0, missing or sorted(_numbers(body) - stated)
    return 1.0 - len(missing) / len(new), missing


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def check_answer(
    answer: str, evidence: dict[int, str], question: str, *, threshold: float = MIN_SUPPORT
) -> list[SentenceSupport]:
    """Check every sentence of ``answer`` against the passages it cites (all passages if none)."""
    results: list[SentenceSupport] = []
    for sentence in split_sentences(answer) or [answer]:
        cited = [n for n in cited_numbers(sentence) if n in evidence]
        if not cited:
            cited = [n for n in cited_numbers(answer) if n in evidence]
        texts = [evidence[n] for n in cited]
        score, missing = sentence_support(sentence, texts, question)
        results.append(SentenceSupport(sentence, cited, score, bool(cited) and score >= threshold, missing))
    return results


def supporting_passages(answer: str, evidence: dict[int, str], question: str) -> list[int]:
    """The passages that back an uncited answer best (used to attach citations to it)."""
    said = content_words(strip_citations(answer))
    new = said - content_words(question)
    if not new:
        # A bare pick of one thing the question names ("Who is older, A or B?" -> "B") is backed
        # by the passages about it; any other restatement of the question claims nothing.
        if not said or not any(said == content_words(e) for e in question_entities(question)):
            return []
        new = said
    best = [(share, number) for number, text in evidence.items() if (share := _share(new, text)) > 0]
    best.sort(key=lambda item: (-item[0], item[1]))
    if not best:
        return []
    top = best[0][0]
    chosen = [n for share, n in best if share >= top - 1e-9][:2]
    if top < 1.0:
        # No single passage holds every word: the answer may combine two of them (multi-hop).
        covered = set().union(*(_stems(evidence[n]) for n in chosen))
        for _, n in best:
            if n not in chosen and any(
                _stem(w) not in covered and _stem(w) in _stems(evidence[n]) for w in new
            ):
                chosen.append(n)
                break
    return sorted(chosen)
