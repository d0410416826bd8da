"""Content-addressed storage of uploaded files (and of staged embedding results).

A blob's key is the SHA-256 of its bytes, so the same content is stored once, a re-upload is
recognised by its key, and no client-supplied name ever becomes a path. Writes go to a temporary
file that is renamed into place, so a reader never sees half a blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ragd.errors import PayloadTooLarge

_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BlobRef:
    """A stored blob: its key (hex SHA-256), size and the first bytes (for sniffing)."""

    key: str
    size: int
    head: bytes


class BlobStore(Protocol):
    """Where raw uploads live, addressed by content."""

    def put_chunks(self, chunks: Iterable[bytes], max_bytes: int) -> BlobRef:
        """Store a stream, refusing it with :class:`PayloadTooLarge` once over ``max_bytes``."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes of blob ``key`` (``FileNotFoundError`` if absent)."""
        ...

    def delete(self, key: str) -> None:
        """Remove blob ``key`` if present."""
        ...


class BlobWriter:
    """Hashes and writes one incoming stream to a temporary file next to its final place."""

    def __init__(self, root: Path, max_bytes: int, head_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.head_bytes = head_bytes
        self.sha = hashlib.sha256()
        self.size = 0
        self.head = bytearray()
        tmp_dir = root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir)
        self.path = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abort()
            raise PayloadTooLarge(f"the file is larger than the limit of {self.max_bytes} bytes")
        if len(self.head) < self.head_bytes:
            self.head.extend(chunk[: self.head_bytes - len(self.head)])
        self.sha.update(chunk)
        self.file.write(chunk)

    def abort(self) -> None:
        # On a full disk, closing flushes the buffer and fails again: the file goes regardless.
        with contextlib.suppress(OSError):
            self.file.close()
        self.path.unlink(missing_ok=True)

    def commit(self) -> BlobRef:
        self.file.close()
        key = self.sha.hexdigest()
        final = LocalBlobStore.path_for(self.root, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            self.path.unlink()
        else:
            os.replace(self.path, final)
        return BlobRef(key=key, size=self.size, head=bytes(self.head))


class LocalBlobStore:
    """Blobs as files under ``root/ab/cd/<sha256>``."""

    def __init__(self, root: Path, head_bytes: int = 64 * 1024) -> None:
        self.root = Path(root)
        self.head_bytes = head_bytes

    @staticmethod
    def path_for(root: Path, key: str) -> Path:
        """Where blob ``key`` lives (the key is validated: it never comes from a client as-is)."""
        if not _KEY.match(key):
            raise ValueError("a blob key is 64 lower-case hex characters")
        return root / key[:2] / key[2:4] / key

    def open_writer(self, max_bytes: int) -> BlobWriter:
        """A writer for one incoming stream: ``write`` chunks, then ``commit`` or ``abort``."""
        return BlobWriter(self.root, max_bytes, self.head_bytes)

    def put_chunks(self, chunks: Iterable[bytes], max_bytes: int) -> BlobRef:
        writer = BlobWriter(self.root, max_bytes, self.head_bytes)
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    async def put_async(self, chunks: AsyncIterator[bytes], max_bytes: int) -> BlobRef:
        """:meth:`put_chunks` for an async stream (an HTTP upload), enforcing the limit as it reads."""
        writer = BlobWriter(self.root, max_bytes, self.head_bytes)
        try:
            async for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def put_bytes(self, data: bytes, max_bytes: int) -> BlobRef:
        """Store ``data`` (small inputs, tests, the CLI)."""
        return self.put_chunks([data], max_bytes)

    def get(self, key: str) -> bytes:
        return self.path_for(self.root, key).read_bytes()

    def exists(self, key: str) -> bool:
        """Whether blob ``key`` is stored."""
        return self.path_for(self.root, key).is_file()

    def delete(self, key: str) -> None:
        self.path_for(self.root, key).unlink(missing_ok=True)
