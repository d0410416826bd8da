"""End-to-end QA evaluation on HotpotQA-format data (``ragd eval qa``).

Every question's paragraphs go through the real ingestion pipeline (parse, chunk, embed, index)
into a temporary store and collection; every question goes through the full chat path (input
guards, agent, output guards), streamed, so one pass measures time to first token and the whole
turn. Metrics:

- ``em`` / ``f1``: SQuAD/HotpotQA answer normalisation, on the answer without citation markers;
- ``context_recall``: share of the gold supporting paragraphs among the passages the answer cites;
- ``grounded_rate``: share of answers whose every sentence is supported by a cited passage, judged
  by the guardrails' grounding check (an abstention claims nothing and counts as grounded);
- ``evidence_recall`` / ``retrieved_recall``: the same share among the passages the model saw, and
  among every passage the turn's searches found (where ``context_recall`` is lost);
- ``abstain_rate``, ``latency_p50_ms`` / ``latency_p95_ms`` (whole turn), ``ttft_p50_ms``.
"""

from __future__ import annotations

import asyncio
import collections
import html
import json
import logging
import re
import string
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragd.config import Settings
from ragd.errors import BadRequest

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("id", "question", "answers", "contexts")
MAX_QUESTIONS = 100_000
PROGRESS_FIELDS = (
    "id",
    "em",
    "f1",
    "context_recall",
    "grounded",
    "abstained",
    "blocked",
    "latency_ms",
    "ttft_ms",
)


@dataclass(frozen=True)
class QAItem:
    """One HotpotQA-format question."""

    id: str
    question: str
    answers: list[str]
    contexts: list[dict[str, Any]]  # {"id", "title", "text", "supporting"}


