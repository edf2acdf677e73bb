"""The WebSocket hub of one ingress replica: one Redis subscription to the ticks
channel, fanned out to the sockets subscribed to each asset.

Each socket has a small bounded queue drained by its own sender task; when a slow
client's queue is full its oldest tick is dropped, so it never delays the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict

from core import cache

log = logging.getLogger(__name__)

CLIENT_QUEUE = 256


class Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=CLIENT_QUEUE)
        self.assets: set[str] = set()
        self.dropped = 0

    def offer(self, message: str) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)


class TickHub:
    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._by_asset: dict[str, set[Subscriber]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self.received = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="tick-hub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, sub: Subscriber, asset_ids: list[str]) -> None:
        for a in asset_ids:
            sub.assets.add(a)
            self._by_asset[a].add(sub)

    def unsubscribe(self, sub: Subscriber, asset_ids: list[str] | None = None) -> None:
        for a in list(sub.assets if asset_ids is None else asset_ids):
            sub.assets.discard(a)
            self._by_asset[a].discard(sub)

    @property
    def clients(self) -> int:
        return len({s for subs in self._by_asset.values() for s in subs})

    def dispatch(self, raw: str) -> None:
        try:
            asset_id = json.loads(raw)["asset_id"]
        except (ValueError, KeyError, TypeError):
            return
        for sub in self._by_asset.get(asset_id, ()):
            sub.offer(raw)

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            client = cache.async_client(self._redis_url)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(cache.TICKS_CHANNEL)
                backoff = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.received += 1
                        self.dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis went away: keep the sockets, retry the feed
                log.warning("tick feed lost (%s); retrying in %.1f s", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
