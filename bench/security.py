"""Security figures: argon2 cost, authentication overhead per request, rate limiter throughput.

.venv/bin/python bench/security.py            # in-process limiter only
.venv/bin/python bench/security.py --redis    # also the Redis limiter on 127.0.0.1:6379
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from ragd.api.app import create_app
from ragd.config import Settings
from ragd.db.models import Role
from ragd.security.passwords import hash_secret, verify_secret
from ragd.security.rate_limit import InProcessRateLimiter, RateLimiter, RedisRateLimiter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.auth import AuthFactory


def timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def show(name: str, ms: list[float]) -> None:
    p95 = sorted(ms)[int(len(ms) * 0.95) - 1]
    print(f"{name:<44} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms")


async def limiter_rate(lim: RateLimiter, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        await lim.hit(f"k{i % 100}", 1_000_000, 60.0)
    rate = n / (time.perf_counter() - t)
    await lim.aclose()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", action="store_true")
    ap.add_argument("-n", type=int, default=200)
    args = ap.parse_args()
    h = hash_secret("correct horse battery staple")
    show("argon2id hash (19 MiB, t=2, p=1)", timed(lambda: hash_secret("x" * 20), 20))
    show("argon2id verify", timed(lambda: verify_secret(h, "correct horse battery staple"), 20))
    with tempfile.TemporaryDirectory() as d:
        s = Settings(
            env="test",
            data_dir=Path(d),
            log_json=False,
            llm={"load_on_startup": False},
            auth={"rate_limit_per_minute": 10**9},
        )
        with TestClient(create_app(s)) as c:
            a = AuthFactory(c.app.state.ragd.engine).user("bench", Role.reader)  # type: ignore[attr-defined]
            show("GET /healthz (no auth)", timed(lambda: c.get("/healthz"), args.n))
            c.get("/v1/auth/whoami", headers=a.headers)
            show(
                "GET /v1/auth/whoami, API key (cached verify)",
                timed(lambda: c.get("/v1/auth/whoami", headers=a.headers), args.n),
            )
            tok = c.post(
                "/v1/auth/token", json={"tenant": "bench", "username": a.username, "password": a.password}
            ).json()["access_token"]
            show(
                "GET /v1/auth/whoami, JWT",
                timed(lambda: c.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {tok}"}), args.n),
            )
            show(
                "POST /v1/auth/token (argon2 verify)",
                timed(
                    lambda: c.post(
                        "/v1/auth/token",
                        json={"tenant": "bench", "username": a.username, "password": a.password},
                    ),
                    20,
                ),
            )
    print(
        f"{'in-process limiter':<44} {asyncio.run(limiter_rate(InProcessRateLimiter(), 20000)):9.0f} hits/s"
    )
    if args.redis:
        rate = asyncio.run(limiter_rate(RedisRateLimiter("redis://127.0.0.1:6379/13", "bench:"), 2000))
        print(f"{'Redis limiter (one connection, sequential)':<44} {rate:9.0f} hits/s")


if __name__ == "__main__":
    main()
