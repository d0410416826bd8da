"""The vLLM side of production serving: the exact launch command and run-time LoRA management.

``vllm_command`` turns the registry's production model and adapters into the ``vllm serve``
argument list. ``AdapterLoader`` loads and unloads LoRA adapters on running vLLM servers
(``/v1/load_lora_adapter``; the server needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), which
``promote_adapter`` uses so that promoting an adapter in the registry makes it servable at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine

from ragd.db.models import ModelEntry, ModelStage
from ragd.errors import BackendUnavailable, BadRequest, NotFound
from ragd.llm_serving import model_registry
from ragd.llm_serving.model_prep import is_prepared, prepared_dir

log = logging.getLogger(__name__)

MAX_LORA_RANK = 8
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


@dataclass(frozen=True)
class VLLMOptions:
    """Launch options for ``vllm serve``."""

    host: str = "0.0.0.0"  # noqa: S104 - a server inside its own container
    port: int = 8000
    served_name: str = "smollm2"
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 2048
    tensor_parallel_size: int = 1
    quantization: str | None = None
    dtype: str = "auto"
    max_loras: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise BadRequest("gpu_memory_utilization must be in (0, 1]")
        if not 1 <= self.port <= 65535 or not 1 <= self.tensor_parallel_size <= 64:
            raise BadRequest("port must be 1-65535 and tensor_parallel_size 1-64")
        if not 256 <= self.max_model_len <= 1_048_576 or not 1 <= self.max_loras <= 64:
            raise BadRequest("max_model_len must be 256-1048576 and max_loras 1-64")


def production_model_dir(engine: Engine, data_dir: Path, base: str = "smollm2") -> Path:
    """The directory of the production prepared model ``base`` (the prepared default if none)."""
    entry = model_registry.get_production(engine, base)
    path = (
        Path(entry.path) if entry is not None and entry.kind == "prepared" else prepared_dir(data_dir, base)
    )
    if not is_prepared(path):
        raise NotFound(f"no prepared model at {path}; run `ragd models prepare {base}` first")
    return path


def served_adapters(engine: Engine, base: str = "smollm2") -> list[ModelEntry]:
    """The LoRA adapters on ``base`` that vLLM should serve: each name's production version."""
    return [
        e
        for e in model_registry.list_models(engine, kind="lora", stage=ModelStage.production.value)
        if e.base_model == base
    ]


def vllm_command(
    model_dir: Path, adapters: list[ModelEntry], options: VLLMOptions, python: str = "python"
) -> list[str]:
    """The argument list that starts vLLM's OpenAI-compatible server for this model and adapters."""
    cmd = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", options.served_name,
        "--host", options.host,
        "--port", str(options.port),
        "--dtype", options.dtype,
        "--max-model-len", str(options.max_model_len),
        "--gpu-memory-utilization", str(options.gpu_memory_utilization),
        "--tensor-parallel-size", str(options.tensor_parallel_size),
    ]  # fmt: skip
    if options.quantization:
        cmd += ["--quantization", options.quantization]
    cmd += ["--enable-lora", "--max-lora-rank", str(MAX_LORA_RANK), "--max-loras", str(options.max_loras)]
    if adapters:
        cmd += ["--lora-modules", *(f"{a.name}={a.path}" for a in adapters)]
    return cmd


def format_command(cmd: list[str]) -> str:
    """The command as one shell line (with the env var that allows run-time adapter loading)."""
    return f"{RUNTIME_LORA_ENV}=True " + shlex.join(cmd)


class AdapterLoader:
    """Loads and unloads LoRA adapters on one running vLLM server."""

    def __init__(self, base_url: str, api_key: str = "EMPTY", timeout_s: float = 30.0) -> None:
        root = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=root,
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            headers={"Authorization": f"Bearer {api_key}"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, body: dict[str, str]) -> httpx.Response:
        try:
            return await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"vLLM at {self._client.base_url} is unreachable: {type(exc).__name__}"
            ) from exc

    async def load(self, name: str, path: str) -> None:
        """Make ``name`` servable from the adapter directory ``path``."""
        r = await self._post("/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if r.status_code >= 400:
            raise BadRequest(f"vLLM refused adapter {name!r}: {r.text[:200]}")

    async def unload(self, name: str) -> bool:
        """Stop serving ``name``; False when it was not loaded."""
        r = await self._post("/unload_lora_adapter", {"lora_name": name})
        return r.status_code < 400

    async def served(self) -> list[str]:
        """Model and adapter names the server serves now."""
        try:
            r = await self._client.get("/models")
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"vLLM at {self._client.base_url} is unreachable") from exc
        return [m["id"] for m in r.json().get("data", [])]


async def promote_adapter(
    engine: Engine, name: str, version: int | None, loaders: list[AdapterLoader]
) -> ModelEntry:
    """Promote a LoRA adapter in the registry and (re)load it under ``name`` on every server."""
    entry = model_registry.get_model(engine, name, version)
    if entry.kind != "lora":
        raise BadRequest(f"{name} v{entry.version} is a {entry.kind}, not a LoRA adapter")
    if not (Path(entry.path) / "adapter_config.json").is_file():
        raise NotFound(f"adapter files of {name} v{entry.version} are missing at {entry.path}")
    for loader in loaders:
        await loader.unload(name)  # vLLM keeps a name's first weights until it is unloaded
        await loader.load(name, entry.path)
    promoted = model_registry.promote(engine, name, entry.version)
    log.info(
        "adapter promoted and loaded",
        extra={"adapter": name, "version": entry.version, "servers": len(loaders)},
    )
    return promoted


def launch(
    cmd: list[str], log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a vLLM server process (tests, benchmarks, single-host deployments); output to a log."""
    env = {**os.environ, RUNTIME_LORA_ENV: "True", "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        # A new session so that the whole server (API process and engine core) can be killed together.
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # noqa: S603 - argv from vllm_command, no shell


def wait_until_ready(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Block until ``GET {base_url}/models`` answers; returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            raise BackendUnavailable(f"vLLM exited with status {proc.returncode} while starting")
        try:
            if httpx.get(f"{base_url.rstrip('/')}/models", timeout=2.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise BackendUnavailable(f"vLLM did not become ready within {timeout_s:.0f} s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the server's whole process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
