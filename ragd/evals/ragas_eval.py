"""ragas scoring of RAG answers, stored as an eval run of kind ``ragas``.

Input is JSONL, one answered question per line::

    {"id": "q1", "question": "...", "answer": "...", "contexts": ["retrieved passage", ...],
     "reference": "gold answer", "reference_contexts": ["gold passage", ...], "latency_ms": 812}

Non-LLM metrics always run (each only on rows that have what it needs):
``context_precision`` / ``context_recall`` (retrieved vs reference contexts by string similarity),
``rouge_l`` and ``string_similarity`` (answer vs reference). With a judge configured
(``RAGD_EVALS__JUDGE_BASE_URL`` + ``RAGD_EVALS__JUDGE_MODEL``, any OpenAI-compatible server such
as vLLM), ``faithfulness`` and ``answer_relevancy`` are LLM-judged as well; answer relevancy
embeds with the packaged MiniLM. ragas usage analytics are off (``RAGAS_DO_NOT_TRACK``).
"""

from __future__ import annotations

import asyncio
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from ragd.config import Settings
from ragd.db.models import EvalRun
from ragd.errors import BadRequest
from ragd.evals.records import capture_config, file_digest, record_eval_run
from ragd.privacy import disable_telemetry

MAX_ROWS = 50_000
MAX_FIELD = 100_000
NON_LLM = ("context_precision", "context_recall", "rouge_l", "string_similarity")
JUDGED = ("faithfulness", "answer_relevancy")


class RagSample(BaseModel):
    """One answered question."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = Field(default=None, max_length=256)
    question: str = Field(min_length=1, max_length=MAX_FIELD)
    answer: str = Field(max_length=MAX_FIELD)
    contexts: list[str] = Field(default_factory=list, max_length=200)
    reference: str | None = Field(default=None, max_length=MAX_FIELD)
    reference_contexts: list[str] | None = Field(default=None, max_length=200)
    latency_ms: float | None = None


def load_samples(path: Path, limit: int | None = None) -> list[RagSample]:
    """Read and validate a JSONL file; :class:`BadRequest` names the first bad line."""
    samples: list[RagSample] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                if len(samples) >= MAX_ROWS or (limit is not None and len(samples) >= limit):
                    break
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise BadRequest(f"{path}:{n}: expected a JSON object")
                    samples.append(RagSample.model_validate(row))
                except json.JSONDecodeError as exc:
                    raise BadRequest(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
                except ValidationError as exc:
                    err = exc.errors()[0]
                    where = ".".join(str(p) for p in err["loc"])
                    raise BadRequest(f"{path}:{n}: {where}: {err['msg']}") from exc
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{path} is not UTF-8 text") from exc
    if not samples:
        raise BadRequest(f"{path} has no rows")
    return samples


@lru_cache(maxsize=1)
def _minilm() -> Any:
    # Loading takes seconds (torch + weights): once per process.
    from sentence_transformers import SentenceTransformer

    from ragd.llm_serving.model_files import minilm_dir

    return SentenceTransformer(str(minilm_dir()), device="cpu")


class _MiniLMEmbedding:
    """ragas embedding interface over the packaged MiniLM (for answer relevancy)."""

    def __new__(cls) -> Any:
        from ragas.embeddings.base import BaseRagasEmbedding

        model = _minilm()

        class Impl(BaseRagasEmbedding):
            def embed_text(self, text: str, **kwargs: Any) -> list[float]:
                return [float(x) for x in model.encode(text, normalize_embeddings=True)]

            async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
                return await asyncio.to_thread(self.embed_text, text)

        return Impl()


def _judge_metrics(settings: Settings) -> dict[str, Any]:
    ev = settings.evals
    if not (ev.judge_base_url and ev.judge_model):
        return {}
    from openai import AsyncOpenAI
    from ragas.llms.base import llm_factory
    from ragas.metrics.collections import AnswerRelevancy, Faithfulness

    client = AsyncOpenAI(
        base_url=ev.judge_base_url,
        api_key=ev.judge_api_key.get_secret_value(),
        timeout=ev.judge_timeout_s,
        max_retries=2,
    )
    llm = llm_factory(ev.judge_model, client=client)
    return {
        "faithfulness": Faithfulness(llm=llm),
        "answer_relevancy": AnswerRelevancy(llm=llm, embeddings=_MiniLMEmbedding()),
    }


def _value(result: Any) -> float | None:
    value = getattr(result, "value", result)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


async def _score_all(
    samples: Sequence[RagSample], judged: Mapping[str, Any], concurrency: int
) -> list[dict[str, Any]]:
    from ragas.dataset_schema import SingleTurnSample
    from ragas.metrics._context_precision import NonLLMContextPrecisionWithReference
    from ragas.metrics._context_recall import NonLLMContextRecall
    from ragas.metrics.collections import NonLLMStringSimilarity, RougeScore

    precision, recall = NonLLMContextPrecisionWithReference(), NonLLMContextRecall()
    rouge, similarity = RougeScore(rouge_type="rougeL"), NonLLMStringSimilarity()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, s: RagSample) -> dict[str, Any]:
        row: dict[str, Any] = {"id": s.id or str(i), "question": s.question[:500], "answer": s.answer[:500]}
        if s.latency_ms is not None:
            row["latency_ms"] = s.latency_ms
        if s.reference_contexts and s.contexts:
            sample = SingleTurnSample(retrieved_contexts=s.contexts, reference_contexts=s.reference_contexts)
            row["context_precision"] = _value(await precision.single_turn_ascore(sample))
            row["context_recall"] = _value(await recall.single_turn_ascore(sample))
        if s.reference is not None:
            row["rouge_l"] = _value(await rouge.ascore(reference=s.reference, response=s.answer))
            row["string_similarity"] = _value(
                await similarity.ascore(reference=s.reference, response=s.answer)
            )
        async with gate:
            if "faithfulness" in judged and s.contexts and s.answer:
                row["faithfulness"] = await _judged(
                    judged["faithfulness"],
                    user_input=s.question,
                    response=s.answer,
                    retrieved_contexts=s.contexts,
                )
            if "answer_relevancy" in judged and s.answer:
                row["answer_relevancy"] = await _judged(
                    judged["answer_relevancy"], user_input=s.question, response=s.answer
                )
        return {k: v for k, v in row.items() if v is not None}

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(samples))))


async def _judged(metric: Any, **kwargs: Any) -> float | None:
    # A judge that times out or returns unparsable output scores that item as missing, not 0.
    try:
        return _value(await metric.ascore(**kwargs))
    except Exception:  # noqa: BLE001 - vendor errors of any kind; the item is left unscored
        return None


def score_samples(
    samples: Sequence[RagSample], settings: Settings
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Per-item ragas scores and their means (metrics with no scored item are left out)."""
    disable_telemetry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        judged = _judge_metrics(settings)
        items = asyncio.run(_score_all(samples, judged, settings.evals.judge_concurrency))
    metrics: dict[str, float] = {}
    for name in (*NON_LLM, *(JUDGED if judged else ()), "latency_ms"):
        values = [it[name] for it in items if name in it]
        if values:
            metrics[name] = sum(values) / len(values)
            metrics[f"{name}_n"] = len(values)
    return metrics, items


