"""Sliding-window request limits in Redis: at most ``limit`` requests in any
``window_s`` seconds per key, with the wait until the next one is allowed.

One sorted set per key holds the times of the requests inside the window; a Lua script
trims, counts and adds atomically with Redis's own clock, so every replica agrees.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

# KEYS[1]: the window's sorted set. ARGV: window in ms, limit, a unique member suffix.
# Returns {allowed (1/0), requests in the window, ms until the oldest leaves it}.
_SLIDING_WINDOW = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, count, tonumber(oldest[2]) + window - now}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # 0 when allowed


class SlidingWindowLimiter:
    def __init__(self, redis: aioredis.Redis, *, prefix: str = "rwa:ratelimit") -> None:
        self._script = redis.register_script(_SLIDING_WINDOW)
        self._prefix = prefix

    async def hit(self, key: str, *, limit: int, window_s: int = 60) -> Decision:
        """Count one request against ``key`` if the window has room."""
        allowed, count, wait_ms = await self._script(
            keys=[f"{self._prefix}:{key}"],
            args=[window_s * 1000, limit, secrets.token_hex(6)])
        if allowed:
            return Decision(True, limit, max(0, limit - int(count)), 0)
        return Decision(False, limit, 0, max(1, math.ceil(int(wait_ms) / 1000)))
