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
    """Hosts one ``BronzeSink`` per raw topic given, each in its own supervised loop.

    The price topic gets an actor of its own (it carries the volume); the quieter raw
    topics share one, which saves a process per topic on a 2-core machine.
    """

    def __init__(self, settings: Settings, topics: str | list[str] = broker.PRICE_RAW,
                 name: str | None = None) -> None:
        topics = [topics] if isinstance(topics, str) else list(topics)
        self.name = name or f"bronze-{topics[0]}"
        redis_url = settings.redis_url.get_secret_value()
        self.sinks = {t: BronzeSink(
            bootstrap=settings.kafka_bootstrap_servers,
            topic=t,
            lake_root=settings.lake_root,
            flush_records=settings.pipeline.bronze_flush_records,
            flush_s=settings.pipeline.bronze_flush_s,
        ) for t in topics}
        # One heartbeat for the actor: the first loop beats with every sink's figures.
        self.loops = [SupervisedLoop(
            self.name if i == 0 else f"{self.name}:{t}", sink.poll_once,
            heartbeat=Heartbeat(redis_url, self.name if i == 0 else f"{self.name}:{t}"),
            figures=self.stats if i == 0 else (lambda: {}),
        ) for i, (t, sink) in enumerate(self.sinks.items())]

    def stats(self) -> dict[str, Any]:
        def one(s: Any) -> dict[str, Any]:
            return {"messages": s.messages, "files": s.files, "dead_lettered": s.dead_lettered,
                    "last_flush": s.last_flush}

        if len(self.sinks) == 1:
            return one(next(iter(self.sinks.values())).stats)
        return {"topics": {t: one(sink.stats) for t, sink in self.sinks.items()}}

    def stop(self) -> None:
        for loop in self.loops:
            loop.stop()
        for sink in self.sinks.values():
            sink.close()


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
