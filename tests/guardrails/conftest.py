"""Shared, expensive guard fixtures: the real MiniLM and the packaged injection classifier."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragd.guardrails.service import GuardService
from tests.conftest import make_settings


@pytest.fixture(scope="session")
def guard_service(tmp_path_factory: pytest.TempPathFactory) -> GuardService:
    """One service for the session: loads MiniLM and the classifier packaged with ragd."""
    data_dir: Path = tmp_path_factory.mktemp("guards")
    return GuardService(make_settings(data_dir))
