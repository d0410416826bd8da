"""Argon2id hashing for passwords and API-key secrets.

Parameters follow OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): strong enough for
passwords, and API-key secrets carry 256 bits of entropy on top. Verification is constant-time
inside argon2; :func:`burn_verify` spends the same work when there is nothing to verify against,
so a missing user or key prefix cannot be told from a wrong secret by timing.
"""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_secret(secret: str) -> str:
    """An argon2id hash (PHC string) of ``secret``."""
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """Whether ``secret`` matches ``stored_hash`` (never raises on a malformed hash)."""
    try:
        return _HASHER.verify(stored_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with weaker parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("ragd-timing-equaliser")


def burn_verify(secret: str) -> None:
    """Spend one verification's work, for callers that had no hash to verify against."""
    verify_secret(_dummy_hash(), secret)
