"""LoRA fine-tuning with peft on chat-format records (CPU for SmolLM2-135M, GPU when present).

Loss is taken on the assistant turn only (the prompt tokens are masked), so the adapter learns to
answer, not to reproduce passages. The adapter is saved in the peft format that vLLM serves with
``--lora-modules NAME=DIR`` or loads at run time, and registered in the model registry with its
lineage (base model, hash of the training file, metrics).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragd.errors import BadRequest

log = logging.getLogger(__name__)

MAX_RECORDS = 100_000
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class LoraConfigSpec:
    """Hyper-parameters of one LoRA run."""

    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 1e-3
    rank: int = 8  # vLLM is started with --max-lora-rank 8
    alpha: int = 16
    dropout: float = 0.05
    max_length: int = 768
    grad_accum: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.epochs <= 100 or (self.max_steps is not None and not 1 <= self.max_steps <= 100_000):
            raise BadRequest("epochs must be in (0, 100] and max_steps in [1, 100000]")
        if not 0 < self.learning_rate < 1 or self.rank not in (4, 8, 16, 32, 64):
            raise BadRequest("learning_rate must be in (0, 1) and rank one of 4, 8, 16, 32, 64")
        if not 32 <= self.max_length <= 8192 or not 1 <= self.grad_accum <= 256:
            raise BadRequest("max_length must be in [32, 8192] and grad_accum in [1, 256]")


def load_chat_records(path: Path) -> list[list[dict[str, str]]]:
    """The ``messages`` of every record in a JSONL file; refuses malformed files with one line."""
    if not path.is_file():
        raise BadRequest(f"{path} is not a file")
    out: list[list[dict[str, str]]] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if len(out) >= MAX_RECORDS:
                raise BadRequest(f"{path.name}: more than {MAX_RECORDS} records")
            try:
                messages = json.loads(line)["messages"]
                ok = isinstance(messages, list) and all(
                    isinstance(m, dict)
                    and m.get("role") in {"system", "user", "assistant"}
                    and isinstance(m.get("content"), str)
                    for m in messages
                )
            except (json.JSONDecodeError, KeyError, TypeError):
                ok = False
            if not ok or not messages or messages[-1]["role"] != "assistant" or not messages[-1]["content"]:
                raise BadRequest(f"{path.name}:{n}: expected {{'messages': [..., assistant turn]}}")
            out.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if not out:
        raise BadRequest(f"{path.name} has no records")
    return out


def _encode(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int
) -> tuple[list[int], list[int]] | None:
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if len(full_ids) > max_length:
        return None  # a cut-off answer would teach truncation
    labels = [-100] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return full_ids, labels


def train_lora(
    base_dir: Path,
    data: Path,
    out_dir: Path,
    spec: LoraConfigSpec | None = None,
    *,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on ``data`` over the HF model in ``base_dir``; returns metrics."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = spec or LoraConfigSpec()
    records = load_chat_records(data)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(spec.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    encoded = [e for e in (_encode(tokenizer, r, spec.max_length) for r in records) if e is not None]
    if not encoded:
        raise BadRequest(f"every record in {data.name} is longer than max_length={spec.max_length}")
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = model.to(device)
    lora = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.learning_rate)
    steps_per_epoch = math.ceil(len(encoded) / spec.grad_accum)
    total = spec.max_steps or max(1, math.ceil(steps_per_epoch * spec.epochs))
    rng = random.Random(spec.seed)
    order: list[int] = []
    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    for step in range(total):
        lr = spec.learning_rate * (1 - step / total)  # linear decay
        for group in optim.param_groups:
            group["lr"] = lr
        step_loss = 0.0
        for _ in range(spec.grad_accum):
            if not order:
                order = list(range(len(encoded)))
                rng.shuffle(order)
            ids, labels = encoded[order.pop()]
            out = model(
                input_ids=torch.tensor([ids], device=device), labels=torch.tensor([labels], device=device)
            )
            (out.loss / spec.grad_accum).backward()
            step_loss += float(out.loss.detach()) / spec.grad_accum
        optim.step()
        optim.zero_grad()
        losses.append(step_loss)
        log.info("lora step %d/%d loss %.4f", step + 1, total, step_loss)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    tail = losses[-max(1, len(losses) // 5) :]
    return {
        "steps": total,
        "records": len(encoded),
        "skipped_too_long": len(records) - len(encoded),
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "train_seconds": round(time.perf_counter() - started, 1),
        "device": device,
        "rank": spec.rank,
    }
