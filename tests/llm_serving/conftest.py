"""Fixtures for the LLM-serving tests: one real SmolLM2 (llama.cpp) per module."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ragd.config import LlamaCppSettings
from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel
from tests.conftest import GGUF_CACHE

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh loop (the backends are loop-agnostic)."""
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaCppChatModel]:
    model = LlamaCppChatModel(
        LlamaCppSettings(n_ctx=1024, n_threads=2, max_queue=4), context_policy="reject", cache_dir=GGUF_CACHE
    )
    model.load()
    yield model
    run(model.aclose())


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """A loopback server that accepts connections and never answers (a hung backend)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/v1"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def prepared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose ``models/smollm2`` holds the prepared HF model (built once per session)."""
    from ragd.llm_serving.model_prep import prepare_model, prepared_dir

    data_dir = tmp_path_factory.mktemp("llm-data")
    prepare_model("smollm2", prepared_dir(data_dir, "smollm2"))
    return data_dir
