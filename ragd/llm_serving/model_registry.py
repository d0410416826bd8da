"""The model registry: versioned models with lineage and a stage, over the ``ModelEntry`` table.

Every trained or prepared artefact (base model, prepared HF directory, LoRA adapter, embedder,
classifier) is registered here with an auto-incremented version per name, the base model it came
from, a hash of its training data and its metrics. One version per name may be in ``production``;
promoting a version moves the previous production version back to ``staged``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ragd.db.models import ModelEntry, ModelStage
from ragd.errors import BadRequest, Conflict, NotFound
from ragd.hashing import sha256_files

ModelKind = Literal["base", "prepared", "lora", "embedder", "classifier"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
_MAX_NAME = 128


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > _MAX_NAME or not all(c.isalnum() or c in "-_.:" for c in name):
        raise BadRequest(
            "model name must be 1-128 characters of letters, digits, '-', '_', '.' or ':'",
            details={"name": name[:64]},
        )
    return name


def _check_kind(kind: str) -> None:
    if kind not in MODEL_KINDS:
        raise BadRequest(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


def data_hash(paths: Iterable[Path | str]) -> str:
    """A sha256 over the bytes of ``paths`` (the training-data lineage of a model)."""
    return sha256_files(paths)


def register_model(
    engine: Engine,
    *,
    name: str,
    kind: str,
    path: str | Path,
    base_model: str | None = None,
    training_data_hash: str | None = None,
    metrics: dict[str, Any] | None = None,
    stage: str = "staged",
) -> ModelEntry:
    """Register a new version of ``name`` (version = previous + 1) and return it.

    With ``stage="production"`` the new version is promoted at once (the previous production
    version goes back to ``staged``).
    """
    name = _check_name(name)
    _check_kind(kind)
    try:
        wanted = ModelStage(stage)
    except ValueError as exc:
        raise BadRequest(f"unknown stage {stage!r}; choose staged, production or archived") from exc
    for attempt in range(3):  # two writers may race for the same version number
        with Session(engine) as session:
            latest = session.exec(select(func.max(ModelEntry.version)).where(ModelEntry.name == name)).one()
            entry = ModelEntry(
                name=name,
                version=(latest or 0) + 1,
                kind=kind,
                stage=ModelStage.staged if wanted is ModelStage.production else wanted,
                path=str(path),
                base_model=base_model,
                training_data_hash=training_data_hash,
                metrics=dict(metrics or {}),
            )
            session.add(entry)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                if attempt == 2:
                    raise Conflict(f"could not allocate a version for {name!r}") from None
                continue
            session.refresh(entry)
            break
    if wanted is ModelStage.production:
        return promote(engine, name, entry.version)
    return entry


def _select(session: Session, name: str, version: int | None) -> ModelEntry:
    query = select(ModelEntry).where(ModelEntry.name == name)
    if version is None:
        query = query.order_by(col(ModelEntry.version).desc())
    else:
        query = query.where(ModelEntry.version == version)
    entry = session.exec(query).first()
    if entry is None:
        suffix = "" if version is None else f" version {version}"
        raise NotFound(f"no model {name!r}{suffix} in the registry")
    return entry


def get_model(engine: Engine, name: str, version: int | None = None) -> ModelEntry:
    """One version of ``name`` (the latest when ``version`` is None); 404 when absent."""
    with Session(engine) as session:
        return _select(session, _check_name(name), version)


def get_production(engine: Engine, name: str) -> ModelEntry | None:
    """The production version of ``name``, or None."""
    with Session(engine) as session:
        return session.exec(
            select(ModelEntry).where(
                ModelEntry.name == _check_name(name), ModelEntry.stage == ModelStage.production
            )
        ).first()


def list_models(
    engine: Engine,
    *,
    name: str | None = None,
    kind: str | None = None,
    stage: str | None = None,
) -> list[ModelEntry]:
    """Registry entries, newest first within each name, optionally filtered."""
    query = select(ModelEntry)
    if name is not None:
        query = query.where(ModelEntry.name == _check_name(name))
    if kind is not None:
        _check_kind(kind)
        query = query.where(ModelEntry.kind == kind)
    if stage is not None:
        try:
            query = query.where(ModelEntry.stage == ModelStage(stage))
        except ValueError as exc:
            raise BadRequest(f"unknown stage {stage!r}") from exc
    query = query.order_by(col(ModelEntry.name), col(ModelEntry.version).desc())
    with Session(engine) as session:
        return list(session.exec(query).all())


def promote(engine: Engine, name: str, version: int | None = None) -> ModelEntry:
    """Make ``name``/``version`` (latest when None) the production version; returns it.

    The previous production version of the same name is moved back to ``staged``. An archived
    version cannot be promoted (register it again instead).
    """
    name = _check_name(name)
    with Session(engine) as session:
        entry = _select(session, name, version)
        if entry.stage == ModelStage.archived:
            raise Conflict(f"{name} v{entry.version} is archived and cannot be promoted")
        current = session.exec(
            select(ModelEntry).where(ModelEntry.name == name, ModelEntry.stage == ModelStage.production)
        ).all()
        for other in current:
            if other.id != entry.id:
                other.stage = ModelStage.staged
                session.add(other)
        entry.stage = ModelStage.production
        session.add(entry)
        session.commit()
        session.refresh(entry)
        return entry


def archive(engine: Engine, name: str, version: int) -> ModelEntry:
    """Move one version to ``archived`` (it stays listed for lineage); returns it."""
    with Session(engine) as session:
        entry = _select(session, _check_name(name), version)
        entry.stage = ModelStage.archived
        session.add(entry)
        session.commit()
        session.refresh(entry)
        return entry


def update_metrics(engine: Engine, name: str, version: int, metrics: dict[str, Any]) -> ModelEntry:
    """Merge ``metrics`` into a version's recorded metrics (e.g. after an evaluation)."""
    with Session(engine) as session:
        entry = _select(session, _check_name(name), version)
        entry.metrics = {**entry.metrics, **metrics}
        session.add(entry)
        session.commit()
        session.refresh(entry)
        return entry
