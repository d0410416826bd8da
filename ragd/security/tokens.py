"""JWT bearer tokens: ragd's own (HS256, short-lived) and, optionally, an external OIDC issuer's.

Local tokens are signed with ``auth.secret_key`` and name ragd as issuer and audience; the user
row is re-read on every request, so disabling a user or changing a role takes effect at once.
OIDC tokens are verified against the issuer's JWKS (a URL, fetched lazily and cached, or a
file); issuer, audience, expiry and algorithm are checked, and only asymmetric algorithms from
the configured allowlist are accepted, so ``none`` and HMAC-with-the-public-key are refused.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet
from sqlmodel import Session

from ragd.config import AuthSettings
from ragd.db.models import Role, User, utcnow
from ragd.security.principal import Principal

ISSUER = "ragd"
AUDIENCE = "ragd"
_LOCAL_ALG = "HS256"
_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}


class TokenError(Exception):
    """A token that must be refused; the message is for the audit log, not the client."""


def issue_token(auth: AuthSettings, user: User) -> tuple[str, int]:
    """A signed access token for ``user`` and its lifetime in seconds."""
    now = utcnow()
    ttl = auth.token_ttl_s
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user.id,
        "tenant": user.tenant,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl),
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(claims, auth.secret_key.get_secret_value(), algorithm=_LOCAL_ALG)
    return token, ttl


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` claim before verification (only to pick the verifier)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenError("malformed token") from exc
    iss = claims.get("iss")
    return iss if isinstance(iss, str) else None


def verify_local_token(auth: AuthSettings, session: Session, token: str) -> Principal:
    """The principal of a ragd-issued token; raises :class:`TokenError`."""
    try:
        claims = jwt.decode(
            token,
            auth.secret_key.get_secret_value(),
            algorithms=[_LOCAL_ALG],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            leeway=5,
        )
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {type(exc).__name__}") from exc
    user = session.get(User, str(claims["sub"]))
    if user is None or user.disabled or user.tenant != claims.get("tenant"):
        raise TokenError("token user unknown or disabled")
    return Principal(
        id=user.id, tenant=user.tenant, role=Role(user.role), groups=tuple(user.groups), auth_method="jwt"
    )


class OIDCVerifier:
    """Verifies an external issuer's tokens against its JWKS (fetched on first use, then cached)."""

    def __init__(self, auth: AuthSettings) -> None:
        if not (auth.oidc_issuer and auth.oidc_jwks and auth.oidc_audience):
            raise ValueError("OIDC needs auth.oidc_issuer, auth.oidc_audience and auth.oidc_jwks")
        refused = sorted(set(auth.oidc_algorithms) - _ASYMMETRIC)
        if refused:
            raise ValueError(f"auth.oidc_algorithms: {refused} not allowed (asymmetric algorithms only)")
        self.auth = auth
        self.issuer: str = auth.oidc_issuer
        self.audience: str = auth.oidc_audience
        self._jwks_source: str = auth.oidc_jwks
        self._client: PyJWKClient | None = None
        self._file_keys: PyJWKSet | None = None

    def _signing_key(self, token: str) -> PyJWK:
        src = self._jwks_source
        try:
            if src.startswith(("https://", "http://")):
                if self._client is None:
                    self._client = PyJWKClient(src, cache_keys=True, lifespan=3600, timeout=5)
                return self._client.get_signing_key_from_jwt(token)
            if self._file_keys is None:
                self._file_keys = PyJWKSet.from_dict(json.loads(Path(src).read_text()))
            kid = jwt.get_unverified_header(token).get("kid")
            keys = [k for k in self._file_keys.keys if kid is None or k.key_id == kid]
            if not keys:
                raise TokenError("no JWKS key matches the token's kid")
            return keys[0]
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            raise TokenError(f"cannot get the signing key: {type(exc).__name__}") from exc

    def verify(self, token: str) -> Principal:
        """The principal of a valid OIDC token; raises :class:`TokenError`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        if header.get("alg") not in self.auth.oidc_algorithms:
            raise TokenError(f"algorithm {header.get('alg')!r} refused")
        key = self._signing_key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self.auth.oidc_algorithms),
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {type(exc).__name__}") from exc
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        tenant = claims.get(self.auth.oidc_tenant_claim) or self.auth.oidc_default_tenant
        if not isinstance(tenant, str) or not tenant or len(tenant) > 64:
            raise TokenError("token names no tenant")
        role_claim = claims.get(self.auth.oidc_role_claim, "reader")
        try:
            role = Role(role_claim)
        except ValueError as exc:
            raise TokenError("unknown role claim") from exc
        groups = claims.get(self.auth.oidc_groups_claim, [])
        if not isinstance(groups, list):
            groups = []
        sub = str(claims["sub"])[:100]
        return Principal(
            id=f"oidc:{sub}",
            tenant=tenant,
            role=role,
            groups=tuple(str(g)[:100] for g in groups[:100]),
            auth_method="oidc",
        )
