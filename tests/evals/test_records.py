"""Eval runs as records, on SQLite and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from sqlalchemy import Engine

from ragd.config import Settings
from ragd.db import build_engine, migrate
from ragd.errors import BadRequest, NotFound
from ragd.evals.records import (
    capture_config,
    get_eval_run,
    list_eval_runs,
    lower_is_better,
    qdrant_index_snapshot,
    record_eval_run,
)


@pytest.fixture
def engine(db_settings: Settings) -> Iterator[Engine]:
    eng = build_engine(db_settings)
    migrate(eng)
    yield eng
    eng.dispose()


def test_run_round_trips_with_exact_config(engine: Engine, db_settings: Settings) -> None:
    config = capture_config(
        db_settings,
        embedder="all-MiniLM-L6-v2",
        adapter="scifact-lora@2",
        prompts={"system": "Answer from the context."},
        params={"top_k": np.int64(10)},
    )
    run = record_eval_run(
        engine,
        kind="retrieval",
        config=config,
        metrics={"ndcg@10": np.float32(0.5), "broken": float("nan")},
        items=[{"id": "q1", "ndcg@10": 0.25, "latency_ms": np.float64(3.5)}, {"id": "q2", "ndcg@10": 0.75}],
        tenant="acme",
    )
    got = get_eval_run(engine, run.id, tenant="acme")
    assert got.metrics == {"ndcg@10": 0.5, "broken": None}
    assert got.items[0] == {"id": "q1", "ndcg@10": 0.25, "latency_ms": 3.5}
    cfg = got.config
    assert cfg["params"] == {"top_k": 10}
    assert cfg["adapter"] == {"name": "scifact-lora@2"}
    assert cfg["code"].startswith("0.")
    assert "ragas" in cfg["packages"]
    assert cfg["model"]["llamacpp"]["sha256"] and len(cfg["prompt_hash"]) == 16
    # The same setup gives the same fingerprint; a changed prompt does not.
    again = record_eval_run(engine, kind="retrieval", config=config, metrics={}, items=[])
    other = capture_config(
        db_settings,
        embedder="all-MiniLM-L6-v2",
        adapter="scifact-lora@2",
        prompts={"system": "Answer briefly."},
        params={"top_k": 10},
    )
    changed = record_eval_run(engine, kind="retrieval", config=other, metrics={}, items=[])
    assert again.config["fingerprint"] == cfg["fingerprint"] != changed.config["fingerprint"]


def test_runs_are_tenant_scoped_and_listed_newest_first(engine: Engine) -> None:
    a = record_eval_run(engine, kind="qa", config={}, metrics={"f1": 0.1}, items=[], tenant="a")
    b = record_eval_run(engine, kind="qa", config={}, metrics={"f1": 0.2}, items=[], tenant="b")
    with pytest.raises(NotFound):
        get_eval_run(engine, a.id, tenant="b")
    assert [r.id for r in list_eval_runs(engine, tenant="b")] == [b.id]
    assert get_eval_run(engine, b.id[:8]).id == b.id  # unique prefix
    with pytest.raises(NotFound):
        get_eval_run(engine, "../../etc/passwd")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": ""}, "invalid eval kind"),
        ({"kind": "x" * 40}, "invalid eval kind"),
        ({"kind": "drop table;"}, "invalid eval kind"),
        ({"metrics": {"f1": "high"}}, "not a number"),
        ({"items": [{"id": "1"}, {"id": "1"}]}, "duplicate item id"),
        ({"items": ["not an object"]}, "not an object"),
    ],
)
def test_bad_records_are_refused(engine: Engine, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"kind": "qa", "config": {}, "metrics": {}, "items": []}
    args.update(kwargs)
    with pytest.raises(BadRequest, match=message):
        record_eval_run(engine, **args)  # type: ignore[arg-type]


def test_index_snapshot_fingerprints_contents() -> None:
    client = QdrantClient(location=":memory:")
    client.create_collection("c", vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE))
    point = models.PointStruct(id=1, vector=[1.0, 0.0], payload={"document_id": "d", "version": 1})
    client.upsert("c", [point])
    first = qdrant_index_snapshot(client, "c")
    assert first["points"] == 1 and qdrant_index_snapshot(client, "c") == first
    client.upsert(
        "c", [models.PointStruct(id=2, vector=[0.0, 1.0], payload={"document_id": "d", "version": 2})]
    )
    assert qdrant_index_snapshot(client, "c")["fingerprint"] != first["fingerprint"]


def test_metric_direction() -> None:
    assert lower_is_better("latency_ms") and lower_is_better("p95_latency_ms")
    assert not lower_is_better("ndcg@10")
