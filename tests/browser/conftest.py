"""A live ragd (uvicorn on a loopback port, temp data dir) and Debian's Chromium via Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from ragd.api.app import create_app
from ragd.db.models import DriftResult, Role
from ragd.evals.records import record_eval_run
from tests.conftest import make_settings
from tests.fixtures.auth import AuthFactory
from tests.fixtures.live_server import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"
TENANT = "acme"


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the screenshots go (gitignored)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """ragd served on 127.0.0.1 with an admin, a reader and two stored eval runs."""
    settings = make_settings(
        tmp_path_factory.mktemp("console"),
        qdrant={"mode": "memory"},
        llm={"load_on_startup": False},
        auth={"auth_failures_per_minute": 1000, "rate_limit_per_minute": 100_000},
    )
    app = create_app(settings)
    with serve_in_thread(app) as port:
        state = app.state.ragd
        auth = AuthFactory(state.engine)
        admin = auth.user(TENANT, Role.admin, username="ada", password="correct horse battery")
        reader = auth.user(TENANT, Role.reader)
        runs = []
        for shift in (0.0, 0.1):
            items = [
                {
                    "id": f"q{i}",
                    "question": f"<b>question {i}</b>",
                    "f1": min(1.0, 0.4 + shift + (i % 5) / 10),
                    "latency_ms": 100 + i,
                }
                for i in range(30)
            ]
            mean = sum(it["f1"] for it in items) / len(items)
            runs.append(
                record_eval_run(
                    state.engine,
                    kind="qa",
                    config={"model": "smollm2", "shift": shift},
                    metrics={"f1": mean, "exact_match": mean / 2, "n": len(items)},
                    items=items,
                    tenant=TENANT,
                    created_by=admin.principal.id,
                )
            )
        with Session(state.engine) as session:  # a drift history for the chart
            start = datetime.now(UTC) - timedelta(hours=12)
            for i in range(12):
                for detector, p in (("query_embedding", 0.5 / (i + 1) ** 3), ("feedback_rate", 0.3 + i / 40)):
                    session.add(
                        DriftResult(
                            tenant=TENANT,
                            ts=start + timedelta(hours=i),
                            detector=detector,
                            statistic=1.0 / (p + 0.01),
                            p_value=p,
                            alarm=p < 0.001,
                            reference_n=300,
                            window_n=100,
                        )
                    )
            session.commit()
        url = f"http://127.0.0.1:{port}"
        yield {"url": url, "admin": admin, "reader": reader, "runs": runs, "state": state}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never Playwright's own browser download)."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Any, live: dict[str, Any]) -> Iterator[Any]:
    """A fresh browser context (own sessionStorage) that fails the test on any page error."""
    context = browser.new_context(
        viewport={"width": 1200, "height": 900}, base_url=live["url"], accept_downloads=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"
