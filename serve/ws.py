"""The live WebSocket ``/ws/prices``: an authenticated client subscribes to assets (ids
or symbols), up to its tier's cap, and gets one JSON message per tick from the
replica's :class:`serve.live.TickHub`.

The protocol:

1. Handshake. An ``Origin`` that is not among the allowed origins is refused before
   the socket opens.
2. Authentication, with an access token from ``POST /auth/login``: either
   ``Authorization: Bearer <token>`` on the handshake (scripts, services), or, since
   browsers cannot set that header, a first message ``{"action": "auth", "token":
   "<token>"}`` within :data:`AUTH_TIMEOUT_S`. Never in the query string, which ends
   up in access logs. The server answers ``{"type": "authenticated", "tier": ...,
   "max_assets": N}``. An invalid, expired, revoked or 2FA temp token closes the socket
   with 1008 and the reason; so do silence, or anything else, before authenticating
   (reason ``authentication required``). A dependency outage closes it with 1013.
3. ``{"action": "subscribe"|"unsubscribe", "assets": [...]}``, answered with
   ``{"type": "subscribed"|"unsubscribed", "assets": [every asset followed]}``. A
   subscribe that would take the socket past the tier's ``max_ws_subscriptions`` is
   refused as a whole with ``{"type": "error", ...}`` and changes nothing; a bad
   message or an unknown asset gets an error too, and the socket stays open.

A connection is authorised once, when it opens: a token that expires, a logout or a
tier change later does not touch sockets already open (their cap stays the one they
were given). What flows over them is the price feed the REST API serves to anyone;
the token is there to hold each account to its tier's cap, and a client that wants a
new cap reconnects with a new token.

``ws_router(services)`` returns the router ``serve.api`` mounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import asyncpg
import redis.exceptions
from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from core.settings import TierLimits
from serve.auth.context import auth_for
from serve.auth.users import User
from serve.live import Subscriber

log = logging.getLogger(__name__)

#: Seconds a socket without an Authorization header has to send its auth message.
AUTH_TIMEOUT_S = 10.0
#: Close codes (RFC 6455): a policy refused (origin, authentication); a dependency down.
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
AUTH_REQUIRED = "authentication required"
#: At most this many unknown asset names are echoed back in an error.
MAX_ECHOED = 10
_MAX_REASON_BYTES = 123  # what a close frame can carry


class SubscribeMessage(BaseModel):
    action: Literal["subscribe", "unsubscribe"]
    assets: list[str]


class AuthMessage(BaseModel):
    action: Literal["auth"]
    token: str


class Refused(Exception):
    """Close the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def ws_router(services: Any) -> APIRouter:
    router = APIRouter()
    args = services.args

    @router.websocket("/ws/prices")
    async def ws_prices(ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origin and args.allowed_origins and origin not in args.allowed_origins:
            await ws.close(code=POLICY_VIOLATION, reason="origin not allowed")
            return
        await ws.accept()
        try:
            user, limits = await _authenticate(ws)
        except WebSocketDisconnect:
            return
        except Refused as e:
            with contextlib.suppress(WebSocketDisconnect):
                await ws.close(code=e.code, reason=_reason(e.reason))
            return
        cap = limits.max_ws_subscriptions
        sub = Subscriber()
        sender = asyncio.create_task(_send_loop(ws, sub))
        try:
            await ws.send_json({"type": "authenticated", "tier": user.tier, "max_assets": cap})
            while True:
                await _handle_client_message(ws, sub, user.tier, cap, await _receive(ws))
        except WebSocketDisconnect:
            pass
        finally:
            services.hub.unsubscribe(sub)
            sender.cancel()

    async def _authenticate(ws: WebSocket) -> tuple[User, TierLimits]:
        """The socket's user and tier limits, from its Authorization header or else its
        first message; :class:`Refused` if there is no valid access token."""
        header = ws.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Refused(POLICY_VIOLATION, "send Authorization: Bearer <access token>")
            return await _check(token.strip())
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_S):
                first = await _receive(ws)
        except TimeoutError as e:
            raise Refused(POLICY_VIOLATION, AUTH_REQUIRED) from e
        try:
            token = AuthMessage.model_validate_json(first).token
        except ValidationError as e:
            raise Refused(POLICY_VIOLATION, AUTH_REQUIRED) from e
        return await _check(token.strip())

    async def _check(token: str) -> tuple[User, TierLimits]:
        auth = auth_for(services)
        try:
            user, _ = await auth.authenticate(token)
        except HTTPException as e:
            code = POLICY_VIOLATION if e.status_code == 401 else TRY_AGAIN_LATER
            raise Refused(code, str(e.detail)) from e
        except (asyncpg.PostgresError, OSError, redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError) as e:
            log.warning("WebSocket authentication failed on a dependency: %s", e)
            raise Refused(TRY_AGAIN_LATER,
                          f"a dependency is unavailable: {type(e).__name__}") from e
        return user, auth.limits(user.tier)

    async def _handle_client_message(ws: WebSocket, sub: Subscriber, tier: str, cap: int,
                                     text: str | bytes) -> None:
        try:
            msg = SubscribeMessage.model_validate_json(text)
        except ValidationError as e:
            with contextlib.suppress(ValidationError):
                AuthMessage.model_validate_json(text)
                await ws.send_json({"type": "error", "detail": "already authenticated"})
                return
            await ws.send_json({"type": "error", "detail": f"bad message: {e.errors()[0]['msg']}; "
                                'expected {"action": "subscribe", "assets": [...]}'})
            return
        if not services.symbols:
            try:
                await services.ensure_pool()
            except HTTPException as e:
                await ws.send_json({"type": "error", "detail": e.detail})
                return
        resolved = [services.symbols.get(a.lower()) for a in msg.assets]
        unknown = [a for a, r in zip(msg.assets, resolved) if r is None]
        if unknown:
            more = f" and {len(unknown) - MAX_ECHOED} more" if len(unknown) > MAX_ECHOED else ""
            await ws.send_json({"type": "error", "detail":
                                f"unknown asset(s): {', '.join(unknown[:MAX_ECHOED])}{more}"})
        ids = sorted({r for r in resolved if r})
        if msg.action == "subscribe":
            after = len(sub.assets | set(ids))
            if after > cap:
                await ws.send_json({"type": "error", "detail": (
                    f"too many assets: the {tier} tier allows {cap} assets per connection; "
                    f"this one follows {len(sub.assets)} and the request would make it "
                    f"{after}; nothing was subscribed")})
                return
            services.hub.subscribe(sub, ids)
        else:
            services.hub.unsubscribe(sub, ids)
        await ws.send_json({"type": f"{msg.action}d", "assets": sorted(sub.assets)})

    return router


async def _receive(ws: WebSocket) -> str | bytes:
    """The next message, text or binary; WebSocketDisconnect once the client is gone."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    return message.get("text") or message.get("bytes") or ""


def _reason(text: str) -> str:
    """``text`` cut to what fits in a close frame."""
    return text.encode()[:_MAX_REASON_BYTES].decode(errors="ignore")


async def _send_loop(ws: WebSocket, sub: Subscriber) -> None:
    with contextlib.suppress(Exception):
        while True:
            await ws.send_text(await sub.queue.get())
