"""``/v1/collections``: create, list, read, update and delete collections, and manage grants.

Editors and admins create collections and become their admins (a grant to the creator).
Grants give a user, a group or an API key read, write or admin on one collection. A collection
the caller cannot read answers exactly like one that does not exist. Creating a collection
whose name is taken in the tenant is a 409 (names are unique per tenant).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ragd.api.deps import (
    AdminCollection,
    AuditDep,
    CurrentPrincipal,
    EditorPrincipal,
    ReadableCollection,
    SessionDep,
)
from ragd.api.timestamps import UTCDateTime
from ragd.db.models import ApiKey, Collection, Document, Grant, Permission, User
from ragd.errors import BadRequest, Conflict, NotFound
from ragd.security.policy import collection_permission
from ragd.security.principal import Principal

router = APIRouter(prefix="/v1/collections", tags=["collections"])

COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
GrantId = Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]{1,32}$", description="Grant id.")


class CollectionCreate(BaseModel):
    """A new collection in the caller's tenant."""

    name: str = Field(min_length=1, max_length=128, pattern=COLLECTION_NAME)
    description: str = Field(default="", max_length=2000)


class CollectionUpdate(BaseModel):
    """Changes to a collection."""

    description: str | None = Field(default=None, max_length=2000)


class CollectionPublic(BaseModel):
    """A collection and what the caller may do with it."""

    id: str
    name: str
    description: str
    created_by: str
    created_at: UTCDateTime
    permission: Permission

    @classmethod
    def of(cls, c: Collection, permission: Permission) -> CollectionPublic:
        return cls(
            id=c.id,
            name=c.name,
            description=c.description,
            created_by=c.created_by,
            created_at=c.created_at,
            permission=permission,
        )


class GrantCreate(BaseModel):
    """A permission for a user (id), a group (name) or an API key (id)."""

    subject_type: Literal["user", "group", "key"]
    subject: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
    permission: Permission = Permission.read


class GrantPublic(BaseModel):
    """One grant on a collection."""

    id: str
    subject_type: str
    subject: str
    permission: Permission
    created_at: UTCDateTime

    @classmethod
    def of(cls, g: Grant) -> GrantPublic:
        return cls(
            id=g.id,
            subject_type=g.subject_type,
            subject=g.subject,
            permission=Permission(g.permission),
            created_at=g.created_at,
        )


def _creator_subject(principal: Principal) -> tuple[str, str]:
    if principal.id.startswith("key:") and principal.key_id:
        return "key", principal.key_id
    return "user", principal.id


@router.post("", response_model=CollectionPublic, status_code=status.HTTP_201_CREATED)
def create_collection(
    body: CollectionCreate, principal: EditorPrincipal, session: SessionDep, auditor: AuditDep
) -> CollectionPublic:
    """Create a collection; the creator gets admin on it."""
    taken = session.exec(
        select(Collection.id).where(Collection.tenant == principal.tenant, Collection.name == body.name)
    ).first()
    if taken:
        raise Conflict("this collection name is not available")
    coll = Collection(
        tenant=principal.tenant, name=body.name, description=body.description, created_by=principal.id[:64]
    )
    session.add(coll)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("this collection name is not available") from exc
    stype, subject = _creator_subject(principal)
    session.add(
        Grant(collection_id=coll.id, subject_type=stype, subject=subject, permission=Permission.admin)
    )
    auditor.record("collection.create", principal=principal, target=f"collection:{coll.name}")
    perm = collection_permission(session, principal, coll) or Permission.admin
    return CollectionPublic.of(coll, perm)


@router.get("", response_model=list[CollectionPublic])
def list_collections(
    principal: CurrentPrincipal, session: SessionDep, limit: int = Query(default=100, ge=1, le=1000)
) -> list[CollectionPublic]:
    """Collections the caller can read, by name."""
    rows = session.exec(
        select(Collection).where(Collection.tenant == principal.tenant).order_by(col(Collection.name))
    ).all()
    out = []
    for c in rows:
        perm = collection_permission(session, principal, c)
        if perm is not None:
            out.append(CollectionPublic.of(c, perm))
        if len(out) >= limit:
            break
    return out


