"""Sliding-window request limits in Redis: at most ``limit`` requests in any
``window_s`` seconds per key, with the wait until the next one is allowed.

One sorted set per key holds the times of the requests inside the window; a Lua script
trims, counts and adds atomically with Redis's own clock, so every replica agrees.

``hit_session`` is the same window for a signed-in caller, folded into the request's one
Redis round trip: the script also checks the session's revocation marker and reads the
cached user whose tier sets the limit (``serve.auth.context.Auth.gate``).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

# The window itself; `limit`, `window` (ms) and `suffix` (unique per request, so that
# two requests in the same millisecond are two members) are set by the script around it.
# Returns {allowed (1/0), requests in the window, ms until the oldest leaves it}.
_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. suffix)
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, count, tonumber(oldest[2]) + window - now}
"""

# KEYS[1]: the window's sorted set. ARGV: window in ms, limit, a unique member suffix.
_SLIDING_WINDOW = """
if redis.replicate_commands then redis.replicate_commands() end
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local suffix = ARGV[3]
""" + _WINDOW

# KEYS: the window's sorted set, the session's revocation marker, the cached user hash.
# ARGV: window in ms, a unique member suffix, the limit of a tier not named, then pairs
# of tier name and limit. Returns {-1} for a revoked session and {0} for a user not
# cached, counting nothing; else {1, email, tier, is_admin, <the window's reply>}.
_SESSION_WINDOW = """
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1} end
local user = redis.call('HMGET', KEYS[3], 'email', 'tier', 'is_admin')
if not user[1] or not user[2] or not user[3] then return {0} end
local window = tonumber(ARGV[1])
local suffix = ARGV[2]
local limit = tonumber(ARGV[3])
for i = 4, #ARGV - 1, 2 do
  if ARGV[i] == user[2] then limit = tonumber(ARGV[i + 1]) end
end
local decided = (function()
""" + _WINDOW + """
end)()
return {1, user[1], user[2], user[3], decided[1], decided[2], decided[3]}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # 0 when allowed


@dataclass(frozen=True)
class SessionHit:
    """The cached user a session belongs to, and the decision on its request."""

    email: str
    tier: str
    is_admin: bool
    decision: Decision


class SlidingWindowLimiter:
    def __init__(self, redis: aioredis.Redis, *, prefix: str = "rwa:ratelimit") -> None:
        self._script = redis.register_script(_SLIDING_WINDOW)
        self._session_script = redis.register_script(_SESSION_WINDOW)
        self._prefix = prefix

    async def hit(self, key: str, *, limit: int, window_s: int = 60) -> Decision:
        """Count one request against ``key`` if the window has room."""
        allowed, count, wait_ms = await self._script(
            keys=[f"{self._prefix}:{key}"],
            args=[window_s * 1000, limit, secrets.token_hex(6)])
        return _decision(limit, allowed, count, wait_ms)

    async def hit_session(self, key: str, *, revoked_key: str, user_key: str,
                          limits: dict[str, int], default_limit: int,
                          window_s: int = 60) -> SessionHit | None:
        """Count one request of a signed-in caller against ``key``, the limit being their
        tier's as cached at ``user_key``; None, counting nothing, when the session is
        revoked or the user is not cached (the caller then takes the long way)."""
        pairs = [v for tier, limit in limits.items() for v in (tier, limit)]
        reply = await self._session_script(
            keys=[f"{self._prefix}:{key}", revoked_key, user_key],
            args=[window_s * 1000, secrets.token_hex(6), default_limit, *pairs])
        if int(reply[0]) != 1:
            return None
        email, tier, is_admin, allowed, count, wait_ms = reply[1:]
        decision = _decision(limits.get(tier, default_limit), allowed, count, wait_ms)
        return SessionHit(email=email, tier=tier, is_admin=is_admin == "1", decision=decision)


def _decision(limit: int, allowed: int, count: int, wait_ms: int) -> Decision:
    """The decision a window script's reply {allowed, count, wait_ms} stands for."""
    if allowed:
        return Decision(True, limit, max(0, limit - int(count)), 0)
    return Decision(False, limit, 0, max(1, math.ceil(int(wait_ms) / 1000)))
