"""Logging set-up: one JSON object per line, with the request id of the current request."""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

#: The id of the request being served, for log records and the error envelope.
request_id_var: ContextVar[str] = ContextVar("request_id", default="")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Route ragd's, uvicorn's and the libraries' logs through one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if json:
        # Progress bars (model loading in transformers / sentence-transformers) would break the
        # one-JSON-object-per-line contract of the log stream.
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Chatty libraries stay at WARNING unless ragd itself is debugging.
    for name in ("httpx", "httpcore", "urllib3", "sentence_transformers", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
