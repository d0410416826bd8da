"""Route rules: what every HTTP route requires of its caller, declared where the route is declared.

A rule is attached to a FastAPI dependency callable (``ragd.api.deps``) as ``__ragd_rule__``; a
route's rules are the rules of every dependency it uses. The authorization matrix test reads
them from ``app.routes`` and fails for any route that declares none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ragd.db.models import Permission, Role

RuleKind = Literal["public", "authenticated", "role", "collection"]

#: Attribute name carrying a :class:`Rule` on a dependency callable.
RULE_ATTR = "__ragd_rule__"

ROLE_RANK = {Role.reader: 1, Role.editor: 2, Role.admin: 3}
PERMISSION_RANK = {Permission.read: 1, Permission.write: 2, Permission.admin: 3}

#: API-key scopes. A key with no scopes may do whatever its role allows; a scoped key is capped.
SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class Rule:
    """One requirement: ``public``; ``authenticated``; ``role`` (at least ``role``); or
    ``collection`` (at least ``permission`` on the collection named by the ``collection`` path
    parameter; a collection the caller cannot read is a 404, never a 403)."""

    kind: RuleKind
    role: Role | None = None
    permission: Permission | None = None

    def describe(self) -> str:
        """A short label, e.g. ``role:editor`` or ``collection:write``."""
        if self.kind == "role":
            return f"role:{self.role}"
        if self.kind == "collection":
            return f"collection:{self.permission}"
        return self.kind


PUBLIC = Rule("public")
AUTHENTICATED = Rule("authenticated")


def role_at_least(role: Role, needed: Role) -> bool:
    """Whether ``role`` is ``needed`` or stronger (admin > editor > reader)."""
    return ROLE_RANK[role] >= ROLE_RANK[needed]


def permission_at_least(have: Permission | None, needed: Permission) -> bool:
    """Whether ``have`` is ``needed`` or stronger (admin > write > read)."""
    return have is not None and PERMISSION_RANK[have] >= PERMISSION_RANK[needed]


def strongest(perms: list[Permission]) -> Permission | None:
    """The strongest permission of ``perms`` (``None`` when empty)."""
    return max(perms, key=PERMISSION_RANK.__getitem__) if perms else None


def weakest(a: Permission, b: Permission) -> Permission:
    """The weaker of two permissions."""
    return a if PERMISSION_RANK[a] <= PERMISSION_RANK[b] else b


def scope_cap(scopes: tuple[str, ...]) -> Permission:
    """The strongest permission a key's scopes allow (no scopes: unrestricted)."""
    if not scopes or "admin" in scopes:
        return Permission.admin
    if "write" in scopes:
        return Permission.write
    return Permission.read
