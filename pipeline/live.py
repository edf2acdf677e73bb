"""The live path: raw ticks → latest price in Redis + one message on the ticks channel.

It runs in its own consumer group beside the bronze sink and never waits for Spark:
each tick gets only cheap checks (known asset, positive finite price) before it is
published, so a WebSocket client sees it milliseconds after it reached Kafka.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from core import cache

log = logging.getLogger(__name__)


@dataclass
class FanoutStats:
    published: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def live_tick(raw: bytes, symbols: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """Turn a raw message into the live tick message, or say why it is not one.

    Returns:
        ``(message, None)`` for a tick to publish, ``(None, reason)`` otherwise.
    """
    try:
        data = json.loads(raw)
        kind = data["kind"]
        asset_id = data["asset_id"]
        payload = data["payload"]
    except (ValueError, TypeError, KeyError):
        return None, "malformed"
    if kind != "tick":
        return None, "not_a_tick"
    symbol = symbols.get(asset_id)
    if symbol is None:
        return None, "unknown_asset"
    price = payload.get("price") if isinstance(payload, dict) else None
    if not isinstance(price, (int, float)) or not math.isfinite(price) or price <= 0:
        return None, "bad_price"
    return {
        "asset_id": asset_id,
        "symbol": symbol,
        "time": data.get("event_time"),
        "price": float(price),
        "volume": payload.get("volume"),
        "nav": payload.get("nav"),
        "source": data.get("source"),
        "ingest_time": data.get("ingest_time"),
    }, None


class LiveFanout:
    """Consumes a raw price topic from its end and publishes ticks through Redis."""

    GROUP_ID = "live-fanout"

    def __init__(self, *, bootstrap: str, topic: str, redis_url: str,
                 symbols: dict[str, str]) -> None:
        self.symbols = symbols
        self.redis = cache.sync_client(redis_url)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.GROUP_ID,
            client_id=self.GROUP_ID,
            enable_auto_commit=False,
            # Latency over batching: answer a fetch as soon as one message is there.
            fetch_max_wait_ms=10,
            max_poll_records=5_000,
        )
        parts = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or ())]
        self.consumer.assign(parts)
        # Live means now: history and backlog belong to the lake path.
        self.consumer.seek_to_end(*parts)
        self.stats = FanoutStats()

    def poll_once(self, timeout_ms: int = 100) -> int:
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        pipe = self.redis.pipeline(transaction=False)
        published = 0
        for records in batches.values():
            for record in records:
                message, reason = live_tick(record.value or b"", self.symbols)
                if message is None:
                    self.stats.skip(reason or "unknown")
                    continue
                # Lets clients and benchmarks split latency into Kafka and push legs.
                message["published_at"] = time.time()
                body = json.dumps(message)
                pipe.set(cache.latest_price_key(message["asset_id"]), body)
                pipe.publish(cache.TICKS_CHANNEL, body)
                published += 1
        if published:
            pipe.execute()
            self.stats.published += published
        return published

    def close(self) -> None:
        self.consumer.close()
        self.redis.close()
