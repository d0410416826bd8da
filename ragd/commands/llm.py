"""``ragd llm vllm-args``: the exact vLLM launch command for the production model and adapters."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ragd.commands.common import CommandGroups, fail, load_settings
from ragd.errors import ConfigError, RagdError


def vllm_args_cmd(
    base: Annotated[str, typer.Option(help="Prepared base model name in the registry.")] = "smollm2",
    host: Annotated[str, typer.Option(help="Bind address of the vLLM server.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="Port of the vLLM server.")] = 8000,
    served_name: Annotated[str, typer.Option(help="Model name clients ask for.")] = "smollm2",
    gpu_memory_utilization: Annotated[float, typer.Option(help="Share of GPU memory vLLM may use.")] = 0.9,
    max_model_len: Annotated[int, typer.Option(help="Context window served.")] = 2048,
    tensor_parallel_size: Annotated[int, typer.Option(help="GPUs per replica.")] = 1,
    quantization: Annotated[str | None, typer.Option(help="e.g. awq, gptq, fp8.")] = None,
    dtype: Annotated[str, typer.Option(help="auto, bfloat16, float16.")] = "auto",
    python: Annotated[str, typer.Option(help="Python of the vLLM environment.")] = "python",
    as_json: Annotated[bool, typer.Option("--json", help="Print the argument list as JSON.")] = False,
) -> None:
    """Print the `vllm serve` command for the production model and its production LoRA adapters."""
    from ragd.db.engine import build_engine, check_connection, migrate
    from ragd.llm_serving.vllm_launcher import (
        VLLMOptions,
        format_command,
        production_model_dir,
        served_adapters,
        vllm_command,
    )

    settings = load_settings()
    engine = build_engine(settings)
    try:
        check_connection(engine)
        migrate(engine)
        options = VLLMOptions(
            host=host,
            port=port,
            served_name=served_name,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            quantization=quantization,
            dtype=dtype,
        )
        cmd = vllm_command(
            production_model_dir(engine, settings.data_dir.resolve(), base),
            served_adapters(engine, base),
            options,
            python,
        )
    except ConfigError as exc:
        fail(str(exc))
    except RagdError as exc:
        fail(exc.message)
    typer.echo(json.dumps(cmd) if as_json else format_command(cmd))


def register(app: typer.Typer, groups: CommandGroups) -> None:
    llm = groups.group("llm", "Generation backends: the vLLM launcher.")
    llm.command("vllm-args")(vllm_args_cmd)
