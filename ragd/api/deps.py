"""FastAPI dependencies for authentication, authorization, sessions and audit.

Every route declares its rule by using one of these (see ``ragd.security`` for the convention):

==========================  ==============================================================
``PUBLIC`` (route dep)      no credentials (health, metrics, docs, sign-in)
``CurrentPrincipal``        any authenticated caller (rate and concurrency limits apply)
``ReaderPrincipal`` ...     ``EditorPrincipal``, ``AdminPrincipal``: at least that role
``ReadableCollection``      ``WritableCollection``, ``AdminCollection``: the ``{collection}``
                            path parameter, resolved in the caller's tenant (404 if unreadable)
==========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from ragd.api.state import AppState, StateDep
from ragd.db.engine import release_connection
from ragd.db.models import Permission, Role
from ragd.errors import RateLimited
from ragd.log_config import request_id_var
from ragd.security.audit import Outcome, audit_event, write_events
from ragd.security.authenticator import Authenticator, ClientInfo, limit_key
from ragd.security.policy import CollectionAccess, require_role, resolve_collection
from ragd.security.principal import Principal
from ragd.security.rules import AUTHENTICATED, RULE_ATTR, Rule
from ragd.security.rules import PUBLIC as PUBLIC_RULE

_bearer = HTTPBearer(auto_error=False, description="An API key (ragd_...) or a JWT access token.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (ragd_...).")

SECURITY_KEY = "security"


def _with_rule(rule: Rule) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, RULE_ATTR, rule)
        return fn

    return mark


# --- plumbing ----------------------------------------------------------------------------------


def get_authenticator(state: StateDep) -> Authenticator:
    """The app's :class:`Authenticator` (built in the lifespan)."""
    auth: Authenticator = state.extras[SECURITY_KEY]
    return auth


AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


