"""The tenant-isolation check run on every response body.

A response to tenant T leaks when it contains another tenant's marker word, a signature of one
of its documents' text, or one of its document, job, collection or session ids.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass

from bench.reliability.corpus import TENANT_TAGS, TenantCorpus

_TOKEN = re.compile(r"[A-Za-z0-9_-]{12,}")


@dataclass(frozen=True)
class Leak:
    """One forbidden item found in a response."""

    tenant: str
    owner: str
    kind: str
    item: str
    where: str


class IsolationChecker:
    """Knows each tenant's secrets (static text and ids learned while traffic runs)."""

    def __init__(self, corpora: dict[str, TenantCorpus]) -> None:
        self._lock = threading.Lock()
        self.tenants = list(corpora)
        self._signatures = {
            t: [d.signature for d in c.docs if len(d.signature) >= 24] for t, c in corpora.items()
        }
        self._ids: dict[str, dict[str, str]] = defaultdict(dict)  # tenant -> id -> kind
        self.checked = 0
        self.leaks: list[Leak] = []

    def learn(self, tenant: str, kind: str, value: str | None) -> None:
        """Remember an id that belongs to ``tenant`` (document, job, collection, session)."""
        if value and len(value) >= 12:
            with self._lock:
                self._ids[tenant][value] = kind

    def check(self, tenant: str, text: str, where: str) -> list[Leak]:
        """Every item of another tenant found in ``text`` (a response body sent to ``tenant``)."""
        found: list[Leak] = []
        tokens = set(_TOKEN.findall(text)) if text else set()
        for owner in self.tenants:
            if owner == tenant or not text:
                continue
            tag = TENANT_TAGS.get(owner)
            if tag and tag in text:
                found.append(Leak(tenant, owner, "marker", tag, where))
            for sig in self._signatures.get(owner, ()):
                if sig in text:
                    found.append(Leak(tenant, owner, "text", sig, where))
                    break
            ids = self._ids.get(owner, {})
            for tok in tokens & ids.keys():
                found.append(Leak(tenant, owner, ids[tok], tok, where))
        with self._lock:
            self.checked += 1
            self.leaks.extend(found)
        return found
