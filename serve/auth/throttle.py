"""Failed-attempt throttling for logins and TOTP codes, in Redis.

Failures are counted per account and per client IP over a window that starts at the
first failure. Once either count reaches its limit, attempts are refused (429 with
Retry-After) until the window ends, whether the password is right or not. A success
clears the account's count; the IP's count is left to expire, so one valid account
cannot be used to reset the counter for guesses against others.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Locked:
    """Attempts are refused for ``retry_after_s``; ``detail`` says why."""

    retry_after_s: int
    detail: str


class Throttle:
    def __init__(self, redis: aioredis.Redis, *, scope: str, max_per_account: int,
                 max_per_ip: int, window_s: int) -> None:
        self._redis = redis
        self._scope = scope
        self._max_account = max_per_account
        self._max_ip = max_per_ip
        self._window_s = window_s

    def _keys(self, account: str, ip: str) -> tuple[str, str]:
        return (f"rwa:auth:fail:{self._scope}:account:{account}",
                f"rwa:auth:fail:{self._scope}:ip:{ip}")

    async def check(self, account: str, ip: str) -> Locked | None:
        """Whether attempts on ``account`` from ``ip`` are locked out right now."""
        account_key, ip_key = self._keys(account, ip)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(account_key).ttl(account_key).get(ip_key).ttl(ip_key)
            account_n, account_ttl, ip_n, ip_ttl = await pipe.execute()
        what = "login" if self._scope == "login" else "2FA code"
        if account_n is not None and int(account_n) >= self._max_account:
            wait = _seconds(account_ttl, self._window_s)
            return Locked(wait, f"too many failed {what} attempts for this account: it is "
                                f"locked for {_minutes(wait)}; try again later")
        if ip_n is not None and int(ip_n) >= self._max_ip:
            wait = _seconds(ip_ttl, self._window_s)
            return Locked(wait, f"too many failed {what} attempts from your network; "
                                f"try again in {_minutes(wait)}")
        return None

    async def failed(self, account: str, ip: str) -> None:
        """Count one failure against both the account and the IP."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in self._keys(account, ip):
                # The window starts at the first failure; INCR keeps the expiry.
                pipe.set(key, 0, ex=self._window_s, nx=True).incr(key)
            await pipe.execute()

    async def succeeded(self, account: str) -> None:
        await self._redis.delete(self._keys(account, "")[0])


def _seconds(ttl: int, default: int) -> int:
    return ttl if ttl and ttl > 0 else default


def _minutes(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    return f"{-(-seconds // 60)} min"
