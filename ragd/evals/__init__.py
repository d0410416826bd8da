"""Offline evaluation records, comparisons, reports, production monitoring, drift and A/B tests."""

from ragd.evals.records import (
    capture_config,
    code_version,
    get_eval_run,
    list_eval_runs,
    lower_is_better,
    qdrant_index_snapshot,
    record_eval_run,
)

__all__ = [
    "capture_config",
    "code_version",
    "get_eval_run",
    "list_eval_runs",
    "lower_is_better",
    "qdrant_index_snapshot",
    "record_eval_run",
]
