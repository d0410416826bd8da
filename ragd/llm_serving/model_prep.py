"""Model preparation: the packaged GGUF becomes an HF safetensors directory that vLLM can load.

transformers can read a GGUF file but cannot save the result (the GGUF quantisation config has
no serialiser), so the dequantised weights are copied into a model built from the same config
without ``quantization_config`` and that model is saved (DESIGN.md §3). The tokenizer, with its
chat template, is saved alongside.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from ragd.errors import BadRequest
from ragd.llm_serving.model_files import smollm2_gguf

log = logging.getLogger(__name__)

PREPARABLE = ("smollm2",)
_MARKER = "ragd-prepared.json"


def prepared_dir(data_dir: Path, name: str) -> Path:
    """Where ``ragd models prepare NAME`` writes its output."""
    return data_dir / "models" / name


def is_prepared(path: Path) -> bool:
    """Whether ``path`` holds a complete prepared model (written last, so a crash leaves none)."""
    return (path / _MARKER).is_file() and (path / "config.json").is_file()


def prepare_model(name: str, out_dir: Path, *, force: bool = False) -> Path:
    """Convert the packaged GGUF of ``name`` into an HF directory at ``out_dir``; idempotent.

    Returns ``out_dir``. Raises :class:`BadRequest` for a model ragd cannot prepare.
    """
    if name not in PREPARABLE:
        raise BadRequest(f"cannot prepare {name!r}; choose one of {', '.join(PREPARABLE)}")
    if is_prepared(out_dir) and not force:
        return out_dir
    gguf = smollm2_gguf()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _convert(gguf, tmp)
    (tmp / _MARKER).write_text(json.dumps({"source": gguf.name, "name": name}))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log.info("prepared model", extra={"model": name, "path": str(out_dir)})
    return out_dir


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src, file = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=file)
    loaded: Any = AutoModelForCausalLM.from_pretrained(src, gguf_file=file, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=file)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain: Any = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings may be reported missing for lm_head; anything else means a bad conversion.
    real_missing = [k for k in missing if not k.startswith("lm_head")]
    if real_missing or unexpected:
        raise RuntimeError(
            f"GGUF conversion mismatch: missing={real_missing[:5]} unexpected={unexpected[:5]}"
        )
    plain.tie_weights()
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
