"""Authorization: what a principal may do with a tenant's collections.

Roles are tenant-wide: ``admin`` has every permission on every collection of its tenant;
``editor`` and ``reader`` get what grants give them (to the user, one of their groups, or the
key), and a ``reader`` is capped at read whatever a grant says. A key's scopes cap it further.
Nothing crosses tenants. A collection the caller cannot read does not exist for that caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, or_
from sqlmodel import Session, col, select

from ragd.db.models import Collection, Grant, Permission, Role
from ragd.errors import Forbidden, NotFound
from ragd.security.principal import Principal
from ragd.security.rules import permission_at_least, role_at_least, scope_cap, strongest, weakest

_ROLE_CAP = {Role.reader: Permission.read, Role.editor: Permission.admin, Role.admin: Permission.admin}


@dataclass(frozen=True)
class CollectionAccess:
    """A resolved collection and what the caller may do with it."""

    collection: Collection
    permission: Permission

    @property
    def id(self) -> str:
        return self.collection.id

    @property
    def can_write(self) -> bool:
        return permission_at_least(self.permission, Permission.write)

    @property
    def can_admin(self) -> bool:
        return permission_at_least(self.permission, Permission.admin)


def _subject_clause(principal: Principal) -> ColumnElement[bool]:
    pairs = [s.split(":", 1) for s in principal.subjects if ":" in s]
    return or_(false(), *(and_(col(Grant.subject_type) == t, col(Grant.subject) == v) for t, v in pairs))


def _cap(principal: Principal, perm: Permission | None) -> Permission | None:
    if perm is None:
        return None
    return weakest(weakest(perm, _ROLE_CAP[principal.role]), scope_cap(principal.scopes))


def collection_permission(
    session: Session, principal: Principal, collection: Collection
) -> Permission | None:
    """The caller's effective permission on ``collection`` (``None``: it may not even read it)."""
    if collection.tenant != principal.tenant:
        return None
    if principal.role == Role.admin:
        return _cap(principal, Permission.admin)
    perms = session.exec(
        select(Grant.permission).where(Grant.collection_id == collection.id, _subject_clause(principal))
    ).all()
    return _cap(principal, strongest([Permission(p) for p in perms]))


def readable_collection_ids(session: Session, principal: Principal) -> list[str]:
    """Ids of every collection the caller may read, for the retrieval ACL filter (sorted)."""
    if principal.role == Role.admin:
        rows = session.exec(select(Collection.id).where(Collection.tenant == principal.tenant)).all()
    else:
        rows = session.exec(
            select(Grant.collection_id)
            .join(Collection, col(Collection.id) == col(Grant.collection_id))
            .where(Collection.tenant == principal.tenant, _subject_clause(principal))
            .distinct()
        ).all()
    return sorted(rows)


def resolve_collection(
    session: Session, principal: Principal, name: str, needed: Permission
) -> CollectionAccess:
    """The caller's collection ``name`` with at least ``needed``.

    Raises :class:`NotFound` when it does not exist in the caller's tenant *or* the caller cannot
    read it (the two are indistinguishable), and :class:`Forbidden` when it can read but needs more.
    """
    row = session.exec(
        select(Collection).where(Collection.tenant == principal.tenant, Collection.name == name)
    ).first()
    perm = collection_permission(session, principal, row) if row is not None else None
    if row is None or perm is None:
        raise NotFound("collection not found", details={"collection": name[:128]})
    if not permission_at_least(perm, needed):
        raise Forbidden(f"this needs {needed} permission on the collection")
    return CollectionAccess(collection=row, permission=perm)


def require_role(principal: Principal, needed: Role) -> None:
    """Raise :class:`Forbidden` unless the caller's role (and key scopes) reach ``needed``."""
    if not role_at_least(principal.role, needed):
        raise Forbidden(f"this needs the {needed} role")
    scope_needed = {Role.reader: Permission.read, Role.editor: Permission.write, Role.admin: Permission.admin}
    if not permission_at_least(scope_cap(principal.scopes), scope_needed[needed]):
        raise Forbidden("this key's scopes do not allow this")
