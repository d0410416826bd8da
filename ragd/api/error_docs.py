"""Document ragd's error envelope in the OpenAPI document, for every operation.

FastAPI documents only 200 and its own 422 body; ragd answers every error with one envelope
(``ragd.api.errors``), and any route can answer 400/404/413/414/422/429/503/507, protected ones also
401/403. Declaring them keeps the document true, so clients and property-based tests (the
schemathesis suite) can rely on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

_ENVELOPE = {
    "title": "ErrorEnvelope",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code."},
                "message": {"type": "string", "description": "What went wrong, for humans."},
                "request_id": {"type": "string", "description": "Quote it when reporting a problem."},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}
_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
_ALL = {
    400: "Bad request.",
    404: "Not found (or not visible to the caller).",
    413: "Body over the size limit.",
    414: "Query string over the length limit.",
    422: "The request does not match the schema.",
    429: "Too many requests; see Retry-After.",
    503: "A dependency is unavailable.",
    507: "The server's storage is full; the request was not carried out. Retry later.",
}
_PROTECTED = {401: "Missing or invalid credentials.", 403: "Not allowed for this caller.", 409: "Conflict."}
_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def _response(description: str, status: int) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _REF}}}
    if status == 429:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    return out


def add_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the envelope and the error statuses to every operation of an OpenAPI document."""
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorEnvelope"] = _ENVELOPE
    for item in schema.get("paths", {}).values():
        for method, op in item.items():
            if method not in _METHODS:
                continue
            responses = op.setdefault("responses", {})
            codes = dict(_ALL)
            if op.get("security"):
                codes |= _PROTECTED
            for status, description in codes.items():
                existing = responses.get(str(status)) or {}
                # Routes may list a status without a body (``responses={404: {}}``); FastAPI's own
                # 422 body is not what ragd sends. Both get the envelope.
                if not existing.get("content") or status == 422:
                    responses[str(status)] = _response(existing.get("description", description), status)
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}" not in json.dumps(schema):
            schema["components"]["schemas"].pop(name, None)
    return schema


def install_error_docs(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the error responses (computed once, on first request)."""
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_error_responses(original())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
