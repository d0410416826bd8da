"""Rate limits: a small Protocol, an in-process limiter and a Redis one (shared by replicas).

Both implement GCRA (a token bucket kept as one timestamp per key): ``limit`` requests per
``period_s`` with bursts of up to ``burst``. A refused hit says when the next one will pass,
which becomes the ``Retry-After`` header. ``cost=0`` asks without spending.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from ragd.config import AuthSettings


@dataclass(frozen=True)
class RateDecision:
    """Whether a hit passed and, if not, how long until one would."""

    allowed: bool
    retry_after_s: float = 0.0


class RateLimiter(Protocol):
    """A keyed rate limiter."""

    async def hit(
        self, key: str, limit: int, period_s: float, burst: int | None = None, cost: int = 1
    ) -> RateDecision:
        """Spend ``cost`` from ``key``'s bucket (``cost=0``: only look)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _gcra(
    tat: float, now: float, limit: int, period_s: float, burst: int, cost: int
) -> tuple[bool, float, float]:
    """(allowed, new theoretical arrival time, retry after) for one hit."""
    interval = period_s / limit
    tolerance = interval * burst
    # Offsets from now, not absolute times: (now + 60) - now is not 60 in floating point once
    # the clock is large (a monotonic clock after hours, an epoch clock always), and a fresh key
    # at its very limit was refused by that rounding.
    ahead = max(tat - now, 0.0)
    # With cost=0, "allowed" means a hit of cost 1 would pass now.
    probe = ahead + interval * (cost or 1)
    if probe > tolerance:
        return False, tat, probe - tolerance
    return True, now + ahead + interval * cost, 0.0


class InProcessRateLimiter:
    """Buckets in this process's memory (bounded LRU); right for one server process."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys

    async def hit(
        self, key: str, limit: int, period_s: float, burst: int | None = None, cost: int = 1
    ) -> RateDecision:
        now = time.monotonic()
        with self._lock:
            tat = self._tats.get(key, now)
            allowed, new_tat, retry = _gcra(tat, now, limit, period_s, burst or limit, cost)
            if allowed and cost:
                self._tats[key] = new_tat
                self._tats.move_to_end(key)
                while len(self._tats) > self._max_keys:
                    self._tats.popitem(last=False)
        return RateDecision(allowed, retry)

    async def aclose(self) -> None:
        return None


# GCRA in one atomic step on the server, on the server's clock (replicas' clocks may differ).
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[2]) / tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
-- offsets from now: (now + interval) - now is not interval in floating point at epoch times
local ahead = math.max(tat - now, 0)
local probe = ahead + interval * math.max(cost, 1)
if probe > tolerance then
  return {0, tostring(probe - tolerance)}
end
local new_tat = now + ahead + interval * cost
if cost > 0 then
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
end
return {1, '0'}
"""


class RedisRateLimiter:
    """Buckets in Redis, shared by every replica. Connects on first use."""

    def __init__(self, url: str, prefix: str = "ragd:rl:") -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script: Any = self._redis.register_script(_LUA)
        self._prefix = prefix

    async def hit(
        self, key: str, limit: int, period_s: float, burst: int | None = None, cost: int = 1
    ) -> RateDecision:
        from redis.exceptions import RedisError

        from ragd.errors import ServiceUnavailable

        try:
            allowed, retry = await self._script(
                keys=[self._prefix + key], args=[limit, period_s, burst or limit, cost]
            )
        except RedisError as exc:
            raise ServiceUnavailable("the rate-limit store is unavailable") from exc
        return RateDecision(bool(int(allowed)), float(retry))

    async def aclose(self) -> None:
        await self._redis.aclose()


def build_rate_limiter(auth: AuthSettings) -> RateLimiter:
    """The limiter ``auth.rate_limit_backend`` names."""
    if auth.rate_limit_backend == "redis":
        return RedisRateLimiter(auth.redis_url)
    return InProcessRateLimiter()
