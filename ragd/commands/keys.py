"""``ragd keys create|list|revoke`` and ``ragd users create``: bootstrap and manage credentials.

``ragd keys create --role admin --tenant acme`` prints only the new key on stdout, so a script
can capture it (``KEY=$(ragd keys create --role admin)``); everything else goes to stderr.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from ragd.commands.common import CommandGroups, fail, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant the key or user belongs to.")]


def _engine() -> Engine:
    from ragd.db.engine import build_engine, check_connection, migrate
    from ragd.errors import ConfigError

    settings = load_settings()
    engine = build_engine(settings)
    try:
        check_connection(engine)
        migrate(engine)
    except ConfigError as exc:
        fail(str(exc))
    return engine


def _valid_tenant(tenant: str) -> str:
    import re

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", tenant):
        fail(f"invalid tenant {tenant[:40]!r}: 1-64 letters, digits and ._@-")
    return tenant


def keys_create(
    role: Annotated[str, typer.Option(help="admin, editor or reader.")] = "reader",
    tenant: TenantOpt = "default",
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    scope: Annotated[
        list[str] | None, typer.Option(help="Restrict to read/write/admin (repeatable).")
    ] = None,
    expires_days: Annotated[int | None, typer.Option(min=1, max=3650, help="Lifetime in days.")] = None,
) -> None:
    """Create an API key and print it (only it) on stdout. It is not shown again."""
    from sqlmodel import Session

    from ragd.db.models import Role, utcnow
    from ragd.security.api_keys import create_key
    from ragd.security.audit import audit

    try:
        role_ = Role(role)
    except ValueError:
        fail(f"invalid role {role[:20]!r}: choose admin, editor or reader")
    _valid_tenant(tenant)
    engine = _engine()
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    try:
        with Session(engine, expire_on_commit=False) as session:
            issued = create_key(
                session, tenant=tenant, role=role_, name=name[:128], scopes=scope or [], expires_at=expires
            )
            session.commit()
    except ValueError as exc:
        fail(str(exc))
    audit(
        engine,
        action="key.create",
        tenant=tenant,
        actor="cli",
        target=f"key:{issued.row.id}",
        detail={"role": role_.value, "via": "cli"},
    )
    engine.dispose()
    typer.echo(f"created key {issued.row.id} ({role_.value}, tenant {tenant})", err=True)
    typer.echo(issued.plaintext)


def keys_list(tenant: TenantOpt = "default") -> None:
    """List a tenant's keys (never their secrets)."""
    from sqlmodel import Session, col, select

    from ragd.db.models import ApiKey
    from ragd.security.api_keys import key_is_live

    engine = _engine()
    with Session(engine) as session:
        rows = session.exec(
            select(ApiKey).where(ApiKey.tenant == tenant).order_by(col(ApiKey.created_at))
        ).all()
        for r in rows:
            state = "active" if key_is_live(r) else "inactive"
            typer.echo(f"{r.id}  ragd_{r.prefix}_…  {r.role:<6}  {state:<8}  {r.name}")
    engine.dispose()


def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (from `ragd keys list`).")]) -> None:
    """Revoke a key at once."""
    from sqlmodel import Session

    from ragd.db.models import ApiKey, utcnow
    from ragd.security.audit import audit

    engine = _engine()
    with Session(engine) as session:
        row = session.get(ApiKey, key_id[:32])
        if row is None:
            fail(f"no key {key_id[:32]!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
            session.commit()
        tenant = row.tenant
    audit(engine, action="key.revoke", tenant=tenant, actor="cli", target=f"key:{key_id[:32]}")
    engine.dispose()
    typer.echo(f"revoked key {key_id[:32]}", err=True)


def users_create(
    username: Annotated[str, typer.Argument(help="The new user's name.")],
    role: Annotated[str, typer.Option(help="admin, editor or reader.")] = "reader",
    tenant: TenantOpt = "default",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
) -> None:
    """Create a user (with a password from stdin, or none: keys only)."""
    from sqlmodel import Session, select

    from ragd.db.models import Role, User
    from ragd.security.passwords import hash_secret

    try:
        role_ = Role(role)
    except ValueError:
        fail(f"invalid role {role[:20]!r}: choose admin, editor or reader")
    _valid_tenant(tenant)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    if password is not None and not 10 <= len(password) <= 1024:
        fail("the password must have 10 to 1024 characters")
    engine = _engine()
    with Session(engine) as session:
        if session.exec(select(User).where(User.tenant == tenant, User.username == username)).first():
            fail(f"user {username[:40]!r} exists in tenant {tenant!r}")
        user = User(
            tenant=tenant,
            username=username[:128],
            role=role_,
            password_hash=hash_secret(password) if password else None,
        )
        session.add(user)
        session.commit()
        typer.echo(user.id)
    engine.dispose()


def register(app: typer.Typer, groups: CommandGroups) -> None:
    """Attach this module's commands."""
    keys = groups.group("keys", "Create, list and revoke API keys.")
    keys.command("create")(keys_create)
    keys.command("list")(keys_list)
    keys.command("revoke")(keys_revoke)
    groups.group("users", "Create users.").command("create")(users_create)
