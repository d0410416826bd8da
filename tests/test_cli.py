"""The ragd CLI, run as a user runs it (a subprocess), including its start-up errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

RAGD = [sys.executable, "-m", "ragd.cli"]


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RAGD_")} | env
    return subprocess.run(
        [*RAGD, *args], env=full, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_version() -> None:
    r = run(["--version"], {})
    assert r.returncode == 0 and r.stdout.startswith("ragd ")


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    r = run(
        ["config", "show"],
        {
            "RAGD_DATA_DIR": str(tmp_path),
            "RAGD_DB__URL": "postgresql+psycopg://u:hunter2@db/x",
            "RAGD_AUTH__SECRET_KEY": "do-not-print-me",
        },
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["db"]["url"] == "postgresql+psycopg://u:***@db/x"
    assert "hunter2" not in r.stdout and "do-not-print-me" not in r.stdout


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RAGD_QUEUE__BACKEND": "kafka"}, "RAGD_QUEUE__BACKEND"),
        ({"RAGD_LLM__CHAIN": '["gpt"]'}, "RAGD_LLM__CHAIN"),
        ({"RAGD_DB__URL": "definitely not a url"}, "RAGD_DB__URL"),
        ({"RAGD_API__PORT": "99999"}, "RAGD_API__PORT"),
        ({"RAGD_ENV": "production"}, "development secret"),
        ({"RAGD_DB__URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}, "RAGD_DB__URL: cannot connect"),
        ({"RAGD_EMBEDDING__ONNX_CACHE": "/dev/null/onnx"}, "RAGD_EMBEDDING__ONNX_CACHE"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    r = run(["serve"], {"RAGD_DATA_DIR": str(tmp_path), **env})
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0] and "Traceback" not in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_becomes_ready_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGD_")}
    env |= {"RAGD_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [*RAGD, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        assert all(c["ok"] for c in ready.json()["components"].values())
        # A second server on the same local Qdrant path is refused with one clear line.
        second = run(["serve", "--port", str(_free_port())], {"RAGD_DATA_DIR": str(tmp_path)})
        assert second.returncode == 2 and "RAGD_QDRANT__PATH" in second.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells the signal.
    assert proc.returncode in (0, -15)
    lines = proc.stderr.read().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and len(records) == len(lines), "every log line is a JSON object"
    assert any(r["message"] == "Application shutdown complete." for r in records)
