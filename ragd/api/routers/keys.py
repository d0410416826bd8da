"""``/v1/keys``: create (the key is shown once), list, read and revoke API keys.

Admins manage every key of their tenant; other users manage their own keys and can never mint a
key stronger than themselves (role or scopes). Keys without a user cannot mint keys.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field, StrictBool
from sqlmodel import Session, col, select

from ragd.api.deps import AuditDep, CurrentPrincipal, SessionDep
from ragd.api.timestamps import UTCDateTime
from ragd.db.models import ApiKey, Role, User, utcnow
from ragd.errors import Forbidden, NotFound
from ragd.security.api_keys import create_key, key_is_live
from ragd.security.principal import Principal
from ragd.security.rules import SCOPES, permission_at_least, role_at_least, scope_cap

router = APIRouter(prefix="/v1/keys", tags=["keys"])

KeyId = Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]{1,32}$", description="Key id.")


class KeyCreate(BaseModel):
    """A new key. Without ``user_id`` the key acts for the caller (or, for admins, as a service)."""

    name: str = Field(default="", max_length=128)
    role: Role = Role.reader
    scopes: list[str] = Field(default_factory=list, max_length=3, description=f"Subset of {list(SCOPES)}.")
    expires_in_s: int | None = Field(default=None, ge=60, le=10 * 365 * 86400, description="Lifetime.")
    user_id: str | None = Field(default=None, max_length=32, description="Admins: the user it acts for.")
    service: StrictBool = Field(default=False, description="Admins: a key bound to no user.")


class KeyPublic(BaseModel):
    """A key's metadata (never its secret)."""

    id: str
    prefix: str
    name: str
    tenant: str
    user_id: str | None
    role: Role
    scopes: list[str]
    created_at: UTCDateTime
    expires_at: UTCDateTime | None
    revoked_at: UTCDateTime | None
    last_used_at: UTCDateTime | None
    active: bool

    @classmethod
    def of(cls, row: ApiKey) -> KeyPublic:
        return cls(
            id=row.id,
            prefix=row.prefix,
            name=row.name,
            tenant=row.tenant,
            user_id=row.user_id,
            role=Role(row.role),
            scopes=list(row.scopes),
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
            active=key_is_live(row),
        )


class KeyCreated(KeyPublic):
    """A new key, with its plaintext: store it now, it is not shown again."""

    key: str


def _owner_for(session: Session, principal: Principal, body: KeyCreate) -> User | None:
    if principal.is_admin:
        if body.service:
            return None
        target = body.user_id or (None if principal.id.startswith(("key:", "oidc:")) else principal.id)
        if target is None:
            return None
        user = session.get(User, target)
        if user is None or user.tenant != principal.tenant:
            raise NotFound("user not found")
        return user
    if body.service or (body.user_id and body.user_id != principal.id):
        raise Forbidden("only admins create keys for others or service keys")
    user = session.get(User, principal.id)
    if user is None:
        raise Forbidden("only users can create keys")
    return user


def _visible(session: Session, principal: Principal, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if (
        row is None
        or row.tenant != principal.tenant
        or not (principal.is_admin or row.user_id == principal.id)
    ):
        raise NotFound("key not found")
    return row


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
def create(
    body: KeyCreate, principal: CurrentPrincipal, session: SessionDep, auditor: AuditDep
) -> KeyCreated:
    """Create a key; the response carries the key itself, once."""
    bad = sorted(set(body.scopes) - set(SCOPES))
    if bad:
        raise Forbidden(f"unknown scopes {bad}")
    if not role_at_least(principal.role, body.role):
        raise Forbidden("a key cannot have a stronger role than its creator")
    cap = scope_cap(principal.scopes)
    if not permission_at_least(cap, scope_cap(tuple(body.scopes))):
        raise Forbidden("a key cannot have broader scopes than its creator")
    if principal.scopes and not body.scopes:
        body.scopes = list(principal.scopes)
    owner = _owner_for(session, principal, body)
    if owner is not None and not role_at_least(Role(owner.role), body.role):
        raise Forbidden("a key cannot have a stronger role than its user")
    expires = utcnow() + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    issued = create_key(
        session,
        tenant=principal.tenant,
        role=body.role,
        name=body.name,
        user_id=owner.id if owner else None,
        scopes=body.scopes,
        expires_at=expires,
    )
    auditor.record(
        "key.create",
        principal=principal,
        target=f"key:{issued.row.id}",
        detail={"role": str(body.role), "scopes": body.scopes, "user_id": issued.row.user_id},
    )
    return KeyCreated(**KeyPublic.of(issued.row).model_dump(), key=issued.plaintext)


@router.get("", response_model=list[KeyPublic])
def list_keys(
    principal: CurrentPrincipal,
    session: SessionDep,
    include_revoked: bool = False,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[KeyPublic]:
    """Keys of the tenant (admins) or the caller's own keys."""
    q = select(ApiKey).where(ApiKey.tenant == principal.tenant)
    if not principal.is_admin:
        q = q.where(ApiKey.user_id == principal.id)
    if not include_revoked:
        q = q.where(col(ApiKey.revoked_at).is_(None))
    rows = session.exec(q.order_by(col(ApiKey.created_at).desc()).limit(limit)).all()
    return [KeyPublic.of(r) for r in rows]


@router.get("/{key_id}", response_model=KeyPublic)
def get_key(principal: CurrentPrincipal, session: SessionDep, key_id: str = KeyId) -> KeyPublic:
    """One key's metadata."""
    return KeyPublic.of(_visible(session, principal, key_id))


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke(principal: CurrentPrincipal, session: SessionDep, auditor: AuditDep, key_id: str = KeyId) -> None:
    """Revoke a key at once (idempotent)."""
    row = _visible(session, principal, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    auditor.record("key.revoke", principal=principal, target=f"key:{row.id}")
