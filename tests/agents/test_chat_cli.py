"""``ragd chat`` and ``ragd eval qa`` as a user runs them (subprocesses), bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import run

DATASET = Path(__file__).resolve().parents[3] / "shared" / "data" / "hotpotqa" / "dev100.jsonl"


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "RAGD_DATA_DIR": str(tmp_path),
        "RAGD_LOG_JSON": "false",
        "RAGD_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }


def test_chat_answers_arithmetic_and_abstains_on_an_empty_knowledge_base(tmp_path: Path) -> None:
    r = run(["chat", "What is 12 * 7?"], _env(tmp_path), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "= 84" in r.stdout
    r = run(["chat", "Who designed the Zorblax Bridge?"], _env(tmp_path), timeout=600)
    assert r.returncode == 0 and "could not find this in the knowledge base" in r.stdout


@pytest.mark.parametrize("question", ["", "   "])
def test_chat_refuses_an_empty_question(tmp_path: Path, question: str) -> None:
    r = run(["chat", question], _env(tmp_path))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "empty" in r.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("", "no questions"),
        ("{not json\n", "not JSON"),
        ('{"id": "1"}\n', "needs the fields"),
        ('{"id": "1", "question": "", "answers": [], "contexts": []}\n', "non-empty"),
        ('{"id": "1", "question": "q", "answers": ["a"], "contexts": [5]}\n', "contexts"),
    ],
)
def test_eval_qa_bad_datasets_fail_with_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "data.jsonl"
    if content is not None:
        path.write_text(content)
    r = run(["eval", "qa", "--dataset", str(path)], _env(tmp_path))
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_eval_qa_rejects_a_bad_limit(tmp_path: Path) -> None:
    r = run(["eval", "qa", "--dataset", str(DATASET), "--limit", "0"], _env(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.slow
def test_eval_qa_end_to_end_on_one_question(tmp_path: Path) -> None:
    out = tmp_path / "qa.json"
    r = run(
        ["eval", "qa", "--dataset", str(DATASET), "--limit", "1", "--json", str(out)],
        _env(tmp_path),
        timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    figures = json.loads(out.read_text())
    for key in (
        "questions",
        "em",
        "f1",
        "context_recall",
        "grounded_rate",
        "abstain_rate",
        "latency_p50_ms",
        "latency_p95_ms",
    ):
        assert key in figures
    assert figures["questions"] == 1 and len(figures["items"]) == 1
    item = figures["items"][0]
    # Where context recall is lost: cited <= shown to the model <= found by the searches.
    assert item["context_recall"] <= item["evidence_recall"] <= item["retrieved_recall"]
    assert len(item["gold_ranks"]) == 2 and figures["retrieved_recall"] == item["retrieved_recall"]
