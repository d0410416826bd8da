"""Live deployments for the reliability tests (one per module: starting ragd takes a while)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def need_binaries(*names: str) -> None:
    """Skip unless every named program is installed."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def need_postgres_binaries() -> None:
    if not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a test volume needs root")
