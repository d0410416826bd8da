"""ragas scoring with the non-LLM metrics (no judge configured), stored as a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragd.db import build_engine, migrate
from ragd.errors import BadRequest
from ragd.evals.ragas_eval import load_samples, run_ragas_eval
from tests.conftest import make_settings

ROWS = [
    {
        "id": "good",
        "question": "What is the capital of France?",
        "answer": "The capital of France is Paris.",
        "contexts": ["Paris is the capital and largest city of France.", "Berlin is in Germany."],
        "reference": "Paris is the capital of France.",
        "reference_contexts": ["Paris is the capital and largest city of France."],
        "latency_ms": 120.0,
    },
    {
        "id": "bad",
        "question": "Who wrote Hamlet?",
        "answer": "Bananas are yellow.",
        "contexts": ["Bananas are rich in potassium."],
        "reference": "William Shakespeare wrote Hamlet.",
        "reference_contexts": ["Hamlet is a tragedy written by William Shakespeare."],
    },
]


def test_non_llm_metrics_separate_good_from_bad_answers(tmp_path: Path) -> None:
    data = tmp_path / "answers.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    settings = make_settings(tmp_path)
    engine = build_engine(settings)
    migrate(engine)
    run = run_ragas_eval(engine, settings, data)
    items = {it["id"]: it for it in run.items}
    for metric in ("context_precision", "context_recall", "rouge_l", "string_similarity"):
        assert items["good"][metric] > items["bad"][metric], metric
    assert "faithfulness" not in run.metrics  # no judge configured: LLM metrics are not run
    assert run.metrics["rouge_l_n"] == 2 and run.config["dataset"]["rows"] == 2
    engine.dispose()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "has no rows"),
        ("not json\n", "not valid JSON"),
        ("[1]\n", "expected a JSON object"),
        ('{"answer": "x"}\n', "question"),
        ('{"question": "q", "answer": "a", "contexts": "one string"}\n', "contexts"),
        ('{"question": "' + "x" * 200_000 + '", "answer": "a"}\n', "question"),
    ],
)
def test_bad_input_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    with pytest.raises(BadRequest, match=message):
        load_samples(path)


def test_binary_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BadRequest, match="UTF-8"):
        load_samples(path)
    with pytest.raises(BadRequest, match="cannot read"):
        load_samples(tmp_path / "missing.jsonl")
