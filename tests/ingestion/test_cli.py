"""``ragd ingest`` and ``ragd worker`` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragd.cli import app
from tests.ingestion import samples


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAGD_ENV", "test")
    monkeypatch.setenv("RAGD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGD_LOG_JSON", "false")
    return tmp_path


def test_ingest_walks_folders_and_summarises(env: Path) -> None:
    docs = env / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "ocean.txt").write_bytes(samples.TEXT)
    (docs / "sub" / "cooking.md").write_bytes(samples.MARKDOWN)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "noise.bin").write_bytes(bytes(range(256)) * 8)
    (docs / ".hidden.txt").write_bytes(samples.TEXT)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(docs), "--collection", "kb"])
    assert result.exit_code == 1, result.output  # some files failed
    out = result.stdout
    assert "ready 2, unchanged 0, failed 2" in out
    assert "the file is empty" in out and "unsupported content type" in out
    assert ".hidden" not in out
    again = runner.invoke(app, ["ingest", str(docs / "ocean.txt"), str(docs / "sub"), "-c", "kb"])
    assert again.exit_code == 0, again.output
    assert "ready 0, unchanged 2, failed 0" in again.stdout


def test_ingest_and_worker_refuse_bad_setups(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["ingest", str(env / "nope"), "-c", "kb"])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    worker = runner.invoke(app, ["worker"])
    assert worker.exit_code == 2 and "RAGD_QUEUE__BACKEND is 'inprocess'" in worker.output
    monkeypatch.setenv("RAGD_QUEUE__BACKEND", "celery")
    monkeypatch.setenv("RAGD_QUEUE__REDIS_URL", "redis://127.0.0.1:1/0")
    worker = runner.invoke(app, ["worker"])
    assert worker.exit_code == 2 and "RAGD_QUEUE__REDIS_URL: cannot reach the broker" in worker.output
