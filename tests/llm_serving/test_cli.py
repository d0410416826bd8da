"""``ragd models|llm|finetune`` commands, including bad input (one line, exit 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragd.cli import app

runner = CliRunner()


@pytest.fixture
def env(prepared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAGD_ENV", "test")
    monkeypatch.setenv("RAGD_DATA_DIR", str(prepared_data_dir))
    monkeypatch.setenv("RAGD_DB__URL", f"sqlite:///{tmp_path / 'ragd.db'}")
    return prepared_data_dir


def _ok(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def _bad(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) <= 12
    return r.output


def test_prepare_registers_and_vllm_args_print_the_command(env: Path) -> None:
    assert "prepared smollm2" in _ok("models", "prepare", "smollm2")
    assert "already prepared" in _ok("models", "prepare", "smollm2")
    rows = json.loads(_ok("models", "list", "--json"))
    assert [(r["name"], r["kind"], r["stage"]) for r in rows] == [("smollm2", "prepared", "production")]
    cmd = json.loads(
        _ok("llm", "vllm-args", "--json", "--gpu-memory-utilization", "0.5", "--quantization", "awq")
    )
    assert cmd[cmd.index("--model") + 1] == str((env / "models" / "smollm2").resolve())
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.5" and "--enable-lora" in cmd
    assert "--lora-modules" not in cmd  # no adapter in production yet
    line = _ok("llm", "vllm-args")
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True ")


def test_register_promote_archive_cycle(env: Path) -> None:
    from ragd.config import Settings
    from ragd.db.engine import build_engine, migrate
    from ragd.llm_serving.model_registry import register_model

    engine = build_engine(Settings())
    migrate(engine)
    adapter = env / "fake-adapter"
    adapter.mkdir(exist_ok=True)
    register_model(engine, name="qa-lora", kind="lora", path=adapter, base_model="smollm2")
    register_model(engine, name="qa-lora", kind="lora", path=adapter, base_model="smollm2")
    engine.dispose()
    assert "qa-lora v2 is in production" in _ok("models", "promote", "qa-lora")
    assert json.loads(_ok("models", "show", "qa-lora", "--version", "2"))["stage"] == "production"
    assert "archived" in _ok("models", "archive", "qa-lora", "1")
    _ok("models", "prepare", "smollm2")
    cmd = json.loads(_ok("llm", "vllm-args", "--json"))
    assert f"qa-lora={adapter}" in cmd


@pytest.mark.parametrize(
    "args",
    [
        ["models", "show", "nope"],
        ["models", "show", ""],
        ["models", "show", "x" * 5000],
        ["models", "show", "../../etc/passwd"],
        ["models", "promote", "nope", "3"],
        ["models", "archive", "nope", "1"],
        ["models", "list", "--kind", "rocket"],
        ["models", "list", "--stage", "live"],
        ["models", "prepare", "gpt-5"],
        ["llm", "vllm-args", "--gpu-memory-utilization", "7"],
        ["llm", "vllm-args", "--base", "nonexistent"],
    ],
)
def test_bad_model_commands_fail_in_one_line(env: Path, args: list[str]) -> None:
    _bad(*args)


def test_make_sft_and_its_bad_input(env: Path, tmp_path: Path) -> None:
    src = tmp_path / "qa.jsonl"
    row = {
        "id": "q1",
        "question": "Which city is the capital of France?",
        "answers": ["Paris"],
        "contexts": [
            {"title": "France", "text": "Paris is the capital of France.", "supporting": True},
            {"title": "Spain", "text": "Madrid is the capital of Spain."},
        ],
    }
    src.write_text(json.dumps(row) + "\n")
    out = tmp_path / "sft.jsonl"
    assert "wrote 1 records" in _ok("finetune", "make-sft", "--dataset", str(src), "--out", str(out))
    rec = json.loads(out.read_text())
    assert rec["messages"][-1] == {"role": "assistant", "content": "Paris [1]"}
    assert "[1] France: Paris is the capital" in rec["messages"][1]["content"]

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    junk = tmp_path / "junk.jsonl"
    junk.write_text("{not json\n")
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_text(json.dumps({"id": 1, "question": "", "answers": [], "contexts": []}) + "\n")
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for bad in (empty, junk, hostile, binary, tmp_path / "missing.jsonl"):
        _bad("finetune", "make-sft", "--dataset", str(bad), "--out", str(tmp_path / "o.jsonl"))
    _bad("finetune", "make-sft", "--dataset", str(src), "--hold-out", "100")


def test_finetune_llm_refuses_bad_data(env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    _bad("finetune", "llm", "--data", str(bad))
    _bad("finetune", "llm", "--data", str(tmp_path / "missing.jsonl"))
    _bad("finetune", "llm", "--data", str(bad), "--rank", "3")
    _bad("finetune", "llm", "--data", str(bad), "--base", "unprepared")
