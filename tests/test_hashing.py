"""File hashing: the same bytes give the same key, a changed file a new one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ragd.hashing import file_sha256, sha256_files
from ragd.llm_serving.model_registry import data_hash


def test_hashes_are_the_sha256_of_the_bytes_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * (3 << 20) + b"tail")  # several read blocks
    b.write_bytes(b"")
    whole = hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()
    assert sha256_files([a, b]) == whole == data_hash([a, b])
    assert sha256_files([b, a]) == whole  # b is empty: order only matters for bytes
    assert file_sha256(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert sha256_files([]) == hashlib.sha256(b"").hexdigest()


def test_a_rewritten_file_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"first")
    first = file_sha256(path)
    path.write_bytes(b"second!")
    os.utime(path, ns=(1, 1))  # even with an old mtime: the size changed
    assert file_sha256(path) == hashlib.sha256(b"second!").hexdigest() != first


def test_a_missing_or_unreadable_file_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        file_sha256(tmp_path / "missing")
    with pytest.raises(OSError):
        sha256_files([tmp_path])  # a directory
