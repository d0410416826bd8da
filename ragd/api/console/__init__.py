"""The web console at ``/ui``: server-rendered page shells plus one static script.

Pages are public shells (no data in them); the script calls the JSON API with the credential the
user signed in with, kept in ``sessionStorage`` (never in a URL, a cookie or a log). Two small
read routes exist only for the console: the drift history chart and the downloadable eval report.
Everything is served by ragd itself; the page CSP (``default-src 'self'``) forbids inline code.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from sqlmodel import Session, col, select

from ragd.api.deps import PUBLIC, AdminPrincipal, ReaderPrincipal, declare_public
from ragd.api.state import StateDep
from ragd.db.models import DriftResult
from ragd.errors import BadRequest
from ragd.evals.records import get_eval_run
from ragd.evals.report import render_report

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=_HERE / "templates")

#: (path segment, template, nav label); "" is the sign-in page.
PAGES = [
    ("collections", "collections.html", "Collections"),
    ("upload", "upload.html", "Upload"),
    ("chat", "chat.html", "Chat"),
    ("evals", "evals.html", "Evals"),
    ("monitoring", "monitoring.html", "Monitoring"),
]

pages = APIRouter(prefix="/ui", dependencies=[PUBLIC], include_in_schema=False)
api = APIRouter(prefix="/ui/api", tags=["console"])


def _page(template: str, name: str) -> Any:
    async def page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(
            request, template, {"page": name, "nav": [(p, label) for p, _, label in PAGES]}
        )

    page.__name__ = f"console_{name or 'signin'}"
    return page


pages.add_api_route("", _page("signin.html", ""), methods=["GET"], response_class=HTMLResponse)
pages.add_api_route("/", _page("signin.html", ""), methods=["GET"], response_class=HTMLResponse)
for _segment, _template, _ in PAGES:
    pages.add_api_route(
        f"/{_segment}", _page(_template, _segment), methods=["GET"], response_class=HTMLResponse
    )


class DriftPoint(BaseModel):
    """One stored drift test."""

    detector: str
    ts: datetime
    statistic: float | None
    p_value: float | None
    alarm: bool
    window_n: int


@api.get("/drift/history", response_model=list[DriftPoint])
async def drift_history(
    principal: AdminPrincipal,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> list[DriftPoint]:
    """The caller's tenant's latest drift tests, oldest first (the console's drift chart)."""

    def load() -> list[DriftResult]:
        with Session(state.engine) as session:
            rows = session.exec(
                select(DriftResult)
                .where(DriftResult.tenant == principal.tenant)
                .order_by(col(DriftResult.id).desc())
                .limit(limit)
            ).all()
        return list(reversed(rows))

    rows = await asyncio.to_thread(load)
    return [DriftPoint.model_validate(r, from_attributes=True) for r in rows]


@api.get("/evals/report", response_class=Response, responses={200: {"content": {"text/html": {}}}})
async def eval_report(
    principal: ReaderPrincipal,
    state: StateDep,
    runs: Annotated[str, Query(min_length=6, max_length=200, description="Run ids, comma separated.")],
) -> Response:
    """The self-contained HTML report of one to four eval runs, as a download."""
    ids = [r.strip() for r in runs.split(",") if r.strip()]
    if not 1 <= len(ids) <= 4 or any(
        not (6 <= len(i) <= 32 and all(c in "0123456789abcdef" for c in i)) for i in ids
    ):
        raise BadRequest("runs must be one to four hexadecimal run ids, comma separated")

    def build() -> str:
        loaded = [get_eval_run(state.engine, i, tenant=principal.tenant) for i in ids]
        return render_report(loaded)

    body = await asyncio.to_thread(build)
    name = "ragd-eval-" + "-".join(i[:8] for i in ids) + ".html"
    return Response(
        body, media_type="text/html", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def install_console(app: FastAPI) -> None:
    """Mount the console pages, its two read routes and its static files on ``app``."""
    app.include_router(pages)
    app.include_router(api)
    app.mount("/ui/static", StaticFiles(directory=_HERE / "static"), name="console-static")
    declare_public(app.routes[-1])
