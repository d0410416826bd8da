"""Prefill-friendly weights for the embedded model: a small quantized GGUF re-encoded once.

A RAG turn on a small model is mostly prefill: a few hundred evidence tokens in, one sentence
out. llama.cpp's batched matrix kernels on x86 (llamafile's sgemm and the repacked layouts)
cover F16, BF16 (where the CPU has AVX512-BF16), Q8_0 and Q4_0, but not Q4_1, the type the
packaged SmolLM2 ships in, so its prompts run through the slow one-row dot products. A
350-token prompt on 2 cores (AMD EPYC, llama.cpp 0.3.36, flash attention on):

======================  ==========  ========  ========  ========
CPU                     Q4_1        Q8_0      F16       BF16
======================  ==========  ========  ========  ========
AVX2 only               1.74 s      1.02 s    0.83 s    not run
AVX-512 with BF16       1.50 s      0.75 s    0.70 s    0.49 s
======================  ==========  ========  ========  ========

F16 decodes more slowly on AVX2 (39 against 56 tokens/s: a token reads 270 MB instead of
98 MB), which a one-sentence answer pays about 0.15 s for; on the AVX-512 CPU BF16 decodes at
72 tokens/s against Q4_1's 75. So ``auto`` picks BF16 where llama.cpp was built with
AVX512-BF16 (setup builds it for the machine's CPU) and F16 elsewhere, where llama.cpp would
emulate BF16 (an explicit ``bf16`` is still honoured there).

The copy is written by llama.cpp's own quantizer (F16 and BF16 hold each Q4_1 weight to their
rounding; Q8_0 to 1/254 of its block's largest weight), once, into a cache keyed by the source
file's hash, and it is written to a temporary name and renamed so that two processes never load
a half-written file.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
from pathlib import Path

from ragd.config import WeightsChoice
from ragd.hashing import file_sha256

log = logging.getLogger(__name__)

#: ``auto`` re-encodes files up to this size: a 4-bit file this big is a model of about 450 M
#: parameters, whose F16 copy is under 1 GB. Bigger models are decode-bound and keep their file.
AUTO_MAX_BYTES = 256 * 2**20

#: GGUF ``general.file_type`` values that are not quantized: all F32, mostly F16, mostly BF16.
_UNQUANTIZED = {0, 1, 32}


def file_type(path: Path) -> int | None:
    """The GGUF's ``general.file_type`` (llama.cpp's ftype), read without loading its tensors.

    Through llama.cpp's vocabulary-only load: ``Llama(vocab_only=True)`` would also make a
    context (and warn on stderr), and the ``gguf`` package's reader parses the whole vocabulary
    in Python (5 s for SmolLM2).
    """
    import llama_cpp

    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            return None  # the real load reports what is wrong with the file
    # llama-cpp-python prints llama.cpp's log to stderr unless this logger is at ERROR, which
    # Llama(verbose=False) sets; this load comes before any Llama, so set it the same way.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        return None
    try:
        value = ctypes.create_string_buffer(32)
        found = llama_cpp.llama_model_meta_val_str(model, b"general.file_type", value, len(value))
        return int(value.value) if found > 0 and value.value.isdigit() else None
    finally:
        llama_cpp.llama_model_free(model)


@functools.cache
def native_bf16_build() -> bool:
    """Whether the loaded llama.cpp computes BF16 products natively (built with AVX512-BF16).

    Asked of the build, not of ``/proc/cpuinfo``: a build without the instructions emulates
    BF16, slower than F16, even on a CPU that has them.
    """
    import llama_cpp

    return "AVX512_BF16 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


def auto_encoding() -> str:
    """The re-encoding ``auto`` makes on this machine: ``bf16`` or ``f16`` (see the module doc)."""
    return "bf16" if native_bf16_build() else "f16"


def serving_weights(source: Path, choice: WeightsChoice, cache_dir: Path | None) -> Path:
    """The GGUF file to load for ``source``: the file itself, or its cached re-encoding.

    ``file`` (or no ``cache_dir``) loads ``source`` as it is; ``f16``, ``bf16`` and ``q8_0``
    re-encode it; ``auto`` re-encodes a quantized file of at most :data:`AUTO_MAX_BYTES` as
    :func:`auto_encoding` says (BF16 where llama.cpp computes it natively, else F16). A copy that
    cannot be written (a full disk) leaves ``source`` in use, with a warning: slower, not down.
    """
    if choice == "file" or cache_dir is None or not source.is_file():
        return source  # a missing file: the real load says so
    if choice == "auto" and source.stat().st_size > AUTO_MAX_BYTES:
        return source
    partial: Path | None = None
    encoding = auto_encoding() if choice == "auto" else choice
    try:
        digest = file_sha256(source)[:16]
        target = cache_dir / f"{source.stem}.{digest}.{encoding}.gguf"
        if target.exists():
            # Checked before the file type: reading it costs 0.5 s of every start, the hash 0.1 s.
            return target
        if choice == "auto":
            if file_type(source) in _UNQUANTIZED | {None}:
                return source
        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{encoding.upper()}")
        params.allow_requantize = True
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        cache_dir.mkdir(parents=True, exist_ok=True)
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if rc != 0:
            raise OSError(f"llama.cpp's quantizer returned {rc}")
        os.replace(partial, target)
    except OSError as exc:
        log.warning(
            "cannot re-encode the chat model; serving the file as it is",
            extra={"model": source.name, "weights": encoding, "error": str(exc)[:200]},
        )
        return source
    finally:
        if partial is not None:
            with contextlib.suppress(OSError):  # nothing to remove where the directory could not be made
                partial.unlink(missing_ok=True)
    log.info("re-encoded the chat model for prefill", extra={"model": source.name, "weights": encoding})
    return target
