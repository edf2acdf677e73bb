"""FastAPI dependencies for every router: who is calling, whether they are an admin,
what their tier allows, and the per-tier request limit.

They find the replica's ``Services`` at ``app.state.services`` (``create_api`` sets
it)::

    from serve.auth.deps import User, current_user, require_admin, tier_limits

    @router.get("/portfolio")
    async def portfolio(user: Annotated[User, Depends(current_user)]): ...

``rate_limit`` is meant for the whole app: ``FastAPI(dependencies=[Depends(rate_limit)])``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Annotated

import redis.exceptions
from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from core.settings import TierLimits
from serve.auth.context import Auth, auth_for, unauthorized
from serve.auth.ratelimit import Decision
from serve.auth.tokens import Claims
from serve.auth.users import User

__all__ = ["Session", "User", "auth_of", "current_user", "optional_user", "rate_limit",
           "require_admin", "session", "tier_limits"]

log = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="An access token from POST /auth/login (or /auth/verify-2fa).")

#: Paths the request limit leaves alone: probes and scrapes.
UNLIMITED_PATHS = frozenset({"/health", "/metrics"})
#: The request limit's window.
WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    claims: Claims


def auth_of(conn: HTTPConnection) -> Auth:
    services = getattr(conn.app.state, "services", None)
    if services is None:
        raise RuntimeError("app.state.services is not set; serve.auth's dependencies need it")
    return auth_for(services)


async def _session_of(conn: HTTPConnection, token: str) -> Session:
    cached = getattr(conn.state, "auth_session", None)
    if cached is not None:
        return cached
    user, claims = await auth_of(conn).authenticate(token)
    conn.state.auth_session = found = Session(user, claims)
    return found


async def session(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Session:
    """The caller's user and token claims; 401 without a valid access token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("not authenticated: send Authorization: Bearer <access token>")
    return await _session_of(request, credentials.credentials)


async def current_user(s: Annotated[Session, Depends(session)]) -> User:
    """The authenticated caller; 401 without a valid access token."""
    return s.user


async def optional_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User | None:
    """The caller if a token is sent (401 if it is invalid), None for anonymous calls."""
    if credentials is None:
        return None
    return (await _session_of(request, credentials.credentials)).user


async def require_admin(user: Annotated[User, Depends(current_user)]) -> User:
    """The caller if they hold the admin role; 403 otherwise."""
    if not user.is_admin:
        raise HTTPException(403, "this needs the admin role")
    return user


async def tier_limits(request: Request, user: Annotated[User, Depends(current_user)]
                      ) -> TierLimits:
    """What the caller's tier allows (forecast horizons, alerts, WebSocket assets)."""
    return auth_of(request).limits(user.tier)


_last_outage_log = 0.0


def _warn_outage(e: Exception) -> None:
    """Say once every 30 s, not on every request, that limits are off."""
    global _last_outage_log
    if time.monotonic() - _last_outage_log > 30:
        _last_outage_log = time.monotonic()
        log.warning("request limits not enforced while Redis is unavailable: %s", e)


async def rate_limit(conn: HTTPConnection, response: Response) -> None:
    """The tier's requests per minute, per user (per client IP when anonymous) over a
    sliding minute; 429 with Retry-After beyond it. An invalid token counts as anonymous
    here (the route itself refuses it). While Redis is down requests pass, unlimited."""
    if conn.scope["type"] != "http" or conn.url.path in UNLIMITED_PATHS:
        return
    auth = auth_of(conn)
    try:
        decision, tier = await _count_request(conn, auth)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        _warn_outage(e)
        return
    response.headers["X-RateLimit-Limit"] = str(decision.limit)
    response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
    if not decision.allowed:
        raise HTTPException(
            429, f"rate limit exceeded: the {tier} tier allows {decision.limit} requests per "
                 f"minute; retry in {decision.retry_after_s} s",
            headers={"Retry-After": str(decision.retry_after_s),
                     "X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": "0"})


async def _count_request(conn: HTTPConnection, auth: Auth) -> tuple[Decision, str]:
    """Count the request against its user's or client's window: the decision and tier."""
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        with contextlib.suppress(HTTPException):  # an invalid token counts as anonymous
            # Usually one Redis call: the session's checks and the count together.
            gated = await auth.gate(token, window_s=WINDOW_S)
            if gated is not None:
                user, claims, decision = gated
                conn.state.auth_session = Session(user, claims)
                return decision, user.tier
            # A revoked session (401 here) or a user not cached (a database read).
            user = (await _session_of(conn, token)).user
            limit = auth.limits(user.tier).requests_per_minute
            return (await auth.limiter.hit(f"user:{user.user_id}", limit=limit,
                                           window_s=WINDOW_S), user.tier)
    limit = auth.limits("free").requests_per_minute
    return await auth.limiter.hit(f"ip:{auth.client_ip(conn)}", limit=limit,
                                  window_s=WINDOW_S), "free"
