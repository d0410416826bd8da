"""Request limits and CORS: body size, URL query length, and the CORS allowlist.

The body limit is enforced while the body streams in (a missing or lying ``Content-Length``
does not help), with a larger allowance for ``multipart/form-data`` uploads; ingestion still
checks each file against ``ingestion.max_upload_bytes``. Pure ASGI, so streamed responses pass
through untouched.
"""

from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragd.api.errors import error_body
from ragd.config import Settings
from ragd.errors import BadRequest


class _TooLarge(HTTPException):
    # An HTTPException, so FastAPI's body parsing re-raises it (it turns other errors raised
    # while reading the body into a 400) and the error handlers render the 413 envelope.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


class RequestLimitsMiddleware:
    """413 for bodies over the limit, 414 for URL query strings over the limit."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_upload_body: int, max_query: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload_body = max_upload_body
        self.max_query = max_query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query:
            await _reply(send, 414, "uri_too_long", f"the query string is over {self.max_query} bytes")
            return
        headers = dict(scope["headers"])
        is_upload = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.max_upload_body if is_upload else self.max_body
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _reply(send, 413, "payload_too_large", f"the request body is over {limit} bytes")
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reply(send, 413, "payload_too_large", f"the request body is over {limit} bytes")


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(status, code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_query_length(settings: Settings, text: str) -> None:
    """Raise 400 when a chat/search query is longer than ``auth.max_query_chars``."""
    if len(text) > settings.auth.max_query_chars:
        raise BadRequest(f"the query is over {settings.auth.max_query_chars} characters")


def install_limits(app: FastAPI, settings: Settings) -> None:
    """Add the limits and CORS middleware (call before the request-context middleware is added,
    so that these run inside it and their responses carry request ids and security headers)."""
    upload = settings.ingestion.max_upload_bytes * settings.ingestion.max_files_per_upload
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body=settings.api.max_body_bytes,
        max_upload_body=min(upload, 4 * 1024**3),
        max_query=settings.auth.max_url_query_bytes,
    )
    if settings.auth.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.auth.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            allow_credentials=False,
            max_age=600,
        )
