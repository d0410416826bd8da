"""Privacy defaults: no library telemetry leaves the machine (DESIGN.md §4).

ragas, guardrails-ai, unstructured and Hugging Face libraries phone home unless told not to.
:func:`disable_telemetry` is called by every entry point (CLI, app factory, Celery worker) before
those libraries are imported. It is the one place in ragd that writes process environment
variables, which is how these libraries read their switches.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Stops guardrails-ai's import-time download of NLTK punkt (see offline/nltk_data/README).
OFFLINE_NLTK_DATA = Path(__file__).parent / "offline" / "nltk_data"

_OFF = {
    "RAGAS_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    # Not telemetry, but the same kind of switch: library progress bars (model loading) clutter
    # ragd's own output and logs; ragd shows its own progress where it matters (rich).
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # Not telemetry either: guardrails-ai otherwise runs each validation on a new event loop with
    # its validators in fresh threads. ragd's validators are CPU-bound and share one encoder
    # cache, so that buys nothing and costs ~5 ms per chain (measured: input chain p50 13.8 ms
    # -> 8.4 ms on the deepset dev split); sequential validation also never meets a running loop.
    "GUARDRAILS_RUN_SYNC": "true",
}


def disable_telemetry() -> None:
    """Switch off analytics and hub access of the libraries ragd uses (idempotent)."""
    for key, value in _OFF.items():
        os.environ.setdefault(key, value)
    nltk_paths = os.environ.get("NLTK_DATA", "").split(os.pathsep)
    if str(OFFLINE_NLTK_DATA) not in nltk_paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(OFFLINE_NLTK_DATA), *filter(None, nltk_paths)])


def disable_guardrails_metrics() -> None:
    """guardrails-ai exports traces unless its rc says otherwise; turn that off in process.

    Call it where guards are built, not at start-up: importing guardrails costs seconds and
    hundreds of MB. Note that ``guardrails.Guard()`` re-reads ``~/.guardrailsrc`` into
    ``settings.rc`` when constructed, so call this again after constructing a Guard (and
    configure the guard with ``allow_metrics_collection=False``).
    """
    try:
        from guardrails import settings as gr_settings
    except ImportError:  # guardrails not installed in this environment
        return
    gr_settings.rc.enable_metrics = False
