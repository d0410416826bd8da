"""Grounded-answer SFT records from HotpotQA-format data, and the prompt they share with serving.

A record teaches the model to answer a question from numbered passages with a short answer that
cites its passage: ``{"messages": [system, user(passages + question), assistant("answer [n]")]}``.
Passages are picked per question by lexical overlap with the question (a deterministic stand-in
for retrieval that needs no index), capped in number and length because prefill dominates
latency on CPU (DESIGN.md §9). The benchmark builds its prompts with the same functions, so the
base model and the adapter see the same passages.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragd.errors import BadRequest

SYSTEM_PROMPT = (
    "Answer the question using only the numbered passages. Reply with a short answer "
    "(a few words) followed by the number of the passage that supports it, like: Paris [2]"
)
_WORD = re.compile(r"[A-Za-z0-9]+")
_STOPWORDS = frozenset(
    "a an the of in on at to for by with from and or is was were are be been who what which when "
    "where how that this these those as his her their its it did does do".split()
)
MAX_LINE_CHARS = 2_000_000


@dataclass(frozen=True)
class QAExample:
    """One HotpotQA-format question with its candidate passages."""

    id: str
    question: str
    answers: list[str]
    passages: list[dict[str, Any]]  # {"title", "text", "supporting"?}


def read_hotpotqa(path: Path, limit: int | None = None) -> Iterator[QAExample]:
    """Examples of a HotpotQA-format JSONL file; a malformed line is a one-line BadRequest."""
    if not path.is_file():
        raise BadRequest(f"{path} is not a file")
    with path.open(encoding="utf-8", errors="strict") as fh:
        for n, line in enumerate(fh, start=1):
            if limit is not None and n > limit:
                return
            if not line.strip():
                continue
            if len(line) > MAX_LINE_CHARS:
                raise BadRequest(f"{path.name}:{n}: line longer than {MAX_LINE_CHARS} characters")
            try:
                row = json.loads(line)
                ex = QAExample(
                    id=str(row["id"]),
                    question=str(row["question"]).strip(),
                    answers=[str(a) for a in row["answers"]],
                    passages=[
                        {
                            "title": str(c["title"]),
                            "text": str(c["text"]),
                            "supporting": bool(c.get("supporting")),
                        }
                        for c in row["contexts"]
                    ],
                )
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BadRequest(
                    f"{path.name}:{n}: not a HotpotQA record ({type(exc).__name__}: {exc})"
                ) from None
            if not ex.question or not ex.answers or not ex.passages:
                raise BadRequest(f"{path.name}:{n}: empty question, answers or contexts")
            yield ex


def _terms(text: str) -> set[str]:
    return {w for w in (t.lower() for t in _WORD.findall(text)) if w not in _STOPWORDS}


def select_passages(ex: QAExample, k: int = 3, max_chars: int = 400) -> list[dict[str, Any]]:
    """The ``k`` passages with the most question terms in title + text, each cut to ``max_chars``."""
    q = _terms(ex.question)
    scored = sorted(
        enumerate(ex.passages),
        key=lambda ip: (-len(q & _terms(ip[1]["title"] + " " + ip[1]["text"])), ip[0]),
    )
    return [{**p, "text": p["text"][:max_chars]} for _, p in scored[:k]]


def user_prompt(question: str, passages: list[dict[str, Any]]) -> str:
    """The user turn: numbered passages, then the question."""
    lines = [f"[{i}] {p['title']}: {p['text']}" for i, p in enumerate(passages, start=1)]
    return "Passages:\n" + "\n".join(lines) + f"\n\nQuestion: {question}"


def _cited(answer: str, passages: list[dict[str, Any]]) -> int | None:
    low = answer.lower()
    for i, p in enumerate(passages, start=1):
        if low in p["text"].lower():
            return i
    for i, p in enumerate(passages, start=1):
        if p.get("supporting"):
            return i
    return None


def sft_record(ex: QAExample, k: int = 3, max_chars: int = 400) -> dict[str, Any]:
    """One chat-format training record for ``ex``."""
    passages = select_passages(ex, k, max_chars)
    answer = ex.answers[0]
    cite = _cited(answer, passages)
    target = f"{answer} [{cite}]" if cite is not None else answer
    return {
        "id": ex.id,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(ex.question, passages)},
            {"role": "assistant", "content": target},
        ],
    }


def split_of(example_id: str, eval_percent: int) -> str:
    """``"eval"`` or ``"train"``, stable per id (a hash split, so reruns agree)."""
    bucket = int(hashlib.sha256(example_id.encode()).hexdigest(), 16) % 100
    return "eval" if bucket < eval_percent else "train"


def make_sft(
    dataset: Path,
    out: Path,
    *,
    k: int = 3,
    max_chars: int = 400,
    eval_percent: int = 0,
    limit: int | None = None,
) -> dict[str, int]:
    """Write SFT records for the train split of ``dataset`` to ``out``; returns counts.

    With ``eval_percent`` > 0 that share of ids (hash split) is held out and not written, so the
    same file can be used for training and for an honest held-out evaluation.
    """
    if not 0 <= eval_percent < 100:
        raise BadRequest("eval_percent must be in [0, 100)")
    if not 1 <= k <= 10 or not 50 <= max_chars <= 5000:
        raise BadRequest("passages must be 1-10 and passage_chars 50-5000")
    written = held_out = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for ex in read_hotpotqa(dataset, limit):
            if eval_percent and split_of(ex.id, eval_percent) == "eval":
                held_out += 1
                continue
            fh.write(json.dumps(sft_record(ex, k, max_chars)) + "\n")
            written += 1
    if written == 0:
        raise BadRequest(f"{dataset.name} produced no training records")
    return {"written": written, "held_out": held_out}