@router.get("/{collection}", response_model=CollectionPublic)
def get_collection(coll: ReadableCollection) -> CollectionPublic:
    """One collection."""
    return CollectionPublic.of(coll.collection, coll.permission)


@router.patch("/{collection}", response_model=CollectionPublic)
def update_collection(
    body: CollectionUpdate,
    coll: AdminCollection,
    principal: CurrentPrincipal,
    session: SessionDep,
    auditor: AuditDep,
) -> CollectionPublic:
    """Change a collection's description."""
    row = coll.collection
    if body.description is not None:
        row.description = body.description
    session.add(row)
    auditor.record("collection.update", principal=principal, target=f"collection:{row.name}")
    return CollectionPublic.of(row, coll.permission)


@router.delete("/{collection}", status_code=status.HTTP_204_NO_CONTENT)
def delete_collection(
    coll: AdminCollection, principal: CurrentPrincipal, session: SessionDep, auditor: AuditDep
) -> None:
    """Delete an empty collection and its grants (delete its documents first: 409 otherwise)."""
    # Document rows (soft-deleted ones too) point at the collection; ingestion owns their removal.
    if session.exec(select(Document.id).where(Document.collection_id == coll.id)).first():
        raise Conflict("the collection still has documents; delete them first")
    for g in session.exec(select(Grant).where(Grant.collection_id == coll.id)).all():
        session.delete(g)
    session.flush()
    session.delete(coll.collection)
    auditor.record("collection.delete", principal=principal, target=f"collection:{coll.collection.name}")


# --- grants ------------------------------------------------------------------------------------


def _check_subject(session: Session, tenant: str, body: GrantCreate) -> None:
    if body.subject_type == "user":
        user = session.get(User, body.subject)
        ok = user is not None and user.tenant == tenant
    elif body.subject_type == "key":
        key = session.get(ApiKey, body.subject)
        ok = key is not None and key.tenant == tenant
    else:
        ok = True
    if not ok:
        raise BadRequest(f"no such {body.subject_type} in this tenant")


@router.get("/{collection}/grants", response_model=list[GrantPublic])
def list_grants(coll: AdminCollection, session: SessionDep) -> list[GrantPublic]:
    """Every grant on the collection."""
    rows = session.exec(
        select(Grant).where(Grant.collection_id == coll.id).order_by(col(Grant.created_at))
    ).all()
    return [GrantPublic.of(g) for g in rows]


@router.put("/{collection}/grants", response_model=GrantPublic)
def put_grant(
    body: GrantCreate,
    coll: AdminCollection,
    principal: CurrentPrincipal,
    session: SessionDep,
    auditor: AuditDep,
) -> GrantPublic:
    """Give a subject a permission on the collection (replaces its previous one)."""
    _check_subject(session, principal.tenant, body)
    row = session.exec(
        select(Grant).where(
            Grant.collection_id == coll.id,
            Grant.subject_type == body.subject_type,
            Grant.subject == body.subject,
        )
    ).first()
    if row is None:
        row = Grant(collection_id=coll.id, subject_type=body.subject_type, subject=body.subject)
    row.permission = body.permission
    session.add(row)
    session.flush()
    detail: dict[str, Any] = {
        "subject": f"{body.subject_type}:{body.subject}",
        "permission": str(body.permission),
    }
    auditor.record(
        "grant.put", principal=principal, target=f"collection:{coll.collection.name}", detail=detail
    )
    return GrantPublic.of(row)


@router.delete("/{collection}/grants/{grant_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_grant(
    coll: AdminCollection,
    principal: CurrentPrincipal,
    session: SessionDep,
    auditor: AuditDep,
    grant_id: str = GrantId,
) -> None:
    """Remove a grant."""
    row = session.get(Grant, grant_id)
    if row is None or row.collection_id != coll.id:
        raise NotFound("grant not found")
    session.delete(row)
    auditor.record(
        "grant.delete",
        principal=principal,
        target=f"collection:{coll.collection.name}",
        detail={"subject": f"{row.subject_type}:{row.subject}"},
    )
