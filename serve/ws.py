"""The live WebSocket ``/ws/prices``: a client subscribes to assets (ids or symbols) and
gets one JSON message per tick from the replica's :class:`serve.live.TickHub`.

``ws_router(services)`` returns the router ``serve.api`` mounts.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from serve.live import Subscriber


class SubscribeMessage(BaseModel):
    action: Literal["subscribe", "unsubscribe"]
    assets: list[str]


def ws_router(services: Any) -> APIRouter:
    router = APIRouter()
    args = services.args

    @router.websocket("/ws/prices")
    async def ws_prices(ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origin and args.allowed_origins and origin not in args.allowed_origins:
            await ws.close(code=1008, reason="origin not allowed")
            return
        await ws.accept()
        sub = Subscriber()
        sender = asyncio.create_task(_send_loop(ws, sub))
        try:
            while True:
                text = await ws.receive_text()
                await _handle_client_message(ws, sub, text)
        except WebSocketDisconnect:
            pass
        finally:
            services.hub.unsubscribe(sub)
            sender.cancel()

    async def _handle_client_message(ws: WebSocket, sub: Subscriber, text: str) -> None:
        try:
            msg = SubscribeMessage.model_validate_json(text)
        except ValidationError as e:
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
            await ws.send_json({"type": "error", "detail": f"unknown asset(s): {', '.join(unknown)}"})
        ids = sorted({r for r in resolved if r})
        if msg.action == "subscribe":
            services.hub.subscribe(sub, ids)
        else:
            services.hub.unsubscribe(sub, ids)
        await ws.send_json({"type": f"{msg.action}d", "assets": sorted(sub.assets)})

    return router


async def _send_loop(ws: WebSocket, sub: Subscriber) -> None:
    with contextlib.suppress(Exception):
        while True:
            await ws.send_text(await sub.queue.get())
