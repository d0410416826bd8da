"""The agent's prompts: short on purpose (every prompt token costs prefill time, DESIGN.md §9).

The system prompt never changes between requests, so llama.cpp reuses its KV cache (the
prompt prefix) and only the evidence and question are read for each turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from ragd.agents.evidence import content_words
from ragd.agents.state import Passage
from ragd.llm_serving.base import Message
from ragd.retrieval.sentences import REMOVED_MARKER, split_sentences

SYSTEM_PROMPT = (
    "You answer questions using only the numbered evidence. "
    "Reply with one short sentence and cite the evidence number like [1]."
)

CHITCHAT_PROMPT = (
    "You are ragd, a helpful assistant for questions about a document collection. Reply briefly."
)

#: Prior turns kept in the prompt (each costs prefill; follow-ups mostly need the last exchange).
HISTORY_TURNS = 2


def evidence_block(evidence: Sequence[Passage]) -> str:
    """The numbered evidence lines shown to the model."""
    return "\n".join(f"[{p.number}] {p.title}: {p.evidence_text}" for p in evidence)


def answer_messages(
    question: str, evidence: Sequence[Passage], history: Sequence[Message] = ()
) -> list[Message]:
    """Messages that ask for a cited answer to ``question`` from ``evidence``."""
    recent = [m for m in history if m.role in ("user", "assistant")][-2 * HISTORY_TURNS :]
    user = f"Evidence:\n{evidence_block(evidence)}\n\nQuestion: {question}"
    return [Message("system", SYSTEM_PROMPT), *recent, Message("user", user)]


def chitchat_messages(message: str, history: Sequence[Message] = ()) -> list[Message]:
    """Messages for a turn that needs no knowledge (greetings, thanks)."""
    recent = [m for m in history if m.role in ("user", "assistant")][-2 * HISTORY_TURNS :]
    return [Message("system", CHITCHAT_PROMPT), *recent, Message("user", message)]


def planner_messages(question: str) -> list[Message]:
    """The user turn for a model-chosen tool call (the tool list comes from the tool-call helper)."""
    return [Message("user", f"Question: {question}\nPick the tool that helps answer it.")]


def quotable(passage: Passage) -> list[str]:
    """The sentences of ``passage`` an answer may quote: never the context guard's marker."""
    sentences = passage.sentences or split_sentences(passage.hit.text)
    return [s for s in sentences if REMOVED_MARKER not in s]


def quotable_passages(evidence: Sequence[Passage], limit: int) -> list[tuple[Passage, list[str]]]:
    """The first ``limit`` passages that have a quotable sentence, with those sentences."""
    # Lazily: splitting stops once ``limit`` passages are found, not after every passage.
    return list(islice(((p, sentences) for p in evidence if (sentences := quotable(p))), limit))


def extractive_answer(evidence: Sequence[Passage]) -> tuple[str, list[int]]:
    """The labelled answer built without a model (every backend is down) and the passages it
    quotes; ``("", [])`` when no passage has a quotable sentence (the agent abstains then)."""
    quotes = quotable_passages(evidence, 2)
    if not quotes:
        return "", []
    lines = [f"{' '.join(sentences)} [{p.number}]" for p, sentences in quotes]
    return "[Extractive answer: the language model is unavailable] " + " ".join(lines), [
        p.number for p, _ in quotes
    ]


def quoted_answer(
    question: str,
    evidence: Sequence[Passage],
    passages: int = 2,
    chains: dict[int, list[int]] | None = None,
) -> tuple[str, list[int]]:
    """An answer made of cited evidence: the top passage's evidence sentences (the ones that
    best match the question), then the next passage's best-matching sentence when it adds
    words the first did not have (the second hop of a multi-hop question). A quoted passage
    also cites the passages that led to it (``chains``, see ``nodes.provenance``)."""
    asked = content_words(question)
    parts: list[str] = []
    cited: list[int] = []
    covered: set[str] = set()
    quotes = quotable_passages(evidence, passages)
    for passage, sentences in quotes:
        quote = sentences if not parts else [max(sentences, key=lambda s: len(asked & content_words(s)))]
        words = set().union(*(content_words(s) for s in quote))
        if parts and not (words - covered - asked):
            continue
        covered |= words
        chain = [n for n in (chains or {}).get(passage.number, []) if n not in cited and n != passage.number]
        marks = [passage.number, *chain]
        parts.append(f"{' '.join(q.rstrip() for q in quote)} {''.join(f'[{n}]' for n in marks)}")
        cited += [n for n in marks if n not in cited]
    return " ".join(parts), cited
