"""Authentication, authorization, limits and audit.

How routes use it (all names below come from ``ragd.api.deps``)
---------------------------------------------------------------

**Every route declares a rule**, by the dependencies it takes; ``tests/security/
test_authz_matrix.py`` walks ``app.routes`` and fails for a route with none, then checks every
route x role x ownership against its rule:

* ``principal: CurrentPrincipal`` - any authenticated caller (API key as ``Authorization: Bearer
  ragd_...`` or ``X-API-Key``, or a JWT bearer). Rate limit (429 + ``Retry-After``) and per-key
  concurrency limit are applied here. 401 without valid credentials.
* ``principal: EditorPrincipal`` / ``AdminPrincipal`` / ``ReaderPrincipal`` - at least that
  tenant role (admin > editor > reader) and key scopes that allow it; else 403.
* ``coll: ReadableCollection`` / ``WritableCollection`` / ``AdminCollection`` - the route's path
  must contain ``{collection}`` (a collection **name**); it is resolved inside the caller's
  tenant and returns a :class:`CollectionAccess` (``.collection`` row, ``.id``, ``.permission``).
  Missing *or unreadable* -> 404 ``collection not found`` (identical bodies); readable but not
  enough permission -> 403. For other permissions: ``Depends(require_collection(Permission.x))``.
  Collections named in a request *body* (e.g. chat's ``collections: [...]``): call
  :func:`resolve_collection` (``ragd.security.policy``) per name with the caller's session.
* Public routes say so: ``@router.get(..., dependencies=[PUBLIC])`` or
  ``app.include_router(router, dependencies=[PUBLIC])``. FastAPI's own ``/openapi.json`` and
  ``/docs`` are public by :func:`ragd.api.deps.public_paths`.

Other helpers:

* ``session: SessionDep`` - a SQLModel session per request, committed when the route function
  returns (``Depends(..., scope="function")``: before the response is sent).
* ``auditor: AuditDep`` then ``auditor.record("document.upload", principal=p, target=...,
  outcome="ok", detail={...})``. ``ok`` events join the request's session (stored iff the action
  is); other outcomes are written at once in their own transaction (record them before the route
  writes anything: SQLite has one writer). Outside a request: :func:`audit` ``(engine,
  action=..., principal=..., outcome=...)``, never while holding uncommitted writes on SQLite.
  Actions are dotted names; never put secrets or prompt text in ``detail`` (values are clipped
  to 500 characters anyway).
* Retrieval ACL: :func:`readable_collection_ids` ``(session, principal)`` gives the collection
  ids for the Qdrant filter, together with ``principal.tenant`` and ``principal.subjects``
  (``user:<id>``, ``group:<name>``, ``key:<id>``) for document-level ACLs.
* ``principal.id`` is a user id, ``key:<id>`` for a key without a user, or ``oidc:<sub>``;
  store it as ``created_by``/``owner``. Owner checks: compare with ``principal.id`` and scope
  every query by ``principal.tenant``; another tenant's object is a 404, never a 403.
* Limits: rate and concurrency limits come with ``CurrentPrincipal``; bodies and URL query
  strings are limited by middleware (``ragd.api.limits``); chat/search text: call
  ``ragd.api.limits.check_query_length(settings, text)`` (``auth.max_query_chars``).
* Wire timestamps: type them ``ragd.api.timestamps.UTCDateTime`` (SQLite returns naive
  datetimes; the OpenAPI ``date-time`` format needs the offset). The error envelope and error
  statuses are added to every operation of the OpenAPI document (``ragd.api.error_docs``);
  document any other response (e.g. ``text/event-stream`` for streams) on the route itself.
* Non-API routes (a ``Mount`` of static files): ``ragd.api.deps.declare_public(mount)`` or they
  fail the matrix test.
* Tests: ``tests/fixtures/auth.py`` (``AuthFactory``) creates tenants, users, keys, collections
  and grants in a few lines and gives ready ``headers``. ``tests/security/test_authz_matrix.py``,
  ``test_tenant_isolation.py`` and ``test_fuzz.py`` cover new routes automatically.
"""

from ragd.security.audit import audit, list_events
from ragd.security.policy import (
    CollectionAccess,
    collection_permission,
    readable_collection_ids,
    require_role,
    resolve_collection,
)
from ragd.security.principal import Principal
from ragd.security.rules import Rule

__all__ = [
    "CollectionAccess",
    "Principal",
    "Rule",
    "audit",
    "collection_permission",
    "list_events",
    "readable_collection_ids",
    "require_role",
    "resolve_collection",
]
