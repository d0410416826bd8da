"""API keys: ``ragd_<prefix>_<secret>``, shown once, stored as an argon2 hash, found by prefix.

The prefix (12 hex characters, public) finds the row; the secret (256 random bits) is verified
against the argon2 hash. A verified key is remembered for a short while by the SHA-256 of the
presented string, so a busy client does not pay an argon2 verification per request; revocation,
expiry and role changes are still read from the row on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from ragd.db.models import ApiKey, Role, User, utcnow
from ragd.security.passwords import burn_verify, hash_secret, verify_secret
from ragd.security.principal import Principal
from ragd.security.rules import ROLE_RANK, SCOPES

KEY_PREFIX = "ragd_"
_KEY_RE = re.compile(r"^ragd_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: the row and the plaintext, which is never stored or shown again."""

    row: ApiKey
    plaintext: str


def parse_key(presented: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else ``None``."""
    m = _KEY_RE.match(presented)
    return (m.group(1), m.group(2)) if m else None


def looks_like_key(presented: str) -> bool:
    """Whether ``presented`` is meant as an API key (as opposed to a JWT)."""
    return presented.startswith(KEY_PREFIX)


def create_key(
    session: Session,
    *,
    tenant: str,
    role: Role,
    name: str = "",
    user_id: str | None = None,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Create a key (flushed, not committed). The plaintext is in the result and nowhere else."""
    bad = sorted(set(scopes or []) - set(SCOPES))
    if bad:
        raise ValueError(f"unknown scopes {bad}; choose from {list(SCOPES)}")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{KEY_PREFIX}{prefix}_{secret}"
    row = ApiKey(
        prefix=prefix,
        key_hash=hash_secret(secret),
        name=name,
        tenant=tenant,
        user_id=user_id,
        role=role,
        scopes=sorted(set(scopes or [])),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return IssuedKey(row=row, plaintext=plaintext)


class _VerifiedCache:
    """SHA-256 digests of recently verified keys, by key id, for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = 60.0, size: int = 4096) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._items: OrderedDict[str, tuple[bytes, str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key_id: str, digest: bytes, key_hash: str) -> bool:
        with self._lock:
            item = self._items.get(key_id)
        if item is None or item[2] < time.monotonic() or item[1] != key_hash:
            return False
        return hmac.compare_digest(item[0], digest)

    def put(self, key_id: str, digest: bytes, key_hash: str) -> None:
        with self._lock:
            self._items[key_id] = (digest, key_hash, time.monotonic() + self._ttl_s)
            self._items.move_to_end(key_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_CACHE = _VerifiedCache()


def _aware(ts: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone-aware columns; they are UTC.
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def key_is_live(row: ApiKey, now: datetime | None = None) -> bool:
    """Not revoked and not expired."""
    expires = _aware(row.expires_at)
    return row.revoked_at is None and (expires is None or expires > (now or utcnow()))


@dataclass(frozen=True)
class KeyCheck:
    """Outcome of checking a presented key: the principal, or why not (for the audit log)."""

    principal: Principal | None
    reason: str = ""
    key_id: str | None = None
    tenant: str = ""


def authenticate_key(session: Session, presented: str) -> KeyCheck:
    """Check a presented key; every failure costs one argon2 verification."""
    parsed = parse_key(presented)
    if parsed is None:
        burn_verify(presented[:64])
        return KeyCheck(None, "malformed key")
    prefix, secret = parsed
    row = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if row is None:
        burn_verify(secret)
        return KeyCheck(None, "unknown key")
    digest = hashlib.sha256(presented.encode()).digest()
    if not _CACHE.hit(row.id, digest, row.key_hash):
        if not verify_secret(row.key_hash, secret):
            return KeyCheck(None, "wrong secret", row.id, row.tenant)
        _CACHE.put(row.id, digest, row.key_hash)
    if not key_is_live(row):
        return KeyCheck(None, "revoked or expired key", row.id, row.tenant)
    user = session.get(User, row.user_id) if row.user_id else None
    if row.user_id and (user is None or user.disabled or user.tenant != row.tenant):
        return KeyCheck(None, "key owner disabled", row.id, row.tenant)
    return KeyCheck(principal_for_key(row, user), key_id=row.id, tenant=row.tenant)


def principal_for_key(row: ApiKey, user: User | None) -> Principal:
    """The principal a key acts as: its user's identity, capped at the weaker of the two roles."""
    scopes = tuple(row.scopes)
    if user is None:
        return Principal(
            id=f"key:{row.id}",
            tenant=row.tenant,
            role=Role(row.role),
            key_id=row.id,
            scopes=scopes,
            auth_method="api_key",
            subjects=(f"key:{row.id}",),
        )
    role = min(Role(row.role), Role(user.role), key=ROLE_RANK.__getitem__)
    return Principal(
        id=user.id,
        tenant=row.tenant,
        role=role,
        groups=tuple(user.groups),
        key_id=row.id,
        scopes=scopes,
        auth_method="api_key",
    )


def touch_last_used(session: Session, key_id: str) -> None:
    """Record use of a key, at most once a minute per key (keeps writes off the hot path)."""
    row = session.get(ApiKey, key_id)
    now = utcnow()
    last = _aware(row.last_used_at) if row else None
    if row is not None and (last is None or (now - last).total_seconds() > 60):
        row.last_used_at = now
        session.add(row)
