"""Brute-force protection, per-key rate and concurrency limits, body/query limits and CORS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from ragd.api.app import create_app
from ragd.db.models import AuditEvent, Role
from ragd.security.authenticator import ConcurrencyLimiter
from ragd.security.rate_limit import InProcessRateLimiter, RateLimiter, RedisRateLimiter, _gcra
from tests.fixtures.auth import AuthFactory
from tests.security.conftest import security_settings


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, AuthFactory]]:
    settings = security_settings(
        tmp_path_factory.mktemp("strict"),
        auth_failures_per_minute=5,
        rate_limit_per_minute=6,
        max_url_query_bytes=512,
        cors_origins=["https://console.example"],
    )
    with TestClient(create_app(settings)) as c:  # type: ignore[arg-type]
        yield c, AuthFactory(c.app.state.ragd.engine)  # type: ignore[attr-defined]


def _audit(client: TestClient, action: str) -> list[AuditEvent]:
    with Session(client.app.state.ragd.engine) as s:  # type: ignore[attr-defined]
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_key_guessing_is_throttled_and_audited(tmp_path: Path) -> None:
    with TestClient(create_app(security_settings(tmp_path, auth_failures_per_minute=5))) as client:  # type: ignore[arg-type]
        _key_guessing(client, AuthFactory(client.app.state.ragd.engine))  # type: ignore[attr-defined]


def _key_guessing(client: TestClient, auth: AuthFactory) -> None:
    real = auth.user("acme", Role.reader)
    guesses = [
        client.get("/v1/auth/whoami", headers={"X-API-Key": real.key[:-4] + f"{i:04d}"}) for i in range(8)
    ]
    codes = [r.status_code for r in guesses]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    assert int(guesses[-1].headers["Retry-After"]) >= 1
    # Throttled attempts are refused before the secret is checked: even the right key waits.
    assert client.get("/v1/auth/whoami", headers=real.headers).status_code == 429
    failures = _audit(client, "auth.failure")
    assert len(failures) >= 5 and all(e.outcome == "denied" and e.ip for e in failures)
    assert failures[0].detail["reason"] == "wrong secret" and failures[0].tenant == "acme"
    assert real.key not in str([e.detail for e in failures])
    assert len(_audit(client, "auth.throttled")) == 1  # one per minute, not one per attempt


def test_password_guessing_is_throttled_per_user(tmp_path: Path) -> None:
    settings = security_settings(tmp_path, auth_failures_per_minute=3)
    with TestClient(create_app(settings)) as client:  # type: ignore[arg-type]
        u = AuthFactory(client.app.state.ragd.engine).user("acme", Role.reader, username="vic")  # type: ignore[attr-defined]
        body = {"tenant": "acme", "username": "vic", "password": "guess"}
        codes = [client.post("/v1/auth/token", json=body).status_code for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        ok = client.post("/v1/auth/token", json={**body, "password": u.password})
        assert ok.status_code == 429 and "Retry-After" in ok.headers


def test_per_key_rate_limit_429_with_retry_after(strict: tuple[TestClient, AuthFactory]) -> None:
    client, auth = strict
    a, b = auth.user("ratelimited", Role.reader), auth.user("ratelimited", Role.reader)
    codes = [client.get("/v1/auth/whoami", headers=a.headers).status_code for _ in range(8)]
    assert codes[:6] == [200] * 6 and codes[6:] == [429, 429]
    r = client.get("/v1/auth/whoami", headers=a.headers)
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    assert client.get("/v1/auth/whoami", headers=b.headers).status_code == 200  # per key, not global


def test_concurrency_limiter() -> None:
    lim = ConcurrencyLimiter(2)
    assert lim.acquire("k") and lim.acquire("k") and not lim.acquire("k")
    assert lim.acquire("other")
    lim.release("k")
    assert lim.in_flight("k") == 1 and lim.acquire("k")


def test_body_and_query_limits(strict: tuple[TestClient, AuthFactory]) -> None:
    client, auth = strict
    ed = auth.user("limits", Role.editor)
    big = b'{"name": "x", "description": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    r = client.post(
        "/v1/collections", content=big, headers={**ed.headers, "content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert r.headers["x-request-id"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        for _ in range(40):
            yield b"a" * 65536

    r = client.post(
        "/v1/collections", content=chunks(), headers={**ed.headers, "content-type": "application/json"}
    )
    assert r.status_code == 413
    r = client.get("/v1/collections?" + "x=" + "a" * 1000, headers=ed.headers)
    assert r.status_code == 414 and r.json()["error"]["code"] == "uri_too_long"


def test_cors_allowlist(strict: tuple[TestClient, AuthFactory]) -> None:
    client, _ = strict
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = client.options("/v1/collections", headers={"Origin": "https://console.example", **pre})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://console.example"
    evil = client.options("/v1/collections", headers={"Origin": "https://evil.example", **pre})
    assert "access-control-allow-origin" not in evil.headers
    plain = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in plain.headers
    assert plain.headers["x-frame-options"] == "DENY"


# --- limiter contract, in process and on the real Redis ------------------------------------------


@pytest.fixture(params=["inprocess", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    if request.param == "inprocess":
        yield InProcessRateLimiter()
        return
    import uuid

    lim = RedisRateLimiter("redis://127.0.0.1:6379/15", prefix=f"ragd-test:{uuid.uuid4().hex}:")
    yield lim
    asyncio.run(lim.aclose())


def test_limiter_contract(limiter: RateLimiter) -> None:
    async def scenario() -> None:
        got = [(await limiter.hit("k", 3, 60.0)).allowed for _ in range(5)]
        assert got == [True, True, True, False, False]
        peek = await limiter.hit("k", 3, 60.0, cost=0)
        assert not peek.allowed and 0 < peek.retry_after_s <= 20.5
        assert (await limiter.hit("other", 3, 60.0)).allowed
        # burst below the limit: 2 at once, then one every period/limit.
        assert [(await limiter.hit("b", 60, 60.0, burst=2)).allowed for _ in range(3)] == [True, True, False]
        # cost=0 never spends.
        for _ in range(5):
            assert (await limiter.hit("fresh", 1, 60.0, cost=0)).allowed
        assert (await limiter.hit("fresh", 1, 60.0)).allowed
        await limiter.aclose()

    asyncio.run(scenario())


@pytest.mark.redis
def test_rate_limits_shared_through_redis(tmp_path: Path) -> None:
    """Two app instances (two replicas) share one key's budget when the backend is Redis."""
    import uuid

    import redis

    db_url = f"sqlite:///{tmp_path / 'shared.db'}"
    url = "redis://127.0.0.1:6379/14"
    kw = {"rate_limit_backend": "redis", "redis_url": url, "rate_limit_per_minute": 4}
    s1 = security_settings(tmp_path / "a", **kw)
    s2 = security_settings(tmp_path / "b", **kw)
    s1.db.url = s2.db.url = db_url  # type: ignore[attr-defined]
    tenant = f"shared-{uuid.uuid4().hex[:6]}"
    with TestClient(create_app(s1)) as c1, TestClient(create_app(s2)) as c2:  # type: ignore[arg-type]
        actor = AuthFactory(c1.app.state.ragd.engine).user(tenant, Role.reader)  # type: ignore[attr-defined]
        codes = [
            (c1 if i % 2 else c2).get("/v1/auth/whoami", headers=actor.headers).status_code for i in range(6)
        ]
    assert codes == [200, 200, 200, 200, 429, 429]
    redis.Redis.from_url(url).flushdb()


@pytest.mark.parametrize("seconds", [1_000, 7_000, 100_000, 1_764_582_000])
def test_a_fresh_key_at_its_limit_is_allowed_whatever_the_clock_reads(seconds: int) -> None:
    # (now + 60) - now rounds above 60 for some clock values; a fresh key with one hit per minute
    # was then refused (seen with the monotonic clock after 1h45 of uptime).
    for now in (seconds + j / 7 for j in range(200)):
        assert _gcra(now, now, 1, 60.0, 1, 0)[0], now  # cost=0: would one hit pass?
        allowed, new_tat, _ = _gcra(now, now, 1, 60.0, 1, 1)
        assert allowed and new_tat == pytest.approx(now + 60.0), now
        assert not _gcra(new_tat, now, 1, 60.0, 1, 1)[0], now  # the second within the minute
