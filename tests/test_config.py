"""Settings: environment parsing, validation and masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ragd.config import DEV_SECRET, Settings


def test_nested_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAGD_DB__URL", "postgresql+psycopg://u:pw@db:5432/ragd")
    monkeypatch.setenv("RAGD_QUEUE__WORKERS", "3")
    monkeypatch.setenv("RAGD_LLM__CHAIN", '["llamacpp"]')
    s = Settings()
    assert s.data_dir == tmp_path
    assert s.queue.workers == 3
    assert s.database_url == "postgresql+psycopg://u:pw@db:5432/ragd"


def test_defaults_are_embedded(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.database_url.startswith("sqlite:///")
    assert s.qdrant.mode == "local" and s.qdrant_path == tmp_path / "qdrant"
    assert s.queue.backend == "inprocess"
    assert s.llm.chain == ["llamacpp"]


def test_unknown_backend_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGD_QUEUE__BACKEND", "kafka")
    with pytest.raises(ValidationError) as err:
        Settings()
    text = str(err.value)
    assert "queue.backend" in text and "inprocess" in text and "celery" in text


def test_embedding_bf16_is_auto_on_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().embedding.bf16 == "auto"
    monkeypatch.setenv("RAGD_EMBEDDING__BF16", "yes")
    with pytest.raises(ValidationError) as err:
        Settings()
    assert "embedding.bf16" in str(err.value) and "'auto', 'on' or 'off'" in str(err.value)


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "://"])
def test_bad_database_url(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(db={"url": url})


def test_dev_secret_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="development secret"):
        Settings(env="production")
    ok = Settings(env="production", auth={"secret_key": "a-real-secret-of-some-length"})
    assert ok.env == "production"


def test_unknown_top_level_field_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(nonsense=1)  # type: ignore[call-arg]


def test_masked_hides_secrets(tmp_path: Path) -> None:
    s = Settings(
        data_dir=tmp_path,
        db={"url": "postgresql+psycopg://u:hunter2@db/ragd"},
        auth={"secret_key": "topsecretvalue"},
    )
    dumped = str(s.masked())
    assert "hunter2" not in dumped and "topsecretvalue" not in dumped and DEV_SECRET not in dumped
    assert "***" in dumped


def test_server_mode_needs_url() -> None:
    with pytest.raises(ValidationError, match=r"qdrant\.url"):
        Settings(qdrant={"mode": "server"})
