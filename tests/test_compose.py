"""compose.yaml is well-formed and configures ragd only through settings that exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ragd.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def _setting_exists(var: str) -> bool:
    parts = var.removeprefix("RAGD_").lower().split("__")
    model: Any = Settings
    for part in parts:
        fields = model.model_fields
        if part not in fields:
            return False
        ann = fields[part].annotation
        model = next(
            (a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if model is None:
            return part == parts[-1]
    return True


def test_compose_services_and_ragd_variables() -> None:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = doc["services"]
    assert {"api", "worker", "qdrant", "postgres", "redis", "vllm"} <= set(services)
    for name in ("api", "qdrant", "postgres", "redis", "vllm"):
        assert "healthcheck" in services[name], name
    for dep, cond in services["api"]["depends_on"].items():
        assert cond["condition"] == "service_healthy", dep
    gpu = services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert "gpu" in gpu["capabilities"]
    seen = set()
    for svc in services.values():
        for var in svc.get("environment") or {}:
            if var.startswith("RAGD_"):
                seen.add(var)
                assert _setting_exists(var), f"{var} is not a ragd setting"
    assert "RAGD_DB__URL" in seen and "RAGD_QUEUE__BACKEND" in seen


def test_setting_lookup_rejects_unknown() -> None:
    assert not _setting_exists("RAGD_DB__NOPE")
    assert _setting_exists("RAGD_QDRANT__URL")
