"""``ragd keys create`` bootstraps the first admin: the key alone on stdout, and it works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from ragd.api.app import create_app
from tests.security.conftest import security_settings


def _ragd(args: list[str], data_dir: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGD_")}
    env |= {"RAGD_DATA_DIR": str(data_dir), "RAGD_LOG_JSON": "false"}
    return subprocess.run(
        [sys.executable, "-m", "ragd.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_keys_create_prints_only_the_key(tmp_path: Path) -> None:
    r = _ragd(["keys", "create", "--role", "admin", "--tenant", "acme"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ragd_")
    key = lines[0]
    settings = security_settings(tmp_path)
    with TestClient(create_app(settings)) as client:  # type: ignore[arg-type]
        me = client.get("/v1/auth/whoami", headers={"X-API-Key": key}).json()
        assert me["role"] == "admin" and me["tenant"] == "acme"
        # The bootstrap admin can create users and collections at once.
        assert (
            client.post("/v1/users", json={"username": "ops"}, headers={"X-API-Key": key}).status_code == 201
        )
    listed = _ragd(["keys", "list", "--tenant", "acme"], tmp_path)
    assert key not in listed.stdout and key[:17] in listed.stdout
    key_id = listed.stdout.split()[0]
    assert _ragd(["keys", "revoke", key_id], tmp_path).returncode == 0
    assert "inactive" in _ragd(["keys", "list", "--tenant", "acme"], tmp_path).stdout


def test_keys_create_bad_input_is_one_line(tmp_path: Path) -> None:
    for args in (["--role", "root"], ["--tenant", "../etc"], ["--tenant", ""], ["--scope", "everything"]):
        r = _ragd(["keys", "create", *args], tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stdout == "" and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _ragd(["keys", "revoke", "nope"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_users_create_reads_password_from_stdin(tmp_path: Path) -> None:
    r = _ragd(
        ["users", "create", "root", "--role", "admin", "--tenant", "acme", "--password-stdin"],
        tmp_path,
        stdin="a long enough password\n",
    )
    assert r.returncode == 0, r.stderr
    with TestClient(create_app(security_settings(tmp_path))) as client:  # type: ignore[arg-type]
        tok = client.post(
            "/v1/auth/token",
            json={"tenant": "acme", "username": "root", "password": "a long enough password"},
        )
        assert tok.status_code == 200
    short = _ragd(["users", "create", "x", "--password-stdin"], tmp_path, stdin="short\n")
    assert short.returncode == 2 and "10 to 1024" in short.stderr
