"""Turning a presented credential into a :class:`Principal`, with brute-force protection.

Failed attempts are counted per client address (and, for passwords, per tenant/username) in
the rate limiter; once over ``auth.auth_failures_per_minute`` further attempts are refused with
429 *before* any secret is checked, so guessing is throttled, and every failure is audited.
Per-key throttling is deliberately absent: a key's secret has 256 bits, and throttling by its
public prefix would let anyone lock a legitimate key holder out.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import Session, select

from ragd.config import Settings
from ragd.db.models import User
from ragd.errors import RateLimited, Unauthenticated
from ragd.security.api_keys import authenticate_key, looks_like_key, touch_last_used
from ragd.security.audit import audit
from ragd.security.passwords import burn_verify, hash_secret, needs_rehash, verify_secret
from ragd.security.principal import Principal
from ragd.security.rate_limit import RateLimiter, build_rate_limiter
from ragd.security.tokens import OIDCVerifier, TokenError, unverified_issuer, verify_local_token


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from (for throttling and the audit log)."""

    ip: str = ""
    request_id: str = ""


class ConcurrencyLimiter:
    """Requests in flight per key, in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> bool:
        """Take a slot for ``key``; ``False`` when all are taken."""
        with self._lock:
            n = self._counts.get(key, 0)
            if n >= self.limit:
                return False
            self._counts[key] = n + 1
            return True

    def release(self, key: str) -> None:
        """Give a slot back."""
        with self._lock:
            n = self._counts.get(key, 0) - 1
            if n <= 0:
                self._counts.pop(key, None)
            else:
                self._counts[key] = n

    def in_flight(self, key: str) -> int:
        """Slots ``key`` holds now."""
        with self._lock:
            return self._counts.get(key, 0)


@dataclass
class Authenticator:
    """Authentication, brute-force throttling and per-key limits for one app."""

    settings: Settings
    engine: Engine
    limiter: RateLimiter
    oidc: OIDCVerifier | None = None
    concurrency: ConcurrencyLimiter = field(default_factory=lambda: ConcurrencyLimiter(16))

    # --- brute force -------------------------------------------------------------------------

    async def _throttled(self, buckets: list[str], client: ClientInfo) -> None:
        n = self.settings.auth.auth_failures_per_minute
        for bucket in buckets:
            decision = await self.limiter.hit(f"authfail:{bucket}", n, 60.0, cost=0)
            if not decision.allowed:
                # One audit event per minute per bucket: a flood must not flood the log too.
                first = await self.limiter.hit(f"authfail-audited:{bucket}", 1, 60.0)
                if first.allowed:
                    await asyncio.to_thread(
                        audit,
                        self.engine,
                        action="auth.throttled",
                        outcome="denied",
                        ip=client.ip,
                        request_id=client.request_id,
                        detail={"bucket": bucket.split(":", 1)[0]},
                    )
                raise RateLimited("too many failed sign-in attempts", retry_after_s=decision.retry_after_s)

    async def _failed(
        self, buckets: list[str], client: ClientInfo, reason: str, tenant: str = "", actor: str = ""
    ) -> Unauthenticated:
        n = self.settings.auth.auth_failures_per_minute
        for bucket in buckets:
            await self.limiter.hit(f"authfail:{bucket}", n, 60.0)
        await asyncio.to_thread(
            audit,
            self.engine,
            action="auth.failure",
            outcome="denied",
            tenant=tenant,
            actor=actor,
            ip=client.ip,
            request_id=client.request_id,
            detail={"reason": reason},
        )
        return Unauthenticated("invalid credentials")

    # --- credentials -------------------------------------------------------------------------

    async def authenticate(self, credential: str | None, client: ClientInfo) -> Principal:
        """The principal for an API key or bearer token; raises 401 or 429."""
        if not credential:
            raise Unauthenticated("credentials required: Authorization: Bearer <key or token>, or X-API-Key")
        buckets = [f"ip:{client.ip}"]
        await self._throttled(buckets, client)
        try:
            principal, reason, tenant, actor = await asyncio.to_thread(self._check, credential)
        except TokenError as exc:
            raise await self._failed(buckets, client, str(exc)) from None
        if principal is None:
            raise await self._failed(buckets, client, reason, tenant, actor)
        return principal

    def _check(self, credential: str) -> tuple[Principal | None, str, str, str]:
        with Session(self.engine, expire_on_commit=False) as session:
            if looks_like_key(credential):
                check = authenticate_key(session, credential)
                if check.principal is not None and check.key_id:
                    touch_last_used(session, check.key_id)
                    session.commit()
                actor = f"key:{check.key_id}" if check.key_id else ""
                return check.principal, check.reason, check.tenant, actor
            if len(credential) > 8192 or credential.count(".") != 2:
                return None, "malformed credential", "", ""
            issuer = unverified_issuer(credential)
            if self.oidc is not None and issuer == self.oidc.issuer:
                return self.oidc.verify(credential), "", "", ""
            return verify_local_token(self.settings.auth, session, credential), "", "", ""

    async def login(self, tenant: str, username: str, password: str, client: ClientInfo) -> User:
        """The user whose password this is; raises 401 or 429. Audited either way."""
        buckets = [f"ip:{client.ip}", f"user:{tenant}/{username}"]
        await self._throttled(buckets, client)
        user = await asyncio.to_thread(self._check_password, tenant, username, password)
        if user is None:
            raise await self._failed(
                buckets, client, "wrong username or password", tenant, f"user:{username}"
            )
        await asyncio.to_thread(
            audit,
            self.engine,
            action="auth.token",
            tenant=tenant,
            actor=user.id,
            ip=client.ip,
            request_id=client.request_id,
        )
        return user

    def _check_password(self, tenant: str, username: str, password: str) -> User | None:
        with Session(self.engine, expire_on_commit=False) as session:
            user = session.exec(select(User).where(User.tenant == tenant, User.username == username)).first()
            if user is None or not user.password_hash or user.disabled:
                burn_verify(password)
                return None
            if not verify_secret(user.password_hash, password):
                return None
            if needs_rehash(user.password_hash):
                user.password_hash = hash_secret(password)
                session.add(user)
                session.commit()
            return user

    # --- limits ------------------------------------------------------------------------------

    async def enforce_rate(self, principal: Principal) -> None:
        """Spend one request from the caller's per-key budget; 429 with Retry-After when empty."""
        auth = self.settings.auth
        decision = await self.limiter.hit(
            f"req:{limit_key(principal)}", auth.rate_limit_per_minute, 60.0, burst=auth.rate_limit_burst
        )
        if not decision.allowed:
            raise RateLimited("rate limit exceeded", retry_after_s=decision.retry_after_s)


def limit_key(principal: Principal) -> str:
    """The identity limits are counted against: the key, else the user."""
    return f"{principal.tenant}/{principal.key_id or principal.id}"


def build_authenticator(settings: Settings, engine: Engine) -> Authenticator:
    """Everything authentication needs, built without any I/O (JWKS and Redis connect lazily)."""
    auth = settings.auth
    oidc = OIDCVerifier(auth) if auth.oidc_issuer else None
    return Authenticator(
        settings=settings,
        engine=engine,
        limiter=build_rate_limiter(auth),
        oidc=oidc,
        concurrency=ConcurrencyLimiter(auth.max_concurrent_per_key),
    )
