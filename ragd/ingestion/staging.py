"""Embedded chunks handed from a worker to the process that owns the index.

A Celery worker may not open a local-mode Qdrant path (one process per path), so it stores its
finished records here, on the data dir it shares with the server, and the server writes them.
JSON, not pickle: a staged file is data, never code.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragd.retrieval.base import ChunkRecord, SparseVector

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class StagedRecords:
    """A document version's records, ready to upsert, and the ACL to publish them with."""

    records: list[ChunkRecord]
    acl: list[str]


class StagingArea:
    """One JSON file per job under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):
            raise ValueError("job ids are 32 hex characters")
        return self.root / f"{job_id}.json"

    def save(self, job_id: str, staged: StagedRecords) -> None:
        """Write atomically (temporary file, then rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        dense = np.asarray([r.dense for r in staged.records], dtype=np.float32)
        body = {
            "acl": staged.acl,
            "dense": base64.b64encode(dense.tobytes()).decode(),
            "dim": int(dense.shape[1]) if dense.ndim == 2 else 0,
            "records": [
                {"id": r.point_id, "si": r.sparse.indices, "sv": r.sparse.values, "payload": r.payload}
                for r in staged.records
            ],
        }
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh)
        os.replace(tmp, self._path(job_id))

    def load(self, job_id: str) -> StagedRecords:
        """Read what :meth:`save` wrote."""
        body = json.loads(self._path(job_id).read_text())
        dense = np.frombuffer(base64.b64decode(body["dense"]), dtype=np.float32)
        dense = dense.reshape(len(body["records"]), body["dim"]) if body["records"] else dense
        records = [
            ChunkRecord(
                point_id=r["id"],
                dense=dense[i].tolist(),
                sparse=SparseVector(indices=r["si"], values=r["sv"]),
                payload=r["payload"],
            )
            for i, r in enumerate(body["records"])
        ]
        return StagedRecords(records=records, acl=list(body["acl"]))

    def delete(self, job_id: str) -> None:
        """Remove the staged file of ``job_id`` if present."""
        self._path(job_id).unlink(missing_ok=True)
