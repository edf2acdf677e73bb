"""Long-lived actors of the raw price topic: the bronze sink and the live fan-out."""

from __future__ import annotations

from typing import Any

from actors.base import Heartbeat, SupervisedLoop
from core import broker
from core.catalog import load_catalog
from core.settings import Settings
from pipeline.bronze import BronzeSink
from pipeline.live import LiveFanout


class BronzeSinkActor:
    """Hosts a ``BronzeSink`` for one raw topic."""

    def __init__(self, settings: Settings, topic: str = broker.PRICE_RAW) -> None:
        self.name = f"bronze-{topic}"
        self.sink = BronzeSink(
            bootstrap=settings.kafka_bootstrap_servers,
            topic=topic,
            lake_root=settings.lake_root,
            flush_records=settings.pipeline.bronze_flush_records,
            flush_s=settings.pipeline.bronze_flush_s,
        )
        self.loop = SupervisedLoop(
            self.name, self.sink.poll_once,
            heartbeat=Heartbeat(settings.redis_url.get_secret_value(), self.name),
            figures=self.stats,
        )

    def stats(self) -> dict[str, Any]:
        s = self.sink.stats
        return {"messages": s.messages, "files": s.files, "dead_lettered": s.dead_lettered,
                "last_flush": s.last_flush}

    def stop(self) -> None:
        self.loop.stop()
        self.sink.close()


class LiveFanoutActor:
    """Hosts the ``LiveFanout`` of the price topic."""

    NAME = "live-fanout"

    def __init__(self, settings: Settings) -> None:
        self.fanout = LiveFanout(
            bootstrap=settings.kafka_bootstrap_servers,
            topic=broker.PRICE_RAW,
            redis_url=settings.redis_url.get_secret_value(),
            symbols={a.asset_id: a.symbol for a in load_catalog()},
        )
        self.loop = SupervisedLoop(
            self.NAME, self.fanout.poll_once,
            heartbeat=Heartbeat(settings.redis_url.get_secret_value(), self.NAME),
            figures=self.stats,
        )

    def stats(self) -> dict[str, Any]:
        return {"published": self.fanout.stats.published, "skipped": self.fanout.stats.skipped}

    def stop(self) -> None:
        self.loop.stop()
        self.fanout.close()
