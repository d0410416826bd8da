"""The one JSON error envelope: ``{"error": {"code", "message", "request_id", "details"}}``."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragd.errors import RagdError, RateLimited
from ragd.log_config import request_id_var

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_body(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope for one error."""
    return {
        "error": {
            "code": code,
            "message": message,
            "request_id": request_id_var.get(),
            "details": details or {},
        }
    }


def _response(status: int, code: str, message: str, details: Any = None, headers: Any = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, details), status_code=status, headers=headers)


async def _ragd_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagdError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    if exc.status_code >= 500:
        log.warning("request failed", extra={"code": exc.code, "error": exc.message})
    return _response(exc.status_code, exc.code, exc.message, exc.details, headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return _response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only location, message and type: never echo the submitted input back.
    problems = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()[:20]
    ]
    return _response(422, "validation_error", "the request does not match the schema", {"errors": problems})


INTERNAL_MESSAGE = "internal error; quote the request id when reporting it"


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return _response(500, "internal_error", INTERNAL_MESSAGE)


def _transient(
    what: str, message: str, retry_after_s: int
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """A handler answering 503 with Retry-After: the failure is transient, and the driver's
    message stays out of the body."""

    async def handler(_: Request, exc: Exception) -> JSONResponse:
        log.warning(what, extra={"error": type(exc).__name__})
        return _response(503, "service_unavailable", message, headers={"Retry-After": str(retry_after_s)})

    return handler


#: A full data volume or an exhausted disk quota.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


async def _os_error(request: Request, exc: Exception) -> JSONResponse:
    """A full data volume answers 507 with Retry-After (an upload's writers remove their partial
    files, and no file of the request is accepted); any other OS error is an internal error."""
    assert isinstance(exc, OSError)
    if exc.errno not in _NO_SPACE:
        return await _unhandled(request, exc)
    log.warning("data volume full", extra={"error": str(exc)[:200]})
    message = "the server's storage is full; the request was not carried out, retry later"
    return _response(507, "insufficient_storage", message, headers={"Retry-After": "30"})


#: A lost or refused database connection (restart, failover, full disk).
_database_down = _transient("database unavailable", "the metadata store is unavailable; retry shortly", 5)
#: Every pooled connection stayed checked out for db.pool_timeout_s: the server is overloaded.
_database_busy = _transient(
    "database connection pool exhausted", "the server is busy (no database connection free); retry shortly", 2
)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through the envelope."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    app.add_exception_handler(RagdError, _ragd_error)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(PoolTimeout, _database_busy)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OSError, _os_error)
    app.add_exception_handler(Exception, _unhandled)
