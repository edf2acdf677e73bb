"""Ingestion actors: one long-lived, named actor per source, restarted by Ray on failure.

Each hosts one :class:`ingestion.source.Source` and adds what the source must not know
about: publishing (acks=all, keyed by asset), the cursor in PostgreSQL, pacing, and
error handling. The order of one step is what makes restarts exact:

1. poll the source from the cursor;
2. drop what a previous incarnation already published (see ``published_watermarks``);
3. publish and flush (every message acknowledged by the broker);
4. checkpoint ``{cursor, end offsets of the topics written}`` in PostgreSQL.

A kill between 3 and 4 leaves messages on the topic past the checkpoint. The restarted
actor reads exactly that stretch (from the checkpointed offsets to the end), notes per
key the newest event time it published there, and the regenerated window skips those:
no window is sent twice, none is skipped.

A provider that fails (5xx, timeout, HTML, a changed schema, an expired key, 429) never
kills the actor: the error is counted by kind, an unusable payload goes to
``dead-letter`` with its reason, and the actor backs off (honouring Retry-After and our
own budget's reset) before trying again.
"""

from __future__ import annotations

import importlib
import json
import logging
import random
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

from actors.base import Heartbeat, SupervisedLoop, Wait
from core import broker, cache, db
from core.catalog import load_catalog
from core.envelope import Envelope
from core.errors import (
    BudgetExhausted,
    ConfigError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
)
from core.settings import PROVIDERS, Settings
from ingestion.producer import EnvelopePublisher, message_key
from ingestion.source import Batch, Source

log = logging.getLogger(__name__)

#: Keyed providers: settings name → (module, class).
PROVIDER_CLASSES: dict[str, tuple[str, str]] = {
    "coinapi": ("ingestion.coinapi", "CoinApiSource"),
    "amberdata": ("ingestion.amberdata", "AmberdataSource"),
    "bitquery": ("ingestion.bitquery", "BitquerySource"),
    "rwaio": ("ingestion.rwaio", "RwaIoSource"),
    "tradingeconomics": ("ingestion.tradingeconomics", "TradingEconomicsSource"),
    "newsapiai": ("ingestion.newsapiai", "NewsApiAiSource"),
}
#: Longest wait after repeated failures; an expired key is retried this rarely.
MAX_BACKOFF_S = 300.0
RATE_WINDOW_S = 60.0


def enabled_sources(settings: Settings) -> list[str]:
    """The sources ``rwa up`` runs, by name: the keyless ones switched on, the replay
    when a file is set, and every keyed provider switched on."""
    src = settings.sources
    names = []
    if src.onchain_sim.enabled:
        names.append("simulated-onchain")
    if src.news_sim.enabled:
        names.append("simulated-news")
    if src.macro_replay.enabled:
        names.append("us-macro")
    if src.replay.path is not None:
        names.append("replay")
    names += [name for name in PROVIDERS if src.providers[name].enabled]
    return names


def build_source(name: str, settings: Settings) -> Source:
    """The source called ``name``, configured from settings.

    Raises:
        ConfigError: For an unknown name or a provider enabled without its key.
    """
    from ingestion import keyless

    src, sim = settings.sources, settings.simulator
    assets = load_catalog()
    if name == "simulated-onchain":
        return keyless.SimulatedOnchainSource(
            assets, seed=sim.seed, interval_s=src.onchain_sim.interval_s,
            history_hours=sim.history_hours)
    if name == "simulated-news":
        return keyless.SimulatedNewsSource(
            assets, seed=sim.seed, interval_s=src.news_sim.interval_s,
            history_hours=sim.history_hours)
    if name == "us-macro":
        return keyless.MacroReplaySource(interval_s=src.macro_replay.interval_s)
    if name == "replay":
        from ingestion.replay import ReplayQuery

        r = src.replay
        if r.path is None:
            raise ConfigError("the replay source needs RWA_SOURCES__REPLAY__PATH")
        return keyless.FileReplaySource(ReplayQuery(path=r.path, kind=r.kind, speed=r.speed,
                                                    asset_id=r.asset_id))
    if name in PROVIDER_CLASSES:
        config = src.providers[name]
        if config.api_key is None:
            raise ConfigError(f"source {name} needs RWA_SOURCES__{name.upper()}__API_KEY")
        module, cls = PROVIDER_CLASSES[name]
        return getattr(importlib.import_module(module), cls)(config, assets=assets)
    raise ConfigError(f"unknown source {name!r}")


def actor_name(source_name: str) -> str:
    return f"ingest-{source_name}"


def published_watermarks(bootstrap: str, offsets: dict[str, dict[str, int]], *,
                         source: str) -> dict[str, datetime]:
    """Per message key, the newest event time ``source`` published after ``offsets``.

    Args:
        offsets: Per topic, per partition (as text, JSON keys), the end offset recorded
            at the last checkpoint.
    """
    from kafka import KafkaConsumer, TopicPartition

    marks: dict[str, datetime] = {}
    if not offsets:
        return marks
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             client_id=f"{source}-resume", max_poll_records=5000)
    try:
        starts = {TopicPartition(t, int(p)): off for t, parts in offsets.items()
                  for p, off in parts.items()}
        ends = consumer.end_offsets(list(starts))
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        # Tansu reports the end of a partition as the first offset of its last batch, so
        # after reaching the reported ends one more poll picks up that batch's tail.
        todo = {tp for tp in starts if ends.get(tp, 0) > starts[tp]}
        deadline = time.monotonic() + 60
        tail_polls = 1
        while time.monotonic() < deadline and (todo or tail_polls):
            if not todo:
                tail_polls -= 1
            for records in consumer.poll(timeout_ms=300).values():
                for rec in records:
                    _note(marks, rec.key, rec.value, source)
            todo = {tp for tp in todo if consumer.position(tp) < ends[tp]}
        if todo:
            log.warning("%s: resume scan stopped at its deadline, %d partitions unread",
                        source, len(todo))
    finally:
        consumer.close()
    return marks


def _note(marks: dict[str, datetime], key: bytes | None, value: bytes | None,
          source: str) -> None:
    try:
        data = json.loads(value or b"")
        if data.get("source") != source or key is None:
            return
        t = datetime.fromisoformat(data["event_time"]).astimezone(UTC)
    except (ValueError, KeyError, TypeError, AttributeError):
        return  # not one of ours, or not an envelope at all
    k = key.decode(errors="replace")
    if k not in marks or t > marks[k]:
        marks[k] = t


class SourceActor:
    """Runs one source for ever; see the module docstring for the step's order."""

    def __init__(self, settings: Settings, source_name: str) -> None:
        self.name = actor_name(source_name)
        self.settings = settings
        self.source = build_source(source_name, settings)
        self.bootstrap = settings.kafka_bootstrap_servers
        self.db = db.SyncDb(settings.database_url.get_secret_value())
        self.redis = cache.sync_client(settings.redis_url.get_secret_value())
        self.publisher = EnvelopePublisher(self.bootstrap, client_id=self.name)
        self.restarts = self._count_restart()

        saved = self.db.run(lambda c: db.load_cursor(c, self.source.name)) or {}
        self.cursor: dict[str, Any] | None = saved.get("cursor")
        self.topics: set[str] = set(saved.get("offsets", {}))
        self.watermarks = published_watermarks(self.bootstrap, saved.get("offsets", {}),
                                               source=self.source.name)
        if self.watermarks:
            log.info("%s: resuming past %d keys already published after the checkpoint",
                     self.name, len(self.watermarks))

        self.sent = 0
        self.skipped_replayed = 0
        self.rejected = 0
        self.state = "starting"
        self.last_event_time: datetime | None = None
        self._rate: deque[tuple[float, int]] = deque()
        self._failures = 0
        self.provider_errors: Counter[str] = Counter()
        self.loop = SupervisedLoop(
            self.name, self._step, figures=self.stats,
            heartbeat=Heartbeat(settings.redis_url.get_secret_value(), self.name))

    def __repr__(self) -> str:
        # Ray shows this as the actor's repr name in the dashboard and in log prefixes.
        return f"SourceActor({self.source.name})"

    def _count_restart(self) -> int:
        """Restarts since ``rwa up`` cleared the counter; Ray re-runs this constructor."""
        import ray

        key = cache.restarts_key(self.name)
        try:
            if ray.get_runtime_context().was_current_actor_reconstructed:
                return int(self.redis.incr(key))
            return int(self.redis.get(key) or 0)
        except Exception as e:  # figures only; never a reason not to start
            log.warning("%s: restart counter unavailable: %s", self.name, e)
            return 0

    # -- one step ------------------------------------------------------------------------
    def _step(self) -> Wait:
        try:
            batch = self.source.poll(self.cursor, datetime.now(UTC))
        except ProviderError as e:
            return self._failed(e)
        self._failures = 0
        self._publish(batch)
        self.state = "catching_up" if batch.more else "caught_up"
        return Wait(0.0 if batch.more else self.source.interval_s)

    def _publish(self, batch: Batch) -> None:
        fresh = [env for env in batch.envelopes if not self._already_published(env)]
        for env in fresh:
            self.publisher.publish(env)
            self.topics.add(broker.TOPIC_FOR_KIND[env.kind])
        for reject in batch.rejects:
            self.publisher.reject(reject.raw, reject.reason, source=self.source.name)
        self.publisher.flush()
        offsets = self._end_offsets()
        cursor = {"cursor": batch.cursor, "offsets": offsets}
        self.db.run(lambda c: db.save_cursor(c, self.source.name, cursor))
        self.cursor = batch.cursor
        self.sent += len(fresh)
        self.rejected += len(batch.rejects)
        self.skipped_replayed += len(batch.envelopes) - len(fresh)
        if fresh:
            newest = max(env.event_time for env in fresh)
            if self.last_event_time is None or newest > self.last_event_time:
                self.last_event_time = newest
        now = time.monotonic()
        self._rate.append((now, len(fresh)))
        while self._rate and now - self._rate[0][0] > RATE_WINDOW_S:
            self._rate.popleft()

    def _already_published(self, env: Envelope) -> bool:
        if not self.watermarks:
            return False
        mark = self.watermarks.get(message_key(env).decode())
        return mark is not None and env.event_time <= mark

    def _end_offsets(self) -> dict[str, dict[str, int]]:
        if not self.topics:
            return {}
        from kafka import KafkaConsumer, TopicPartition

        consumer = getattr(self, "_offsets_consumer", None)
        if consumer is None:
            consumer = self._offsets_consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, client_id=f"{self.name}-offsets")
        parts = [TopicPartition(t, p) for t in sorted(self.topics)
                 for p in sorted(consumer.partitions_for_topic(t) or ())]
        result: dict[str, dict[str, int]] = {}
        for tp, end in consumer.end_offsets(parts).items():
            result.setdefault(tp.topic, {})[str(tp.partition)] = end
        return result

    def _failed(self, e: ProviderError) -> Wait:
        self._failures += 1
        self.provider_errors[e.kind] += 1
        if isinstance(e, ProviderBadResponse) and e.raw is not None:
            self.publisher.reject(e.raw, e.reason, source=self.source.name)
            self.publisher.flush()
        if isinstance(e, ProviderRateLimited) and e.retry_after_s:
            wait = e.retry_after_s
        elif isinstance(e, BudgetExhausted):
            wait = e.reset_in_s
        else:
            wait = random.uniform(0, min(MAX_BACKOFF_S, 2.0 ** self._failures))
        if isinstance(e, ProviderAuthError):
            wait = MAX_BACKOFF_S
        self.state = f"backing_off:{e.kind}"
        log.warning("%s: %s; next try in %.0f s", self.name, e, wait)
        return Wait(min(wait, MAX_BACKOFF_S * 12))

    # -- figures -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        recent = [(t, n) for t, n in self._rate if now - t <= RATE_WINDOW_S]
        span = max(1.0, now - recent[0][0]) if recent else RATE_WINDOW_S
        lag = (datetime.now(UTC) - self.last_event_time).total_seconds() \
            if self.last_event_time else None
        return {
            "source": self.source.name,
            "state": self.state,
            "restarts": self.restarts,
            "sent": self.sent,
            "dead_lettered": self.publisher.rejected,
            "errors_by_kind": self._errors_by_kind(),
            "skipped_replayed": self.skipped_replayed,
            "messages_per_s": round(sum(n for _, n in recent) / span, 2),
            "last_event_time": self.last_event_time.isoformat() if self.last_event_time else None,
            "lag_s": round(lag, 1) if lag is not None else None,
        }

    def _errors_by_kind(self) -> dict[str, int]:
        loop = getattr(self, "loop", None)
        crashes = dict(loop.errors) if loop is not None else {}
        return {**crashes, **self.provider_errors}

    def stop(self) -> None:
        self.loop.stop()
        self.source.close()
        self.publisher.close()
        consumer = getattr(self, "_offsets_consumer", None)
        if consumer is not None:
            consumer.close()
        self.db.close()