def run_ragas_eval(
    engine: Engine, settings: Settings, data: Path, *, tenant: str = "", limit: int | None = None
) -> EvalRun:
    """Score a JSONL file with ragas and store the run."""
    samples = load_samples(data, limit)
    metrics, items = score_samples(samples, settings)
    judge = (
        {"base_url": settings.evals.judge_base_url, "model": settings.evals.judge_model}
        if settings.evals.judge_base_url and settings.evals.judge_model
        else None
    )
    config = capture_config(
        None,
        model=judge and {"judge": judge},
        dataset={"path": str(data), "sha256": file_digest(data), "rows": len(samples)},
        params={"metrics": [*NON_LLM, *(JUDGED if judge else ())]},
    )
    return record_eval_run(
        engine, kind="ragas", config=config, metrics=metrics, items=items, tenant=tenant, created_by="cli"
    )


def ragas_step(
    engine: Engine, spec: Mapping[str, Any], *, cwd: Path, tenant: str, settings: Settings
) -> EvalRun:
    """Suite step ``ragas: {data: file.jsonl, limit: N}`` (paths relative to the suite file)."""
    unknown = set(spec) - {"data", "limit"}
    if unknown or not isinstance(spec.get("data"), str):
        raise BadRequest("a ragas step takes {data: <jsonl path>, limit: <n>}")
    limit = spec.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise BadRequest("ragas.limit must be a positive integer")
    return run_ragas_eval(engine, settings, cwd / spec["data"], tenant=tenant, limit=limit)
