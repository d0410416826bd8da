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
from ragd.llm_serving.gguf_weights import file_type, serving_weights
from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel
from ragd.llm_serving.model_files import smollm2_gguf
from tests.conftest import GGUF_CACHE
from tests.llm_serving.conftest import run

F16 = 1  # llama.cpp's LLAMA_FTYPE_MOSTLY_F16


@pytest.fixture(scope="module")
def f16() -> Path:
    return serving_weights(smollm2_gguf(), "auto", GGUF_CACHE)


def _next_tokens(path: Path, prompts: list[str]) -> list[int]:
    llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False)
    picks = []
    for prompt in prompts:
        llm.reset()
        llm.eval(llm.tokenize(prompt.encode()))
        picks.append(int(llm.scores[llm.n_tokens - 1].argmax()))
    return picks


def test_auto_re_encodes_the_packaged_q4_1_model_as_f16_once(f16: Path) -> None:
    assert f16.parent == GGUF_CACHE and f16 != smollm2_gguf()
    assert file_type(smollm2_gguf()) == 3 and file_type(f16) == F16  # Q4_1 -> mostly F16
    written = f16.stat().st_mtime_ns
    assert serving_weights(smollm2_gguf(), "auto", GGUF_CACHE) == f16
    assert f16.stat().st_mtime_ns == written  # the cached copy is reused, not rewritten
    assert not list(GGUF_CACHE.glob("*.partial"))


def test_the_f16_copy_predicts_what_the_packaged_file_predicts(f16: Path) -> None:
    prompts = [
        "The capital of France is",
        "Water boils at a temperature of 100 degrees",
        "<|im_start|>user\nWho wrote Hamlet?<|im_end|>\n<|im_start|>assistant\n",
        "1, 2, 3, 4,",
    ]
    assert _next_tokens(f16, prompts) == _next_tokens(smollm2_gguf(), prompts)


def test_reading_the_file_type_prints_nothing() -> None:
    # ragd serve's stderr is JSON log lines only, and the file type is read before any Llama
    # exists: a fresh interpreter shows what llama.cpp writes on its own.
    code = "from ragd.llm_serving.gguf_weights import file_type; from ragd.llm_serving.model_files "
    code += "import smollm2_gguf; print(file_type(smollm2_gguf()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (0, "3\n", "")


def test_file_big_and_unquantized_models_are_loaded_as_they_are(
    f16: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serving_weights(smollm2_gguf(), "file", tmp_path) == smollm2_gguf()
    assert serving_weights(smollm2_gguf(), "f16", None) == smollm2_gguf()  # no cache: as it is
    assert serving_weights(f16, "auto", tmp_path) == f16  # already F16
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


def test_the_server_loads_the_f16_copy_and_says_so(f16: Path) -> None:
    model = LlamaCppChatModel(LlamaCppSettings(n_ctx=512, n_threads=2), cache_dir=GGUF_CACHE)
    try:
        model.load()
        health = run(model.health())
        assert health.ok and health.info["weights"] == f16.name
        assert health.info["model"] == smollm2_gguf().name
        assert model.serves(smollm2_gguf().stem)  # clients still name the packaged model
    finally:
        run(model.aclose())


def test_weights_settings_are_checked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.llm.llamacpp.weights == "auto" and settings.llm.llamacpp.flash_attn
    with pytest.raises(ValueError, match="weights"):
        Settings(data_dir=tmp_path, llm={"llamacpp": {"weights": "q2_k"}})  # type: ignore[arg-type]
