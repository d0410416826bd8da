"""File hashing shared by the caches and records that name content by its bytes.

The ONNX export cache, the re-encoded GGUF cache, the model registry's training-data hash and
the eval records' dataset and model digests all hash whole files; they share the reading loop
here so that the same bytes always give the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20


def hash_file_into(digest: Any, path: Path | str) -> None:
    """Feed the bytes of ``path`` into ``digest`` (a ``hashlib`` object), a block at a time."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)


def sha256_files(paths: Iterable[Path | str]) -> str:
    """The sha256 over the bytes of ``paths``, one after the other (hex)."""
    digest = hashlib.sha256()
    for path in paths:
        hash_file_into(digest, path)
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    """The sha256 of one file (hex), computed once per process for a given size and mtime.

    Raises ``OSError`` when the file cannot be read.
    """
    p = Path(path)
    st = p.stat()
    return _file_sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed on size and mtime so that a replaced file is hashed again; a 100 MB GGUF takes ~0.1 s.
    return sha256_files([path])
