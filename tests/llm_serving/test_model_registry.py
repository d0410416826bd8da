"""Model registry contract on SQLite and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from ragd.config import Settings
from ragd.db.engine import build_engine, migrate
from ragd.db.models import ModelStage
from ragd.errors import BadRequest, Conflict, NotFound
from ragd.llm_serving import model_registry as reg


@pytest.fixture
def engine(db_settings: Settings) -> Iterator[Engine]:
    eng = build_engine(db_settings)
    migrate(eng)
    yield eng
    eng.dispose()


def test_versions_increment_per_name_and_keep_lineage(engine: Engine) -> None:
    a1 = reg.register_model(
        engine,
        name="smollm2-qa",
        kind="lora",
        path="/a1",
        base_model="smollm2",
        training_data_hash="abc",
        metrics={"f1": 0.1},
    )
    a2 = reg.register_model(engine, name="smollm2-qa", kind="lora", path="/a2", base_model="smollm2")
    other = reg.register_model(engine, name="minilm-ft", kind="embedder", path="/e")
    assert (a1.version, a2.version, other.version) == (1, 2, 1)
    got = reg.get_model(engine, "smollm2-qa", 1)
    assert got.metrics == {"f1": 0.1} and got.training_data_hash == "abc" and got.base_model == "smollm2"
    assert reg.get_model(engine, "smollm2-qa").version == 2  # latest
    assert [e.version for e in reg.list_models(engine, name="smollm2-qa")] == [2, 1]
    assert [e.name for e in reg.list_models(engine, kind="embedder")] == ["minilm-ft"]


def test_promote_demotes_previous_production_and_archive_blocks_promotion(engine: Engine) -> None:
    reg.register_model(engine, name="clf", kind="classifier", path="/1")
    reg.register_model(engine, name="clf", kind="classifier", path="/2")
    assert reg.get_production(engine, "clf") is None
    reg.promote(engine, "clf", 1)
    assert reg.get_production(engine, "clf").version == 1  # type: ignore[union-attr]
    reg.promote(engine, "clf", 2)
    assert reg.get_production(engine, "clf").version == 2  # type: ignore[union-attr]
    assert reg.get_model(engine, "clf", 1).stage == ModelStage.staged
    reg.archive(engine, "clf", 1)
    assert reg.get_model(engine, "clf", 1).stage == ModelStage.archived
    with pytest.raises(Conflict):
        reg.promote(engine, "clf", 1)
    assert [e.version for e in reg.list_models(engine, stage="production")] == [2]


def test_register_straight_to_production(engine: Engine) -> None:
    reg.register_model(engine, name="emb", kind="embedder", path="/1", stage="production")
    second = reg.register_model(engine, name="emb", kind="embedder", path="/2", stage="production")
    assert second.stage == ModelStage.production
    assert reg.get_model(engine, "emb", 1).stage == ModelStage.staged


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "kind": "lora"},
        {"name": "x" * 500, "kind": "lora"},
        {"name": "a/../../etc", "kind": "lora"},
        {"name": "ok", "kind": "rocket"},
        {"name": "ok", "kind": "lora", "stage": "live"},
    ],
)
def test_bad_registrations_are_refused(engine: Engine, kwargs: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        reg.register_model(engine, path="/p", **kwargs)


def test_unknown_model_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        reg.get_model(engine, "nope")
    with pytest.raises(NotFound):
        reg.promote(engine, "nope", 3)
    with pytest.raises(NotFound):
        reg.archive(engine, "nope", 1)
