"""The suite must fail when anything reaches beyond loopback."""

import socket

import pytest
from pytest_socket import SocketConnectBlockedError


def test_public_address_is_blocked() -> None:
    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("1.1.1.1", 443), timeout=1)


def test_offline_switches_are_on() -> None:
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["RAGAS_DO_NOT_TRACK"] == "true"
    assert os.environ["DO_NOT_TRACK"] == "1"


def test_guardrails_imports_without_downloading(tmp_path: object) -> None:
    """guardrails-ai fetches NLTK punkt at import unless ragd's offline data is on the path."""
    import subprocess
    import sys

    code = (
        "from ragd.privacy import disable_telemetry, disable_guardrails_metrics;"
        "disable_telemetry(); disable_guardrails_metrics();"
        "import guardrails; from guardrails import settings; assert settings.rc.enable_metrics is False"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "nltk_data" not in r.stderr and "urlopen" not in r.stderr
