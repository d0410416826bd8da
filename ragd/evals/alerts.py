"""Alert delivery: a JSON POST to an operator's webhook when a drift alarm starts or ends.

The body is one object, easy to route from Alertmanager-style receivers, Slack bridges or a
pager::

    {"source": "ragd", "status": "firing" | "resolved", "tenant": "...", "detector": "...",
     "statistic": 0.12, "p_value": 0.0004, "window_n": 100, "reference_n": 300, "ts": "..."}

Delivery retries twice with backoff on network errors and 5xx answers, never on 4xx, and never
raises: a broken receiver must not break the drift check.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)


class WebhookAlerter:
    """Posts alert events to one URL."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, retries: int = 2, registry: CollectorRegistry | None = None
    ) -> None:
        self.url = url
        self.retries = retries
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.sent = Counter(
            "ragd_alerts", "Alert webhook deliveries.", ["outcome"], registry=registry or CollectorRegistry()
        )

    def send(self, event: dict[str, Any]) -> bool:
        """Deliver one event; True when the receiver answered 2xx."""
        body = {"source": "ragd", **event}
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                log.warning(
                    "alert webhook unreachable", extra={"error": type(exc).__name__, "attempt": attempt}
                )
            else:
                if response.is_success:
                    self.sent.labels("delivered").inc()
                    return True
                log.warning(
                    "alert webhook refused", extra={"status": response.status_code, "attempt": attempt}
                )
                if response.status_code < 500:
                    break
            if attempt < self.retries:
                time.sleep(0.5 * 2**attempt)
        self.sent.labels("failed").inc()
        return False

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()
