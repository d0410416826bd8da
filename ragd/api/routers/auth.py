"""``/v1/auth``: sign-in with a password for a short-lived JWT, and who-am-I."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ragd.api.deps import PUBLIC, AuthenticatorDep, ClientDep, CurrentPrincipal
from ragd.security.tokens import issue_token

router = APIRouter(prefix="/v1/auth", tags=["auth"])

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"


class TokenRequest(BaseModel):
    """A user's credentials."""

    tenant: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    username: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    """A bearer token for ``Authorization: Bearer <access_token>``."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")


class WhoAmI(BaseModel):
    """The authenticated caller."""

    id: str
    tenant: str
    role: str
    groups: list[str]
    auth_method: str
    key_id: str | None
    scopes: list[str]


@router.post(
    "/token",
    response_model=TokenResponse,
    dependencies=[PUBLIC],
    responses={401: {"description": "Wrong credentials."}, 429: {"description": "Too many failures."}},
)
async def token(body: TokenRequest, authn: AuthenticatorDep, client: ClientDep) -> TokenResponse:
    """Exchange a username and password for a short-lived access token (rate limited, audited)."""
    user = await authn.login(body.tenant, body.username, body.password, client)
    access, ttl = issue_token(authn.settings.auth, user)
    return TokenResponse(access_token=access, expires_in=ttl)


@router.get("/whoami", response_model=WhoAmI)
async def whoami(principal: CurrentPrincipal) -> WhoAmI:
    """The identity, role and groups the credentials stand for."""
    return WhoAmI(
        id=principal.id,
        tenant=principal.tenant,
        role=str(principal.role),
        groups=list(principal.groups),
        auth_method=principal.auth_method,
        key_id=principal.key_id,
        scopes=list(principal.scopes),
    )
