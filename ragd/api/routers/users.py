"""``/v1/users``: admins manage their tenant's users, roles, groups and passwords.

Users are never deleted (audit events keep pointing at them): ``DELETE`` disables the user and
revokes its keys. Group membership is a list of names on the user; grants can name a group.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ragd.api.deps import AdminPrincipal, AuditDep, CurrentPrincipal, SessionDep
from ragd.api.routers.auth import NAME_PATTERN
from ragd.api.timestamps import UTCDateTime
from ragd.db.models import ApiKey, Role, User, utcnow
from ragd.errors import Conflict, Forbidden, NotFound
from ragd.security.passwords import hash_secret, verify_secret
from ragd.security.principal import Principal

router = APIRouter(prefix="/v1/users", tags=["users"])

UserId = Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]{1,32}$", description="User id.")
Password = Field(min_length=10, max_length=1024, description="At least 10 characters.")
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$"
GroupName = Annotated[str, StringConstraints(pattern=GROUP_PATTERN, max_length=100)]


class UserCreate(BaseModel):
    """A new user of the caller's tenant."""

    username: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    password: str | None = Field(default=None, min_length=10, max_length=1024, description="Optional.")
    role: Role = Role.reader
    groups: list[GroupName] = Field(default_factory=list, max_length=64, description="Group names.")


class UserUpdate(BaseModel):
    """Changes to a user; absent fields stay."""

    role: Role | None = None
    groups: list[GroupName] | None = Field(default=None, max_length=64)
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=10, max_length=1024)


class PasswordChange(BaseModel):
    """A user changing its own password."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Password


class UserPublic(BaseModel):
    """A user (never its password hash)."""

    id: str
    tenant: str
    username: str
    role: Role
    groups: list[str]
    disabled: bool
    has_password: bool
    created_at: UTCDateTime

    @classmethod
    def of(cls, u: User) -> UserPublic:
        return cls(
            id=u.id,
            tenant=u.tenant,
            username=u.username,
            role=Role(u.role),
            groups=list(u.groups),
            disabled=u.disabled,
            has_password=bool(u.password_hash),
            created_at=u.created_at,
        )


def _check_groups(groups: list[str]) -> list[str]:
    return sorted(set(groups))


def _get(session: Session, principal: Principal, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None or user.tenant != principal.tenant:
        raise NotFound("user not found")
    return user


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, principal: AdminPrincipal, session: SessionDep, auditor: AuditDep
) -> UserPublic:
    """Create a user."""
    exists = session.exec(
        select(User.id).where(User.tenant == principal.tenant, User.username == body.username)
    ).first()
    if exists:
        raise Conflict("a user with this username exists")
    user = User(
        tenant=principal.tenant,
        username=body.username,
        role=body.role,
        groups=_check_groups(body.groups),
        password_hash=hash_secret(body.password) if body.password else None,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("a user with this username exists") from exc
    auditor.record(
        "user.create", principal=principal, target=f"user:{user.id}", detail={"role": str(body.role)}
    )
    return UserPublic.of(user)


@router.get("", response_model=list[UserPublic])
def list_users(
    principal: AdminPrincipal,
    session: SessionDep,
    group: str | None = Query(default=None, max_length=100),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[UserPublic]:
    """Users of the tenant, optionally only members of ``group``."""
    rows = session.exec(
        select(User).where(User.tenant == principal.tenant).order_by(col(User.username)).limit(10_000)
    ).all()
    users = [u for u in rows if group is None or group in u.groups]
    return [UserPublic.of(u) for u in users[:limit]]


@router.get("/{user_id}", response_model=UserPublic)
def get_user(principal: CurrentPrincipal, session: SessionDep, user_id: str = UserId) -> UserPublic:
    """A user: admins see anyone in their tenant, others only themselves."""
    if not principal.is_admin and user_id != principal.id:
        raise NotFound("user not found")
    return UserPublic.of(_get(session, principal, user_id))


@router.patch("/{user_id}", response_model=UserPublic)
def update_user(
    body: UserUpdate, principal: AdminPrincipal, session: SessionDep, auditor: AuditDep, user_id: str = UserId
) -> UserPublic:
    """Change a user's role, groups, password or disabled flag."""
    user = _get(session, principal, user_id)
    if user.id == principal.id and (body.disabled or (body.role and body.role != Role.admin)):
        raise Forbidden("admins cannot demote or disable themselves")
    changed = body.model_dump(exclude_none=True, exclude={"password"})
    if body.role is not None:
        user.role = body.role
    if body.groups is not None:
        user.groups = _check_groups(body.groups)
    if body.disabled is not None:
        user.disabled = body.disabled
    if body.password is not None:
        user.password_hash = hash_secret(body.password)
        changed["password"] = "changed"  # noqa: S105 - an audit note, not a secret
    session.add(user)
    auditor.record("user.update", principal=principal, target=f"user:{user.id}", detail=changed)
    return UserPublic.of(user)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def disable_user(
    principal: AdminPrincipal, session: SessionDep, auditor: AuditDep, user_id: str = UserId
) -> None:
    """Disable a user and revoke all of its keys (the record stays for the audit log)."""
    user = _get(session, principal, user_id)
    if user.id == principal.id:
        raise Forbidden("admins cannot disable themselves")
    user.disabled = True
    session.add(user)
    now = utcnow()
    for key in session.exec(
        select(ApiKey).where(ApiKey.user_id == user.id, col(ApiKey.revoked_at).is_(None))
    ):
        key.revoked_at = now
        session.add(key)
    auditor.record("user.disable", principal=principal, target=f"user:{user.id}")


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(
    body: PasswordChange, principal: CurrentPrincipal, session: SessionDep, auditor: AuditDep
) -> None:
    """Change the caller's own password (the current one is required)."""
    user = session.get(User, principal.id)
    if user is None or user.tenant != principal.tenant:
        raise NotFound("user not found")
    if not user.password_hash or not verify_secret(user.password_hash, body.current_password):
        auditor.record("user.password", principal=principal, target=f"user:{user.id}", outcome="denied")
        raise Forbidden("the current password is wrong")
    user.password_hash = hash_secret(body.new_password)
    session.add(user)
    auditor.record("user.password", principal=principal, target=f"user:{user.id}")