def get_session(state: StateDep) -> Iterator[Session]:
    """A metadata-store session for this request, committed when the route function returns
    (before the response is sent, so a client never sees a success that was not stored)."""
    with Session(state.engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def client_info(request: Request) -> ClientInfo:
    """The caller's address and this request's id."""
    host = request.client.host if request.client else ""
    return ClientInfo(ip=host, request_id=request_id_var.get())


ClientDep = Annotated[ClientInfo, Depends(client_info)]


@_with_rule(PUBLIC_RULE)
def public() -> None:
    """Marks a route public (no credentials)."""


#: Put in a route's or router's ``dependencies=[PUBLIC]`` to declare it public.
PUBLIC = Depends(public)


# --- authentication ----------------------------------------------------------------------------


@_with_rule(AUTHENTICATED)
async def current_principal(
    authn: AuthenticatorDep,
    client: ClientDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> AsyncIterator[Principal]:
    """The authenticated caller; spends one request of its rate limit and holds one of its
    concurrency slots until the response (streams included) has been sent."""
    credential = bearer.credentials if bearer is not None else api_key
    principal = await authn.authenticate(credential, client)
    await authn.enforce_rate(principal)
    key = limit_key(principal)
    if not authn.concurrency.acquire(key):
        raise RateLimited("too many requests in flight for this key", retry_after_s=1)
    try:
        yield principal
    finally:
        authn.concurrency.release(key)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role_dep(role: Role) -> Callable[[Principal], Principal]:
    """A dependency returning the caller when its role (and key scopes) reach ``role``."""

    @_with_rule(Rule("role", role=role))
    def dep(principal: CurrentPrincipal) -> Principal:
        require_role(principal, role)
        return principal

    dep.__name__ = f"require_{role}"
    return dep


ReaderPrincipal = Annotated[Principal, Depends(require_role_dep(Role.reader))]
EditorPrincipal = Annotated[Principal, Depends(require_role_dep(Role.editor))]
AdminPrincipal = Annotated[Principal, Depends(require_role_dep(Role.admin))]


def require_collection(permission: Permission) -> Callable[..., CollectionAccess]:
    """A dependency resolving the ``{collection}`` path parameter (a collection *name*) in the
    caller's tenant with at least ``permission``: 404 when it is missing or unreadable, 403 when
    readable but ``permission`` is more than the caller has."""

    @_with_rule(Rule("collection", permission=permission))
    def dep(
        collection: Annotated[str, Path(min_length=1, max_length=128, description="Collection name.")],
        principal: CurrentPrincipal,
        session: SessionDep,
    ) -> CollectionAccess:
        access = resolve_collection(session, principal, collection, permission)
        # Uploads hold the request open while the body streams in and then need the database
        # again: the lookup's connection must not stay checked out meanwhile.
        release_connection(session)
        return access

    dep.__name__ = f"require_collection_{permission}"
    return dep


ReadableCollection = Annotated[CollectionAccess, Depends(require_collection(Permission.read))]
WritableCollection = Annotated[CollectionAccess, Depends(require_collection(Permission.write))]
AdminCollection = Annotated[CollectionAccess, Depends(require_collection(Permission.admin))]


# --- audit -------------------------------------------------------------------------------------


class Auditor:
    """Appends audit events stamped with this request's address and id.

    A successful action's event (``outcome="ok"``) joins the request's session, so it is stored
    exactly when the action is. Any other outcome is written at once in its own transaction, so
    it survives the rollback that usually follows; record it before the route writes anything
    (SQLite allows one writer at a time).
    """

    def __init__(self, state: AppState, client: ClientInfo, session: Session) -> None:
        self._engine = state.engine
        self._client = client
        self._session = session

    def record(
        self,
        action: str,
        *,
        principal: Principal | None = None,
        target: str = "",
        outcome: Outcome = "ok",
        detail: dict[str, Any] | None = None,
        tenant: str = "",
    ) -> None:
        """Append one event."""
        event = audit_event(
            action=action,
            outcome=outcome,
            principal=principal,
            tenant=tenant,
            target=target,
            ip=self._client.ip,
            request_id=self._client.request_id,
            detail=detail,
        )
        if outcome == "ok":
            self._session.add(event)
        else:
            write_events(self._engine, [event])


def get_auditor(state: StateDep, client: ClientDep, session: SessionDep) -> Auditor:
    """An :class:`Auditor` for this request."""
    return Auditor(state, client, session)


AuditDep = Annotated[Auditor, Depends(get_auditor)]


# --- route rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredRoute:
    """One effective route of an app (routers included) and the rules it declares."""

    path: str
    methods: frozenset[str]
    rules: tuple[Rule, ...]
    is_api: bool


def route_rules(route: Any) -> list[Rule]:
    """Every rule a route declares through its dependencies (route- and router-level included).

    ``route`` is an ``APIRoute`` or a FastAPI route context (what ``app.routes`` holds for
    included routers, whose router-level dependencies only exist on the context)."""
    rules: list[Rule] = []
    seen: set[int] = set()
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        rule = getattr(dep.call, RULE_ATTR, None) if dep.call is not None else None
        if isinstance(rule, Rule) and id(dep.call) not in seen:
            seen.add(id(dep.call))
            rules.append(rule)
        stack.extend(dep.dependencies)
    return rules


def declared_routes(app: FastAPI) -> list[DeclaredRoute]:
    """Every route of ``app`` with its rules; FastAPI's documentation routes count as public."""
    docs = public_paths(app)
    out = []
    for ctx in iter_route_contexts(app.routes):
        path = str(ctx.path)
        methods = frozenset(ctx.methods or ())
        if isinstance(ctx.original_route, APIRoute):
            out.append(DeclaredRoute(path, methods, tuple(route_rules(ctx)), True))
        else:
            marked = getattr(ctx.original_route, RULE_ATTR, None)
            rules = (marked,) if isinstance(marked, Rule) else (PUBLIC_RULE,) if path in docs else ()
            out.append(DeclaredRoute(path, methods, rules, False))
    return out


def declare_public(route: Any) -> Any:
    """Declare a non-API route (a ``Mount`` of static files, say) public; returns it."""
    setattr(route, RULE_ATTR, PUBLIC_RULE)
    return route


def public_paths(app: FastAPI) -> set[str]:
    """Paths of FastAPI's own documentation routes, which are public by declaration here."""
    paths = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return {p for p in paths if p}
