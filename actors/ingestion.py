"""The simulated-market ingestion actor: history once, then live ticks, into Kafka.

Its cursor (the simulator's state, and whether the history has been fully sent) lives
in PostgreSQL, so a restarted actor continues the same price paths instead of
starting over. History is re-sent whole if a crash cut it short; it is deterministic,
so silver's deduplication on natural keys makes the replay harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from actors.base import Heartbeat, SupervisedLoop
from core import db
from core.catalog import load_catalog
from core.settings import Settings
from ingestion.producer import EnvelopePublisher
from ingestion.simulated import SimulatedMarket

log = logging.getLogger(__name__)

CURSOR_SOURCE = "simulated-market"
CHECKPOINT_EVERY_S = 10.0


class SimulatedIngestion:
    """Publishes simulated bars and ticks to ``price-data-raw``, keyed by asset."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        sim = settings.simulator
        self.assets = load_catalog()
        self.db = db.SyncDb(settings.database_url.get_secret_value())
        self.producer = EnvelopePublisher(settings.kafka_bootstrap_servers,
                                          client_id="ingest-simulated")
        self.sent = 0
        self.history_sent = 0
        self.last_event_time: str | None = None
        self._last_checkpoint = self._started = time.monotonic()
        self._history_done = threading.Event()
        self._checkpointed_history = False

        cursor = self.db.run(lambda c: db.load_cursor(c, CURSOR_SOURCE)) or {}
        if cursor.get("history_done"):
            self.market = SimulatedMarket.from_state(self.assets, cursor["market"], seed=sim.seed)
            self._history_done.set()
            self._checkpointed_history = True
        else:
            # The end is fixed in the cursor first so that a replay is byte-identical.
            end = datetime.fromisoformat(cursor["history_end"]) if "history_end" in cursor else (
                datetime.now(UTC))
            self.db.run(lambda c: db.save_cursor(c, CURSOR_SOURCE, {"history_end": end.isoformat()}))
            self.market = SimulatedMarket(self.assets, seed=sim.seed)
            history = self.market.history(end=end, hours=sim.history_hours)
            self._history_thread = threading.Thread(
                target=self._send_history, args=(history,), name="history", daemon=True
            )
            self._history_thread.start()

        self.loop = SupervisedLoop(
            "ingest-simulated", self._tick_step,
            heartbeat=Heartbeat(settings.redis_url.get_secret_value(), "ingest-simulated"),
            figures=self.stats, idle_s=sim.tick_interval_s,
        )

    def _send_history(self, history) -> None:
        for env in history:
            self.producer.publish(env)
            self.history_sent += 1
        self.producer.flush()
        # The tick thread owns the simulator state, so it writes the checkpoint.
        self._history_done.set()
        log.info("history sent: %d bars", self.history_sent)

    def _tick_step(self) -> None:
        now = datetime.now(UTC)
        for env in self.market.ticks(now):
            self.producer.publish(env)
        self.producer.flush()
        self.sent += len(self.assets)
        self.last_event_time = now.isoformat()
        due = time.monotonic() - self._last_checkpoint >= CHECKPOINT_EVERY_S
        if self._history_done.is_set() and (due or not self._checkpointed_history):
            self._checkpoint(history_done=True)
            self._checkpointed_history = True

    def _checkpoint(self, *, history_done: bool) -> None:
        cursor = {"history_done": history_done, "market": self.market.state()}
        self.db.run(lambda c: db.save_cursor(c, CURSOR_SOURCE, cursor))
        self._last_checkpoint = time.monotonic()

    def stats(self) -> dict[str, Any]:
        # The same figures as every source actor (actors/sources.py), for rwa ingest status.
        elapsed = max(1e-9, time.monotonic() - self._started)
        lag = (datetime.now(UTC) - datetime.fromisoformat(self.last_event_time)).total_seconds() \
            if self.last_event_time else None
        return {
            "source": SimulatedMarket.SOURCE,
            "state": "caught_up" if self._history_done.is_set() else "catching_up",
            "sent": self.sent + self.history_sent,
            "ticks_sent": self.sent,
            "history_sent": self.history_sent,
            "messages_per_s": round((self.sent + self.history_sent) / elapsed, 2),
            "dead_lettered": self.producer.rejected,
            "last_event_time": self.last_event_time,
            "lag_s": round(lag, 1) if lag is not None else None,
        }

    def stop(self) -> None:
        self.loop.stop()
        self.producer.close()
        self.db.close()
