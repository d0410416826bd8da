"""The ONNX embedder: same vectors as torch (fp32), its own collection (int8), exported once."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ragd.errors import ConfigError
from ragd.llm_serving.model_files import minilm_dir
from ragd.retrieval.embedder import BULK_BATCH_SIZE, background_work, bulk_embedding
from ragd.retrieval.onnx_embedder import (
    BF16_MIN_TOKENS,
    BF16_ROWS,
    BF16_TOKEN_STEP,
    Bf16Forward,
    OnnxEmbedder,
    _mean_pool,
    export_onnx,
)
from ragd.retrieval.registry import build_embedder
from tests.conftest import make_settings

TEXTS = [
    "",
    "What causes scurvy?",
    "Vitamin C deficiency leads to scurvy, a disease of collagen synthesis. " * 40,  # truncated
    "Die Hauptstadt von Frankreich ist Paris. 東京は日本の首都です。",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def test_fp32_onnx_reproduces_torch_and_shares_its_collection(tmp_path: Path, onnx_cache: Path) -> None:
    torch_emb = build_embedder(make_settings(tmp_path, embedding={"precision": "fp32"}))
    onnx_emb = build_embedder(
        make_settings(tmp_path, embedding={"precision": "onnx", "onnx_cache": onnx_cache})
    )
    assert isinstance(onnx_emb, OnnxEmbedder)
    assert onnx_emb.name == torch_emb.name and onnx_emb.dim == torch_emb.dim == 384
    a, b = torch_emb.embed_documents(TEXTS), onnx_emb.embed_documents(TEXTS)
    assert a.shape == b.shape == (4, 384)
    assert np.min(np.sum(a * b, axis=1)) > 0.9999
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    q = onnx_emb.embed_query("What causes scurvy?")
    assert float(q @ a[1]) > 0.9999
    assert onnx_emb.count_tokens("What causes scurvy?") == torch_emb.count_tokens("What causes scurvy?")
    assert onnx_emb.embed_documents([]).shape == (0, 384)


def test_export_is_cached_and_int8_is_a_different_embedder(tmp_path: Path, onnx_cache: Path) -> None:
    fp32 = export_onnx(minilm_dir(), onnx_cache, int8=False, max_seq_length=256)
    mtime = fp32.stat().st_mtime_ns
    assert export_onnx(minilm_dir(), onnx_cache, int8=False, max_seq_length=256) == fp32
    assert fp32.stat().st_mtime_ns == mtime  # reused, not exported again
    int8 = build_embedder(
        make_settings(tmp_path, embedding={"precision": "onnx-int8", "onnx_cache": onnx_cache})
    )
    torch_emb = build_embedder(make_settings(tmp_path, embedding={"precision": "fp32"}))
    assert int8.name == f"{torch_emb.name}-int8"
    a, b = torch_emb.embed_documents(TEXTS[1:]), int8.embed_documents(TEXTS[1:])
    cos = np.sum(a * b, axis=1)
    assert np.all(cos > 0.95) and np.any(cos < 0.9999)  # close, but not the same vectors


def embed_in_background_past_the_gate(emb: OnnxEmbedder, texts: list[str]) -> np.ndarray:
    """``texts`` embedded on a lowered thread while a request holds the encoder gate throughout:
    background work must not need the gate (it fails the test if it waits for it)."""
    got: dict[str, np.ndarray] = {}

    def ingest() -> None:
        with background_work(5):
            got["vectors"] = emb.embed_documents(texts)

    with emb._gate.hold(bulk=False):
        worker = threading.Thread(target=ingest)
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive(), "background work waited for the encoder gate"
    return got["vectors"]


def test_bf16_runs_big_passes_with_the_fp32_vectors_and_leaves_queries_to_onnxruntime(
    tmp_path: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp32 = build_embedder(
        make_settings(tmp_path, embedding={"precision": "onnx", "onnx_cache": onnx_cache, "bf16": "off"})
    )
    bf16 = build_embedder(
        make_settings(tmp_path, embedding={"precision": "onnx", "onnx_cache": onnx_cache, "bf16": "on"})
    )
    assert isinstance(fp32, OnnxEmbedder) and isinstance(bf16, OnnxEmbedder)
    assert bf16.bf16 and not fp32.bf16
    assert bf16.name == fp32.name  # the same vectors, so the same collection
    shapes: list[tuple[int, ...]] = []
    forward = bf16._bf16
    assert forward is not None

    def counting(feed: dict[str, np.ndarray]) -> np.ndarray:
        shapes.append(feed["input_ids"].shape)
        return forward(feed)

    monkeypatch.setattr(bf16, "_bf16", counting)
    passages = [f"Passage {i}: " + "collagen synthesis needs vitamin C. " * (i % 9 + 1) for i in range(24)]
    a, b = fp32.embed_documents(passages), bf16.embed_documents(passages)
    assert shapes and all(rows * cols >= BF16_MIN_TOKENS for rows, cols in shapes)
    cos = np.sum(a * b, axis=1)
    assert np.all(cos > 0.9995) and np.any(cos < 0.999999)  # bf16 ran: close, not bit-equal
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    # A query is a small pass: onnxruntime, bit for bit.
    shapes.clear()
    assert np.array_equal(bf16.embed_query("What causes scurvy?"), fp32.embed_query("What causes scurvy?"))
    assert shapes == []
    # Background work on a lowered thread (bulk: passes of two texts, long enough here for bf16)
    # runs without waiting for a request's gate.
    long = [f"Abstract {i}: " + "collagen synthesis needs vitamin C. " * 20 for i in range(4)]
    background = embed_in_background_past_the_gate(bf16, long)
    assert shapes and all(rows == BULK_BATCH_SIZE for rows, _ in shapes)
    assert np.min(np.sum(background * fp32.embed_documents(long), axis=1)) > 0.9995


def test_bf16_passes_run_on_a_small_grid_of_shapes_with_the_same_vectors() -> None:
    """torch keeps native memory for every input shape it runs (about 1 MB each, never freed), so
    the bf16 path pads each pass to a grid: many shapes in, few run, each text's vectors as before."""
    import torch
    from transformers import AutoTokenizer

    forward = Bf16Forward(minilm_dir())
    calls: list[tuple[int, int]] = []
    forward._model.register_forward_pre_hook(
        lambda _m, _a, kwargs: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    ran = set()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    words = "vitamin collagen synthesis deficiency scurvy protein cell membrane receptor gene".split()
    texts = [" ".join(words[(r + i) % len(words)] for i in range(40 + 20 * r)) for r in range(13)]
    enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    full = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    # 22 shapes: 20 that fall in one cell of the grid, the smallest pass and the largest.
    given = [(r, t) for r in (5, 6) for t in range(33, 43)] + [(1, 3), (13, 256)]
    for rows, tokens in given:
        feed = {k: v[:rows, :tokens] for k, v in full.items()}
        hidden = forward(feed)
        ran.add(calls[-1])
        assert hidden.shape == (rows, tokens, 384)
        with torch.inference_mode():
            exact = forward._model(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state
        mask = feed["attention_mask"]
        cos = np.sum(_mean_pool(hidden, mask) * _mean_pool(exact.numpy(), mask), axis=1)
        assert np.all(cos > 0.9995), (rows, tokens, cos)
    assert all(r in BF16_ROWS and t % BF16_TOKEN_STEP == 0 for r, t in ran)
    assert len(ran) == 3


def test_bf16_that_disagrees_with_fp32_is_not_used(
    onnx_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def noise(self: Bf16Forward, feed: dict[str, np.ndarray]) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.normal(size=(*feed["input_ids"].shape, 384)).astype(np.float32)

    monkeypatch.setattr(Bf16Forward, "__call__", noise)
    path = export_onnx(minilm_dir(), onnx_cache, int8=False, max_seq_length=256)
    with caplog.at_level("WARNING", logger="ragd.retrieval.onnx_embedder"):
        emb = OnnxEmbedder(minilm_dir(), path, name="noisy", bf16=True)
    assert not emb.bf16
    assert "disagrees" in caplog.text
    long = "Vitamin C deficiency leads to scurvy. " * 30
    reference = OnnxEmbedder(minilm_dir(), path, name="plain").embed_documents([long])
    assert np.allclose(emb.embed_documents([long]), reference, atol=1e-6)


def test_int8_never_runs_bf16(tmp_path: Path, onnx_cache: Path) -> None:
    """bf16 reproduces the fp32 vectors, not int8's: an int8 collection stays int8 throughout."""
    int8 = build_embedder(
        make_settings(tmp_path, embedding={"precision": "onnx-int8", "onnx_cache": onnx_cache, "bf16": "on"})
    )
    assert isinstance(int8, OnnxEmbedder) and not int8.bf16


def test_a_model_whose_pooling_it_cannot_reproduce_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "cls-model"
    shutil.copytree(minilm_dir(), model, symlinks=True)
    pooling = next(model.glob("*_Pooling/config.json"))
    cfg = json.loads(pooling.read_text())
    if "pooling_mode" in cfg:
        cfg["pooling_mode"] = "cls"
    else:
        cfg.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="mean pooling"):
        export_onnx(model, tmp_path / "cache", int8=False, max_seq_length=256)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.onnx"))


def test_an_unwritable_export_cache_is_a_clear_setting_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="RAGD_EMBEDDING__ONNX_CACHE"):
        export_onnx(minilm_dir(), blocker / "onnx", int8=False, max_seq_length=256)


def test_span_vectors_come_from_the_same_pass(tmp_path: Path, onnx_cache: Path) -> None:
    emb = build_embedder(make_settings(tmp_path, embedding={"precision": "onnx", "onnx_cache": onnx_cache}))
    assert isinstance(emb, OnnxEmbedder)
    first = "Vitamin C deficiency leads to scurvy."
    text = f"{first} Citrus fruit prevents it."
    long = TEXTS[2]
    spans = [[(0, len(first)), (len(first) + 1, len(text))], [(0, 10), (len(long) - 20, len(long))], []]
    vectors, pieces = emb.embed_with_spans([text, long, "no spans"], spans)
    assert np.allclose(vectors, emb.embed_documents([text, long, "no spans"]), atol=1e-5)
    assert [p.shape for p in pieces] == [(2, 384), (2, 384), (0, 384)]
    assert np.allclose(np.linalg.norm(pieces[0], axis=1), 1.0, atol=1e-5)
    # In context, a sentence is close to, but not the same as, the sentence embedded alone.
    alone = emb.embed_documents([first])[0]
    assert 0.5 < float(pieces[0][0] @ alone) < 0.9999
    # The end of an over-long text was truncated away: no tokens, a NaN row (never a fake vector).
    assert not np.isnan(pieces[1][0]).any() and np.isnan(pieces[1][1]).all()


def test_bulk_work_runs_in_small_batches_with_the_same_vectors(
    tmp_path: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime for every pass: bf16 would run the interactive batches only (they are big).
    emb = build_embedder(
        make_settings(tmp_path, embedding={"precision": "onnx", "onnx_cache": onnx_cache, "bf16": "off"})
    )
    assert isinstance(emb, OnnxEmbedder)
    texts = [f"Passage {i}: " + "collagen synthesis needs vitamin C. " * (i % 7 + 1) for i in range(40)]
    runs: list[int] = []
    run = emb._run

    def counting_run(batch: list[str], spans: object = None) -> object:
        runs.append(len(batch))
        return run(batch, spans)

    monkeypatch.setattr(emb, "_run", counting_run)
    interactive = emb.embed_documents(texts)
    with bulk_embedding():
        bulk = emb.embed_documents(texts)
    # A request's texts run in the embedder's batches; ingestion yields the encoder after every
    # BULK_BATCH_SIZE texts.
    request = [min(emb.batch_size, 40 - start) for start in range(0, 40, emb.batch_size)]
    assert emb.batch_size > BULK_BATCH_SIZE
    assert runs == request + [BULK_BATCH_SIZE] * (40 // BULK_BATCH_SIZE)
    assert np.allclose(interactive, bulk, atol=1e-5)


def test_torch_embedder_runs_bulk_work_in_passes_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = build_embedder(make_settings(tmp_path, embedding={"precision": "fp32"}))
    texts = [f"Claim {i}: vitamin C prevents scurvy in {i} sailors." for i in range(6)]
    calls: list[int] = []
    encode = emb._model.encode

    def counting_encode(batch: list[str], **kw: object) -> object:
        calls.append(len(batch))
        return encode(batch, **kw)

    monkeypatch.setattr(emb._model, "encode", counting_encode)
    interactive = emb.embed_documents(texts)
    with bulk_embedding():
        bulk = emb.embed_documents(texts)
    assert calls == [6] + [BULK_BATCH_SIZE] * (6 // BULK_BATCH_SIZE)
    assert np.allclose(interactive, bulk, atol=1e-5)


def _niced_threads(base: int) -> set[int]:
    tids = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            if os.getpriority(os.PRIO_PROCESS, int(task.name)) > base:
                tids.add(int(task.name))
    return tids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_background_work_runs_below_requests_on_a_session_of_its_own(
    tmp_path: Path, onnx_cache: Path
) -> None:
    """Ingestion on a lowered thread neither waits for the encoder gate nor holds it: the
    kernel orders it after requests, on onnxruntime threads that inherit its priority."""
    built = build_embedder(make_settings(tmp_path, embedding={"precision": "onnx", "onnx_cache": onnx_cache}))
    assert isinstance(built, OnnxEmbedder)
    # Two intra-op threads, stated: by default onnxruntime starts one per physical core, which is
    # none beyond the caller on a machine with one core (two hyperthreads), like CI's.
    emb = OnnxEmbedder(built.path, built._onnx_path, name="two-threads", threads=2)
    texts = [f"Passage {i}: collagen synthesis needs vitamin C." for i in range(6)]
    request = emb.embed_documents(texts)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    if base >= 19:
        pytest.skip("the tests already run at the lowest priority: there is nothing below it")
    before = _niced_threads(base)
    assert np.allclose(request, embed_in_background_past_the_gate(emb, texts), atol=1e-5)
    assert emb._background is not None and emb._background is not emb._session
    lowered = _niced_threads(base) - before  # the ingest thread itself has ended
    assert lowered, "the background session's threads inherit the low priority"
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    # Bulk work on a thread at full priority still shares the gate (no session of its own).
    fresh = OnnxEmbedder(emb.path, emb._onnx_path, name="fresh")
    with bulk_embedding():
        assert np.allclose(fresh.embed_documents(texts), request, atol=1e-5)
    assert fresh._background is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_torch_background_work_does_not_wait_for_the_gate(tmp_path: Path) -> None:
    emb = build_embedder(make_settings(tmp_path, embedding={"precision": "fp32"}))
    texts = ["Vitamin C prevents scurvy.", "Collagen needs vitamin C."]
    request = emb.embed_documents(texts)
    got: list[object] = []

    def ingest() -> None:
        with background_work(3):
            got.append(emb.embed_documents(texts))

    with emb._gate.hold(bulk=False):
        worker = threading.Thread(target=ingest)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "background work waited for the encoder gate"
    assert np.allclose(request, got[0], atol=1e-5)