def load_dataset(path: Path, limit: int | None = None) -> list[QAItem]:
    """Questions from a JSONL file; a bad line is a :class:`BadRequest` naming the line."""
    items: list[QAItem] = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadRequest(f"{path}:{n}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or any(k not in row for k in REQUIRED_FIELDS):
                raise BadRequest(f"{path}:{n}: needs the fields {', '.join(REQUIRED_FIELDS)}")
            contexts = row["contexts"]
            if not isinstance(contexts, list) or not all(
                isinstance(c, dict) and isinstance(c.get("text"), str) and isinstance(c.get("id"), str)
                for c in contexts
            ):
                raise BadRequest(f"{path}:{n}: contexts must be objects with id and text")
            if not isinstance(row["question"], str) or not row["question"].strip():
                raise BadRequest(f"{path}:{n}: question must be a non-empty string")
            answers = row["answers"] if isinstance(row["answers"], list) else [row["answers"]]
            items.append(QAItem(str(row["id"]), row["question"], [str(a) for a in answers], contexts))
            if limit is not None and len(items) >= limit:
                break
            if len(items) > MAX_QUESTIONS:
                raise BadRequest(f"{path}: more than {MAX_QUESTIONS} questions")
    if not items:
        raise BadRequest(f"{path}: no questions")
    return items


# --- answer metrics (the official HotpotQA/SQuAD normalisation) -----------------------------------


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 as HotpotQA computes it (yes/no/noanswer must match exactly)."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if pred in ("yes", "no", "noanswer") or ref in ("yes", "no", "noanswer"):
        return float(pred == ref)
    p, g = pred.split(), ref.split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def best_over(golds: list[str], prediction: str, metric: Callable[[str, str], float]) -> float:
    return max((metric(prediction, g) for g in golds), default=0.0)


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else 0.0


# --- the run ---------------------------------------------------------------------------------------


def documents_of(items: list[QAItem]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """One document per question: its distinct (context id, title, text) paragraphs."""
    seen: set[str] = set()
    docs: list[tuple[str, list[tuple[str, str, str]]]] = []
    for item in items:
        paragraphs = []
        for c in item.contexts:
            if c["id"] not in seen:
                seen.add(c["id"])
                paragraphs.append((c["id"], str(c.get("title") or ""), c["text"]))
        if paragraphs:
            docs.append((f"q-{item.id}"[:80], paragraphs))
    return docs


def context_of(mapping: dict[tuple[str, str], str], document_id: str, section: str | None) -> str:
    """The dataset paragraph a chunk came from."""
    return mapping.get((document_id, section_key(section)), "")


def section_key(title: str | None) -> str:
    """A section title as the chunker keeps it (HTML entities decoded, whitespace collapsed)."""
    return " ".join(html.unescape(title or "").split())


async def run_qa_eval(
    base: Settings, items: list[QAItem], *, progress: Callable[[str], None] = lambda _: None
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Ingest, ask, score: (metrics, per-item results, configuration facts)."""
    with tempfile.TemporaryDirectory(prefix="ragd-qa-") as tmp:
        settings = base.model_copy(
            update={
                "data_dir": Path(tmp),
                "db": base.db.model_copy(update={"url": None}),
                "qdrant": base.qdrant.model_copy(
                    update={"mode": "local", "path": Path(tmp) / "qdrant", "url": None}
                ),
                # The chat model's re-encoded weights are a cache, not run data: reuse them.
                "llm": base.llm.model_copy(
                    update={
                        "llamacpp": base.llm.llamacpp.model_copy(
                            update={"weights_cache": base.gguf_cache_dir}
                        )
                    }
                ),
            }
        )
        return await _run(settings, items, progress)


async def _run(
    settings: Settings, items: list[QAItem], progress: Callable[[str], None]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    from ragd.agents.chat_service import ChatService, plain_answer
    from ragd.agents.qa_ingest import ingest_paragraphs
    from ragd.db.engine import build_engine, migrate
    from ragd.db.models import Collection, Role
    from ragd.guardrails.grounding import check_grounding
    from ragd.guardrails.service import build_guard_service
    from ragd.llm_serving.registry import build_chat_model
    from ragd.retrieval.qdrant_connection import open_qdrant
    from ragd.retrieval.search_service import SearchService
    from ragd.security.principal import Principal

    engine = build_engine(settings)
    migrate(engine)
    qdrant = open_qdrant(settings)
    llm = build_chat_model(settings)
    try:
        from sqlmodel import Session

        with Session(engine) as s:
            coll = Collection(tenant="eval", name="hotpotqa", created_by="ragd eval qa")
            s.add(coll)
            s.commit()
            s.refresh(coll)
            collection_id = coll.id
        started = time.monotonic()
        doc_to_context = await asyncio.to_thread(
            ingest_paragraphs, settings, engine, qdrant, collection_id, documents_of(items), progress
        )
        ingest_s = time.monotonic() - started
        search = await asyncio.to_thread(SearchService.from_settings, settings, qdrant, engine)
        guards = await asyncio.to_thread(build_guard_service, settings, engine)
        load = getattr(llm, "load", None)
        if load is not None:
            await asyncio.to_thread(load)
        service = ChatService(settings, engine, llm, search, guards=guards, plugins=[])
        principal = Principal(id="eval", tenant="eval", role=Role.admin)
        results: list[dict[str, Any]] = []
        for n, item in enumerate(items, start=1):
            first: list[float] = []
            t0 = time.perf_counter()

            async def on_token(_: str, first: list[float] = first, t0: float = t0) -> None:
                if not first:
                    first.append((time.perf_counter() - t0) * 1000)

            outcome = await service.ask(principal, item.question, on_token=on_token)
            answer = plain_answer(outcome)
            gold = {c["id"] for c in item.contexts if c.get("supporting")}
            cited = {context_of(doc_to_context, c["document_id"], c["section"]) for c in outcome.citations}
            seen = {context_of(doc_to_context, p.hit.document_id, p.hit.section) for p in outcome.evidence}
            found = [context_of(doc_to_context, p.hit.document_id, p.hit.section) for p in outcome.retrieved]
            checks = check_grounding(outcome.answer, [c["text"] for c in outcome.citations])
            # An abstention or a refusal claims nothing, so it is not ungrounded.
            silent = outcome.abstained or outcome.blocked
            grounded = silent or (bool(outcome.citations) and all(c.supported for c in checks))
            results.append(
                {
                    "id": item.id,
                    "question": item.question,
                    "gold": item.answers,
                    "answer": outcome.answer,
                    "em": best_over(item.answers, answer, exact_match) if not silent else 0.0,
                    "f1": best_over(item.answers, answer, f1_score) if not silent else 0.0,
                    "context_recall": len(gold & cited) / len(gold) if gold else 0.0,
                    "evidence_recall": len(gold & seen) / len(gold) if gold else 0.0,
                    "retrieved_recall": len(gold & set(found)) / len(gold) if gold else 0.0,
                    # Where grading found each gold paragraph among the fused passages (-1: not).
                    "gold_ranks": sorted(found.index(g) if g in found else -1 for g in gold),
                    "evidence": [
                        {
                            "number": p.number,
                            "title": p.title,
                            "gold": context_of(doc_to_context, p.hit.document_id, p.hit.section) in gold,
                        }
                        for p in outcome.evidence
                    ],
                    "grounded": float(grounded),
                    "abstained": float(outcome.abstained),
                    "blocked": float(outcome.blocked),
                    "guards": [d for d in outcome.guard_decisions if d.get("action") != "allow"],
                    "latency_ms": outcome.latency_ms,
                    "ttft_ms": round(first[0], 1) if first else None,
                    "backend": outcome.backend,
                    "events": outcome.events,
                    "timings": outcome.timings,
                    "prompt_tokens": outcome.usage.get("prompt_tokens", 0),
                }
            )
            shown = {k: results[-1][k] for k in PROGRESS_FIELDS}
            progress(f"{n}/{len(items)} {json.dumps(shown)} {answer[:60]!r}")
        metrics = summarise(results)
        facts = {
            "ingest_s": round(ingest_s, 1),
            "paragraphs": len(doc_to_context),
            "embedder": search.embedder.name,
            "guards": guards is not None,
            "agent": settings.agents.model_dump(),
        }
        return metrics, results, facts
    finally:
        await llm.aclose()
        qdrant.close()
        engine.dispose()


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The aggregate figures of per-item results."""
    n = len(results)

    def mean(key: str) -> float:
        return round(sum(float(r[key]) for r in results) / n, 4) if n else 0.0

    latencies = [float(r["latency_ms"]) for r in results]
    ttfts = [float(r["ttft_ms"]) for r in results if r.get("ttft_ms") is not None]
    answered = [r for r in results if not r["abstained"] and not r["blocked"]]
    return {
        "questions": n,
        "em": mean("em"),
        "f1": mean("f1"),
        "context_recall": mean("context_recall"),
        "grounded_rate": mean("grounded"),
        "abstain_rate": mean("abstained"),
        "blocked_rate": mean("blocked"),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "ttft_p50_ms": percentile(ttfts, 50),
        "ttft_p95_ms": percentile(ttfts, 95),
        "evidence_recall": mean("evidence_recall"),
        "retrieved_recall": mean("retrieved_recall"),
        "f1_answered": round(sum(r["f1"] for r in answered) / len(answered), 4) if answered else 0.0,
        "grounded_rate_answered": (
            round(sum(r["grounded"] for r in answered) / len(answered), 4) if answered else 0.0
        ),
    }
