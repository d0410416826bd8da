"""ASGI middleware: request ids, access metrics and logs, security headers.

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through untouched.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragd.api.errors import INTERNAL_MESSAGE, error_body
from ragd.log_config import request_id_var

log = logging.getLogger("ragd.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; object-src 'none'"),
]


class RequestContextMiddleware:
    """Give every request an id (a safe client-supplied one is kept), time it, and log it."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "ragd_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "ragd_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = supplied if _SAFE_ID.match(supplied) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # Starlette answers unhandled errors outside this middleware, after the request id
            # is gone; answer here so even a 500 carries its id (body and header).
            if started:
                raise
            log.exception("unhandled error", extra={"path": scope.get("path", "")})
            body = json.dumps(error_body(500, "internal_error", INTERNAL_MESSAGE)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send_wrapper({"type": "http.response.start", "status": 500, "headers": headers})
            await send_wrapper({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            # The route template, not the raw path, keeps metric cardinality bounded.
            template = getattr(route, "path", "<unmatched>")
            self.requests.labels(scope["method"], template, str(status)).inc()
            self.latency.labels(scope["method"], template).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": template,
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                },
            )
            request_id_var.reset(token)
