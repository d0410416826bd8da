"""Who is calling: the authenticated principal that every service call receives."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragd.db.models import Role


@dataclass(frozen=True)
class Principal:
    """An authenticated caller (a user signed in with a JWT, or an API key).

    ``subjects`` are the grant subjects this caller matches (``user:<id>``, ``group:<name>``,
    ``key:<id>``): collection grants and document ACLs are checked against them.
    """

    id: str  # user id, or "key:<id>" for a key with no user
    tenant: str
    role: Role
    groups: tuple[str, ...] = ()
    key_id: str | None = None
    scopes: tuple[str, ...] = ()
    auth_method: str = "api_key"  # "api_key" | "jwt" | "oidc"
    subjects: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.subjects:
            subs = [f"user:{self.id}", *(f"group:{g}" for g in self.groups)]
            if self.key_id:
                subs.append(f"key:{self.key_id}")
            object.__setattr__(self, "subjects", tuple(subs))

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin
