"""The embedded model's re-encoded weights: made once, equivalent, and never a reason to be down."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_cpp import Llama

from ragd.config import LlamaCppSettings, Settings
from ragd.llm_serving import gguf_weights
from ragd.llm_serving.gguf_weights import auto_encoding, file_type, serving_weights
from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel
from ragd.llm_serving.model_files import smollm2_gguf
from tests.conftest import GGUF_CACHE
from tests.llm_serving.conftest import run

FTYPES = {"f16": 1, "bf16": 32}  # llama.cpp's LLAMA_FTYPE_MOSTLY_F16, _BF16
Q4_1 = 3


@pytest.fixture(scope="module")
def served() -> Path:
    """The copy ``auto`` serves on this machine (BF16 or F16: both unquantized)."""
    return serving_weights(smollm2_gguf(), "auto", GGUF_CACHE)


def _next_tokens(path: Path, prompts: list[str]) -> list[str]:
    # logits_all: without it llama-cpp-python no longer copies logits into ``scores``, which then
    # holds whatever the allocator left there (zeros in a fresh process, garbage in a long one).
    llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, logits_all=True)
    picks = []
    for prompt in prompts:
        llm.reset()
        llm.eval(llm.tokenize(prompt.encode()))
        picks.append(llm.detokenize([int(llm.scores[llm.n_tokens - 1].argmax())]).decode(errors="replace"))
    return picks


def test_auto_re_encodes_the_packaged_q4_1_model_once(served: Path) -> None:
    assert served.parent == GGUF_CACHE and served != smollm2_gguf()
    assert file_type(smollm2_gguf()) == Q4_1 and file_type(served) == FTYPES[auto_encoding()]
    written = served.stat().st_mtime_ns
    assert serving_weights(smollm2_gguf(), "auto", GGUF_CACHE) == served
    assert served.stat().st_mtime_ns == written  # the cached copy is reused, not rewritten
    assert not list(GGUF_CACHE.glob("*.partial"))


def test_auto_picks_bf16_only_where_llama_cpp_computes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for native, encoding in ((True, "bf16"), (False, "f16")):
        monkeypatch.setattr(gguf_weights, "native_bf16_build", lambda native=native: native)
        path = serving_weights(smollm2_gguf(), "auto", GGUF_CACHE)
        assert path == serving_weights(smollm2_gguf(), encoding, GGUF_CACHE)  # the same cached copy
        assert path.name.endswith(f".{encoding}.gguf") and file_type(path) == FTYPES[encoding]


@pytest.mark.parametrize("encoding", ["f16", "bf16"])
def test_the_copy_predicts_what_the_packaged_file_predicts(encoding: str) -> None:
    prompts = [
        "The capital of France is",
        "Water boils at a temperature of 100 degrees",
        "<|im_start|>user\nWho wrote Hamlet?<|im_end|>\n<|im_start|>assistant\n",
        "1, 2, 3, 4,",
    ]
    copy = serving_weights(smollm2_gguf(), encoding, GGUF_CACHE)  # type: ignore[arg-type]
    assert file_type(copy) == FTYPES[encoding]
    packaged = _next_tokens(smollm2_gguf(), prompts)
    assert packaged[:2] == [" Paris", " Celsius"]  # real predictions, not an unwritten buffer
    assert _next_tokens(copy, prompts) == packaged


def test_reading_the_file_type_prints_nothing() -> None:
    # ragd serve's stderr is JSON log lines only, and the file type is read before any Llama
    # exists: a fresh interpreter shows what llama.cpp writes on its own.
    code = "from ragd.llm_serving.gguf_weights import file_type; from ragd.llm_serving.model_files "
    code += "import smollm2_gguf; print(file_type(smollm2_gguf()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (0, "3\n", "")


def test_file_big_and_unquantized_models_are_loaded_as_they_are(
    served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serving_weights(smollm2_gguf(), "file", tmp_path) == smollm2_gguf()
    assert serving_weights(smollm2_gguf(), "f16", None) == smollm2_gguf()  # no cache: as it is
    assert serving_weights(served, "auto", tmp_path) == served  # already unquantized
    missing = tmp_path / "missing.gguf"
    assert serving_weights(missing, "f16", tmp_path) == missing  # the real load says it is missing
    monkeypatch.setattr(gguf_weights, "AUTO_MAX_BYTES", 1024)
    assert serving_weights(smollm2_gguf(), "auto", tmp_path) == smollm2_gguf()
    assert not list(tmp_path.iterdir())  # nothing was written for any of them


@pytest.fixture
def garbage(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\xff" * 4096)
    yield path


def test_a_copy_that_cannot_be_made_leaves_the_file_in_use(
    tmp_path: Path, garbage: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache directory should be")
    with caplog.at_level(logging.WARNING, logger="ragd.llm_serving.gguf_weights"):
        assert serving_weights(smollm2_gguf(), "f16", blocked) == smollm2_gguf()
        assert serving_weights(garbage, "q8_0", tmp_path / "c2") == garbage  # the quantizer refuses it
    assert sum("cannot re-encode" in r.getMessage() for r in caplog.records) == 2
    assert not list((tmp_path / "c2").glob("*"))  # no partial file left behind
    assert serving_weights(garbage, "auto", tmp_path / "c3") == garbage  # unreadable: the load says why


def test_the_server_loads_the_re_encoded_copy_and_says_so(served: Path) -> None:
    model = LlamaCppChatModel(LlamaCppSettings(n_ctx=512, n_threads=2), cache_dir=GGUF_CACHE)
    try:
        model.load()
        health = run(model.health())
        assert health.ok and health.info["weights"] == served.name
        assert health.info["model"] == smollm2_gguf().name
        assert model.serves(smollm2_gguf().stem)  # clients still name the packaged model
    finally:
        run(model.aclose())


def test_weights_settings_are_checked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.llm.llamacpp.weights == "auto" and settings.llm.llamacpp.flash_attn
    with pytest.raises(ValueError, match="weights"):
        Settings(data_dir=tmp_path, llm={"llamacpp": {"weights": "q2_k"}})  # type: ignore[arg-type]
