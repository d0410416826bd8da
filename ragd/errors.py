"""ragd's error tree.

Every error a client may see is a :class:`RagdError` with an HTTP status and a stable ``code``;
the API turns it into the one JSON error envelope. Vendor exceptions are wrapped where they
happen (``raise IndexUnavailable(...) from exc``) so that no internal detail reaches a client.
"""

from __future__ import annotations

from typing import Any


class RagdError(Exception):
    """Base of all errors that map to a client-facing response."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadRequest(RagdError):
    """The request is malformed or violates a limit."""

    status_code = 400
    code = "bad_request"


class ValidationFailed(BadRequest):
    """The request body or parameters do not match the schema."""

    status_code = 422
    code = "validation_error"


class Unauthenticated(RagdError):
    """Missing, invalid, expired or revoked credentials."""

    status_code = 401
    code = "unauthenticated"


class Forbidden(RagdError):
    """Authenticated, but the role or grants do not allow this."""

    status_code = 403
    code = "forbidden"


class NotFound(RagdError):
    """The resource does not exist, or the caller may not know that it does."""

    status_code = 404
    code = "not_found"


class Conflict(RagdError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(RagdError):
    """A body or upload is over its configured limit."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(RagdError):
    """The content type is not one ragd can handle."""

    status_code = 415
    code = "unsupported_media_type"


class RateLimited(RagdError):
    """Too many requests; ``retry_after_s`` says when to try again."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(RagdError):
    """A dependency (database, vector store, model) is down or overloaded."""

    status_code = 503
    code = "service_unavailable"


class IndexUnavailable(ServiceUnavailable):
    """The vector store cannot be reached or refused the operation."""

    code = "index_unavailable"


class BackendUnavailable(ServiceUnavailable):
    """No chat-model backend could serve the request."""

    code = "backend_unavailable"


class ConfigError(Exception):
    """A setting is wrong; raised at start-up and printed as one line naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem
