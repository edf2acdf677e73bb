"""The alert monitor: a long-lived actor that judges the active alerts of each tick's
asset as the tick arrives on ``rwa:ticks``, with a sweep every
``RWA_ALERTS__SWEEP_INTERVAL_S`` (30 s) over every active alert as a backstop.

* Alerts are cached per asset and reloaded for the assets named on
  ``rwa:alerts:changed`` (the API publishes there on every change), and all of them on
  each sweep, so a lost change message costs at most one sweep interval.
* The sweep judges every active alert against the latest price in Redis (ticks missed
  while Redis or the monitor were down) and sends the deliveries that are due (retries,
  and triggers whose sender died).
* Conditions, their evaluation and the re-arm rule are ``core.alerts``; firing is a
  conditional UPDATE in ``core.alert_store`` (a crossing fires once even if a tick and
  the sweep see it together); delivery is ``core.notify.dispatch``.

``AlertMonitor`` is plain asyncio, tested without Ray; ``AlertMonitorActor`` hosts it in
a supervised thread with a heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from actors.base import Heartbeat, SupervisedLoop
from core import alert_store, cache
from core.alerts import (
    MAX_WINDOW_MINUTES,
    Condition,
    ForecastBand,
    ForecastBounds,
    Market,
    PctMove,
    PriceHistory,
    RiskChange,
    decide,
    describe,
    evaluate,
    parse_condition,
)
from core.errors import InvalidCondition
from core.notify.dispatch import Dispatcher
from core.settings import AlertSettings, Settings

log = logging.getLogger(__name__)

#: Price history kept for every asset (longer for assets with longer pct_move windows).
BASE_HISTORY_S = 15 * 60.0
#: One price sample per this many seconds at most.
HISTORY_RESOLUTION_S = 2.0


@dataclass
class CachedAlert:
    alert_id: int
    user_id: int
    asset_id: str
    symbol: str
    condition_type: str
    condition: Condition
    method: str
    target: str | None
    email: str
    armed: bool
    risk_baseline: float | None
    last_triggered_at: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CachedAlert:
        last = row["last_triggered_at"]
        return cls(
            alert_id=row["alert_id"], user_id=row["user_id"], asset_id=row["asset_id"],
            symbol=row["symbol"], condition_type=row["condition_type"],
            condition=parse_condition(row["condition_type"], row["condition_value"]),
            method=row["notification_method"], target=row["notification_target"],
            email=row["email"], armed=row["armed"], risk_baseline=row["risk_baseline"],
            last_triggered_at=last.timestamp() if last else None)


@dataclass
class MonitorStats:
    ticks: int = 0
    bad_ticks: int = 0
    evaluations: int = 0
    fired: int = 0
    rearmed: int = 0
    sweeps: int = 0
    reloads: int = 0
    last_sweep_at: float | None = None
    errors: dict[str, int] = field(default_factory=dict)


class AlertMonitor:
    """Judges alerts on ticks and sweeps; see the module docstring.

    Args:
        database_url, redis_url: Where alerts and ticks are.
        settings: Sweep interval, cooldown and the context cache's life.
        dispatcher: Sends the deliveries of triggers.
        clock: Wall-clock seconds (the cooldown and ticks without a time use it).
    """

    def __init__(self, *, database_url: str, redis_url: str, settings: AlertSettings,
                 dispatcher: Dispatcher, clock: Callable[[], float] = time.time) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.settings = settings
        self.dispatcher = dispatcher
        self.clock = clock
        self.pool: asyncpg.Pool | None = None
        self.redis: aioredis.Redis | None = None
        self.alerts: dict[str, dict[int, CachedAlert]] = {}
        self.history: dict[str, PriceHistory] = {}
        self.stats = MonitorStats()
        self._context: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._deliveries: dict[int, asyncio.Task[Any]] = {}
        self._next_sweep = 0.0
        #: Set once subscribed to both channels (tests wait on it before publishing).
        self.subscribed = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=4,
                                                  command_timeout=30)
        if self.redis is None:
            self.redis = cache.async_client(self.redis_url)

    async def close(self) -> None:
        await self.drain(timeout_s=5.0)
        for task in list(self._deliveries.values()):
            task.cancel()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
            self.redis = None
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for the deliveries under way (tests; a clean stop)."""
        tasks = list(self._deliveries.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Subscribe and judge until ``should_stop()``; Redis outages are waited out."""
        await self.open()
        await self.reload()
        backoff = 0.5
        while not should_stop():
            # A subscriber without a read timeout: idle channels are normal here.
            client = aioredis.Redis.from_url(self.redis_url, decode_responses=True,
                                             health_check_interval=15)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(cache.TICKS_CHANNEL, cache.ALERTS_CHANGED_CHANNEL)
                self.subscribed.set()
                backoff = 0.5
                await self._listen(pubsub, should_stop)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:  # Redis went away: the sweep covers the gap
                self._count(e)
                log.warning("alert feed lost (%s); retrying in %.1f s", e, backoff)
                self.subscribed.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
        self.subscribed.clear()

    async def _listen(self, pubsub: Any, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
            if message is not None and message.get("type") == "message":
                if message["channel"] == cache.TICKS_CHANNEL:
                    await self.on_tick(message["data"])
                else:
                    await self.on_change(message["data"])
            if time.monotonic() >= self._next_sweep:
                await self.sweep()

    def _count(self, e: BaseException) -> None:
        kind = type(e).__name__
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    # -- alert cache ----------------------------------------------------------------------
    async def reload(self, asset_ids: list[str] | None = None) -> None:
        """Reload the active alerts of ``asset_ids`` (all when None) from the database."""
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            rows = await alert_store.active_alerts(conn, asset_ids)
        fresh: dict[str, dict[int, CachedAlert]] = {}
        for row in rows:
            try:
                alert = CachedAlert.from_row(row)
            except InvalidCondition as e:  # written around the API: skip it, loudly
                log.error("alert %s has an invalid condition, skipped: %s", row["alert_id"], e)
                continue
            fresh.setdefault(alert.asset_id, {})[alert.alert_id] = alert
        if asset_ids is None:
            self.alerts = fresh
        else:
            for asset_id in asset_ids:
                if asset_id in fresh:
                    self.alerts[asset_id] = fresh[asset_id]
                else:
                    self.alerts.pop(asset_id, None)
        self.stats.reloads += 1
        for asset_id in fresh:
            await self._ensure_history(asset_id)

    async def on_change(self, raw: str) -> None:
        try:
            data = json.loads(raw)
            asset_ids = [str(a) for a in data["asset_ids"]]
        except (ValueError, KeyError, TypeError):
            asset_ids = None
        try:
            await self.reload(asset_ids)
        except (asyncpg.PostgresError, OSError) as e:  # the sweep reloads everything
            self._count(e)
            log.warning("alerts not reloaded after a change: %s", e)

    async def _ensure_history(self, asset_id: str) -> None:
        """Keep as much history as the asset's longest pct_move window, filled from gold
        1-minute bars when the monitor has not seen that much yet (after a restart)."""
        windows = [a.condition.window_minutes for a in self.alerts.get(asset_id, {}).values()
                   if isinstance(a.condition, PctMove)]
        history = self._history(asset_id)
        if not windows:
            return
        need_s = min(max(windows), MAX_WINDOW_MINUTES) * 60.0
        history.max_age_s = max(BASE_HISTORY_S, need_s + 120.0)
        now = self.clock()
        if history.oldest is not None and history.oldest <= now - need_s:
            return
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT time, close FROM price_bars_1m
                   WHERE asset_id = $1 AND time >= to_timestamp($2) ORDER BY time""",
                asset_id, now - need_s - 120.0)
        # A bar's close is the price at the end of its minute.
        added = history.backfill((r["time"].timestamp() + 60.0, r["close"]) for r in rows)
        if added:
            log.info("price history of %s filled with %d gold bars", asset_id, added)

    def _history(self, asset_id: str) -> PriceHistory:
        history = self.history.get(asset_id)
        if history is None:
            history = self.history[asset_id] = PriceHistory(
                max_age_s=BASE_HISTORY_S, resolution_s=HISTORY_RESOLUTION_S)
        return history

    # -- evaluation ---------------------------------------------------------------------
    async def on_tick(self, raw: str) -> None:
        """One tick from ``rwa:ticks``: record its price and judge its asset's alerts."""
        try:
            tick = json.loads(raw)
            asset_id = tick["asset_id"]
            price = float(tick["price"])
            if not (price > 0 and price != float("inf")):
                raise ValueError(price)
        except (ValueError, KeyError, TypeError):
            self.stats.bad_ticks += 1
            return
        self.stats.ticks += 1
        at = _epoch(tick.get("time")) or self.clock()
        self._history(asset_id).add(at, price)
        if self.alerts.get(asset_id):
            await self.judge(asset_id, price, at)

    async def judge(self, asset_id: str, price: float, at: float) -> None:
        """Judge every cached alert of ``asset_id`` at ``price`` (observed at ``at``)."""
        alerts = list(self.alerts.get(asset_id, {}).values())
        try:
            market = Market(
                price=price, at=at, history=self.history.get(asset_id),
                risk_score=await self._risk(asset_id) if any(
                    isinstance(a.condition, RiskChange) for a in alerts) else None,
                forecasts=await self._forecasts(asset_id, {
                    a.condition.horizon for a in alerts
                    if isinstance(a.condition, ForecastBand)}))
        except (asyncpg.PostgresError, OSError) as e:  # the next tick or sweep tries again
            self._count(e)
            log.warning("alerts of %s not judged: %s", asset_id, e)
            return
        for alert in alerts:
            try:
                await self._judge_one(alert, market)
            except (asyncpg.PostgresError, OSError) as e:  # the sweep tries again
                self._count(e)
                log.warning("alert %s not judged: %s", alert.alert_id, e)

    async def _judge_one(self, alert: CachedAlert, market: Market) -> None:
        assert self.pool is not None
        if (isinstance(alert.condition, RiskChange) and alert.risk_baseline is None
                and market.risk_score is not None):
            async with self.pool.acquire() as conn:
                await alert_store.set_risk_baseline(conn, alert.alert_id, market.risk_score)
            alert.risk_baseline = market.risk_score
        result = evaluate(alert.condition, market, risk_baseline=alert.risk_baseline)
        self.stats.evaluations += 1
        now = self.clock()
        decision = decide(result, armed=alert.armed, last_triggered_at=alert.last_triggered_at,
                          now=now, cooldown_s=self.settings.cooldown_s)
        if decision == "fire":
            await self._fire(alert, result.value, market)
        elif decision == "rearm":
            async with self.pool.acquire() as conn:
                rearmed = await alert_store.rearm(conn, alert.alert_id)
            alert.armed = True
            if rearmed:
                self.stats.rearmed += 1

    async def _fire(self, alert: CachedAlert, value: dict[str, Any], market: Market) -> None:
        assert self.pool is not None
        trigger = {"condition_type": alert.condition_type, "asset_id": alert.asset_id,
                   "symbol": alert.symbol, **value}
        message = describe(symbol=alert.symbol, condition_type=alert.condition_type,
                           condition=alert.condition, value=value)
        rebase = market.risk_score if isinstance(alert.condition, RiskChange) else None
        async with self.pool.acquire() as conn:
            row = await alert_store.fire(
                conn, alert.alert_id, trigger_value=trigger, message=message,
                fallback_target=alert.email if alert.method == "email" else None,
                new_risk_baseline=rebase)
        alert.armed = False
        if row is None:  # paused, edited, deleted or fired elsewhere meanwhile
            await self.reload([alert.asset_id])
            return
        alert.last_triggered_at = row["triggered_at"].timestamp()
        if rebase is not None:
            alert.risk_baseline = rebase
        self.stats.fired += 1
        log.info("alert %s fired: %s", alert.alert_id, message)
        self._spawn_delivery(row["history_id"])

    # -- context: risk scores and forecasts -------------------------------------------
    async def _memo(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        now = time.monotonic()
        hit = self._context.get(key)
        if hit and hit[0] > now:
            return hit[1]
        value = await load()
        self._context[key] = (now + self.settings.context_ttl_s, value)
        return value

    async def _cached_json(self, key: str) -> dict[str, Any] | None:
        assert self.redis is not None
        try:
            raw = await self.redis.get(key)
        except (RedisError, OSError) as e:  # Redis down: read the database instead
            self._count(e)
            return None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def _risk(self, asset_id: str) -> float | None:
        async def load() -> float | None:
            hit = await self._cached_json(cache.risk_key(asset_id))
            if hit and isinstance(hit.get("composite_score"), (int, float)):
                return float(hit["composite_score"])
            assert self.pool is not None
            async with self.pool.acquire() as conn:
                return await alert_store.latest_risk_score(conn, asset_id)

        return await self._memo(("risk", asset_id), load)

    async def _forecasts(self, asset_id: str, horizons: set[int]) -> dict[int, ForecastBounds]:
        out: dict[int, ForecastBounds] = {}
        for horizon in horizons:
            async def load(h: int = horizon) -> ForecastBounds | None:
                hit = await self._cached_json(cache.prediction_key(asset_id, h))
                if hit is None:
                    assert self.pool is not None
                    async with self.pool.acquire() as conn:
                        hit = await alert_store.latest_forecast(conn, asset_id, h)
                return _bounds(hit) if hit else None

            bounds = await self._memo(("forecast", asset_id, horizon), load)
            if bounds is not None:
                out[horizon] = bounds
        return out

    # -- sweep and deliveries ----------------------------------------------------------
    async def sweep(self) -> None:
        """Reload every alert, judge them at the latest prices, send due deliveries."""
        self._next_sweep = time.monotonic() + self.settings.sweep_interval_s
        try:
            await self.reload()
            assets = sorted(self.alerts)
            if assets:
                assert self.redis is not None
                raws = await self.redis.mget([cache.latest_price_key(a) for a in assets])
                for asset_id, raw in zip(assets, raws):
                    latest = _latest(raw)
                    if latest is None:
                        continue
                    price, at = latest
                    at = at or self.clock()
                    self._history(asset_id).add(at, price)
                    await self.judge(asset_id, price, at)
            assert self.pool is not None
            async with self.pool.acquire() as conn:
                due = await alert_store.due_deliveries(conn)
            for history_id in due:
                self._spawn_delivery(history_id)
        except Exception as e:  # one failed sweep must not stop the monitor
            self._count(e)
            log.exception("alert sweep failed")
        self.stats.sweeps += 1
        self.stats.last_sweep_at = time.time()

    def _spawn_delivery(self, history_id: int) -> None:
        if history_id in self._deliveries:
            return
        assert self.pool is not None
        task = asyncio.create_task(self._deliver(history_id), name=f"deliver-{history_id}")
        self._deliveries[history_id] = task

    async def _deliver(self, history_id: int) -> None:
        try:
            assert self.pool is not None
            await self.dispatcher.deliver(self.pool, history_id)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the sweep retries what is still due
            self._count(e)
            log.exception("delivery %s failed", history_id)
        finally:
            self._deliveries.pop(history_id, None)

    def figures(self) -> dict[str, Any]:
        s = self.stats
        # Read from the heartbeat thread: copy before counting.
        return {"alerts": sum(len(v) for v in list(self.alerts.values())), "ticks": s.ticks,
                "bad_ticks": s.bad_ticks, "evaluations": s.evaluations, "fired": s.fired,
                "rearmed": s.rearmed, "sweeps": s.sweeps, "last_sweep_at": s.last_sweep_at,
                "deliveries_in_flight": len(self._deliveries),
                "sent": self.dispatcher.sent, "delivery_failed": self.dispatcher.failed,
                "delivery_retried": self.dispatcher.retried, "monitor_errors": dict(s.errors)}


def _epoch(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _latest(raw: str | None) -> tuple[float, float | None] | None:
    """``(price, time)`` of a latest-price cache entry (the live tick message)."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        price = float(data["price"])
    except (ValueError, KeyError, TypeError):
        return None
    return (price, _epoch(data.get("time"))) if price > 0 else None


def _bounds(row: dict[str, Any]) -> ForecastBounds | None:
    try:
        generated = row.get("generated_at")
        return ForecastBounds(
            lower_80=float(row["confidence_lower"]), upper_80=float(row["confidence_upper"]),
            lower_95=float(row["lower_95"]) if row.get("lower_95") is not None else None,
            upper_95=float(row["upper_95"]) if row.get("upper_95") is not None else None,
            generated_at=generated.isoformat() if isinstance(generated, datetime)
            else generated)
    except (KeyError, TypeError, ValueError):
        return None


class AlertMonitorActor:
    """Hosts an :class:`AlertMonitor` on its own event loop in a supervised thread.

    Started by the stack like the other actors (``ray.remote(AlertMonitorActor)`` with
    ``num_cpus=0.25``); Ray restarting it runs this constructor again, and the monitor
    resumes: alerts and pending deliveries live in the database.
    """

    NAME = "alert-monitor"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stopping = False
        self.monitor: AlertMonitor | None = None
        redis_url = settings.redis_url.get_secret_value()
        self.loop = SupervisedLoop(
            self.NAME, self._run, heartbeat=Heartbeat(redis_url, self.NAME),
            figures=self.stats, idle_s=0.0)

    def _run(self) -> None:
        if self._stopping:
            return
        asyncio.run(self._session())

    async def _session(self) -> None:
        s = self.settings
        dispatcher = Dispatcher(alerts=s.alerts, smtp=s.smtp, telegram=s.telegram, push=s.push)
        self.monitor = AlertMonitor(
            database_url=s.database_url.get_secret_value(),
            redis_url=s.redis_url.get_secret_value(), settings=s.alerts, dispatcher=dispatcher)
        try:
            await self.monitor.run(should_stop=lambda: self._stopping)
        finally:
            await self.monitor.close()
            await dispatcher.close()

    def stats(self) -> dict[str, Any]:
        return self.monitor.figures() if self.monitor is not None else {}

    def stop(self) -> None:
        self._stopping = True
        self.loop.stop(timeout_s=15)
