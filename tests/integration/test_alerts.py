"""Alerts end to end on the real services: embedded PostgreSQL (migrations through 0010)
and Redis, the router through ASGI, the monitor's loop in-process (and once as a Ray
actor), and the channels against local servers in their real formats: aiosmtpd for
email, a Bot API server for Telegram (429 with retry_after and 500 included), and a
webhook receiver that checks the HMAC signature."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Header, HTTPException
from pydantic import SecretStr

from actors.alerts import AlertMonitor
from core import cache
from core.notify.dispatch import Dispatcher
from core.settings import AlertSettings, PushSettings, SmtpSettings, TelegramSettings
from rwa.embedded import free_port
from serve.alerts.routes import alerts_router
from serve.api import Services
from serve.args import AppArgs
from tests.databases import catalog_database
from tests.fakes import telegram as tg
from tests.fakes.server import FakeProvider, Request, Response

pytestmark = pytest.mark.integration

T = TypeVar("T")
SECRET = "whsec-integration-0123456789"
CAPS = {"free": 3, "pro": 10}


# -- services -------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def db_uri(pg_uri: str) -> AsyncIterator[str]:
    async with catalog_database(pg_uri, "alerts") as uri:
        yield uri


@pytest.fixture
async def conn(db_uri: str, redis_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a clean slate: no users, alerts or history; an empty Redis."""
    c = await asyncpg.connect(db_uri)
    await c.execute("TRUNCATE users, alerts, alert_history, price_bars_1m CASCADE")
    r = cache.async_client(redis_url)
    await r.flushdb()
    await r.aclose()
    yield c
    await c.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    r = cache.async_client(redis_url)
    yield r
    await r.aclose()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[SmtpSettings, Mailbox]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpSettings(host="127.0.0.1", port=port, starttls=False,
                       from_address="RWA Prime <alerts@rwaprime.test>", timeout_s=5), box
    controller.stop()


@pytest.fixture
def telegram() -> Iterator[FakeProvider]:
    fake = tg.TelegramFake()
    with FakeProvider(fake) as server:
        server.fake = fake  # type: ignore[attr-defined]
        yield server


class Webhook:
    """A receiver that accepts only requests signed with :data:`SECRET`."""

    def __init__(self) -> None:
        self.accepted: list[Request] = []
        self.refused = 0

    def __call__(self, r: Request) -> Response:
        ts = r.headers.get("x-rwa-timestamp", "")
        mac = hmac.new(SECRET.encode(), ts.encode() + b"." + r.body, hashlib.sha256)
        if r.headers.get("x-rwa-signature") != f"sha256={mac.hexdigest()}":
            self.refused += 1
            return Response(401, b"bad signature")
        self.accepted.append(r)
        return Response(200, b"ok")


@pytest.fixture
def webhook() -> Iterator[FakeProvider]:
    receiver = Webhook()
    with FakeProvider(receiver) as server:
        server.receiver = receiver  # type: ignore[attr-defined]
        yield server


def alert_settings(**overrides: Any) -> AlertSettings:
    # No cooldown and short backoffs so the rule and the retries show within a test;
    # sweeps only when a test calls one (the first runs as the monitor starts).
    return AlertSettings(**({"sweep_interval_s": 3600, "cooldown_s": 0, "retry_base_s": 0.05,
                             "retry_max_s": 2, "inline_attempts": 4, "max_attempts": 6,
                             "context_ttl_s": 0, "lease_s": 30} | overrides))


@pytest.fixture
async def dispatcher(smtp: tuple[SmtpSettings, Mailbox], telegram: FakeProvider
                     ) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(alerts=alert_settings(), smtp=smtp[0],
                   telegram=TelegramSettings(bot_token=SecretStr(tg.TOKEN),
                                             base_url=telegram.url, timeout_s=5),
                   push=PushSettings(signing_secret=SecretStr(SECRET), timeout_s=5,
                                     allow_private_targets=True))
    yield d
    await d.close()


@pytest.fixture
async def monitor(db_uri: str, redis_url: str, conn: asyncpg.Connection,
                  dispatcher: Dispatcher) -> AsyncIterator[AlertMonitor]:
    """The monitor's loop, running in-process on the test's event loop."""
    m = AlertMonitor(database_url=db_uri, redis_url=redis_url, settings=alert_settings(),
                     dispatcher=dispatcher)
    stop = False
    task = asyncio.create_task(m.run(should_stop=lambda: stop))
    await asyncio.wait_for(m.subscribed.wait(), 15)
    await until(lambda: m.stats.sweeps >= 1, what="the first sweep")
    yield m
    stop = True
    await asyncio.wait_for(task, 15)
    await m.close()


@dataclass
class Caller:
    user_id: int
    tier: str


@pytest.fixture
async def api(db_uri: str, redis_url: str, conn: asyncpg.Connection
              ) -> AsyncIterator[Callable[[int], httpx.AsyncClient]]:
    """The router in a bare app; ``api(user_id)`` is a client acting as that user (a
    stand-in for serve.auth's current_user that reads the user's tier from the table)."""
    services = Services(AppArgs(database_url=db_uri, redis_url=redis_url, sentiment=None))

    async def current_user(x_test_user: int = Header()) -> Caller:
        pool = await services.ensure_pool()
        tier = await pool.fetchval("SELECT tier FROM users WHERE user_id = $1", x_test_user)
        if tier is None:
            raise HTTPException(401, "not authenticated")
        return Caller(x_test_user, tier)

    app = FastAPI()
    app.include_router(alerts_router(services, current_user, max_alerts=CAPS))
    clients: list[httpx.AsyncClient] = []

    def client(user_id: int) -> httpx.AsyncClient:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                              headers={"X-Test-User": str(user_id)})
        clients.append(c)
        return c

    yield client
    for c in clients:
        await c.aclose()
    if services.pool:
        await services.pool.close()
    await services.redis.aclose()


async def make_user(conn: asyncpg.Connection, email: str, tier: str = "free") -> int:
    return await conn.fetchval(
        "INSERT INTO users (email, password_hash, tier) VALUES ($1, 'x', $2) RETURNING user_id",
        email, tier)


async def until(check: Callable[[], T | Awaitable[T]], *, what: str,
                timeout_s: float = 15.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def tick(redis: Any, monitor: AlertMonitor, asset_id: str, price: float,
               at: datetime | None = None) -> None:
    """Publish one live tick as the fan-out does and wait until the monitor judged it."""
    seen = monitor.stats.ticks
    body = {"asset_id": asset_id, "symbol": asset_id.upper(),
            "time": (at or datetime.now(UTC)).isoformat(), "price": price, "volume": 1.0,
            "nav": None, "source": "test", "published_at": time.time()}
    await redis.publish(cache.TICKS_CHANNEL, json.dumps(body))
    await until(lambda: monitor.stats.ticks > seen, what=f"tick {asset_id} {price}")


async def history(conn: asyncpg.Connection, alert_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT history_id, trigger_value, idempotency_key, channel, target,
                  delivery_status, attempts, error, sent_at, attempt_log
           FROM alert_history WHERE alert_id = $1 ORDER BY history_id""", alert_id)
    out = []
    for r in rows:
        d = dict(r)
        d["trigger_value"] = json.loads(d["trigger_value"])
        d["attempt_log"] = json.loads(d["attempt_log"])
        out.append(d)
    return out


async def settled(conn: asyncpg.Connection, alert_id: int, n: int) -> list[dict[str, Any]]:
    """Wait until the alert has ``n`` triggers, none of them still being delivered."""
    async def done() -> list[dict[str, Any]] | None:
        rows = await history(conn, alert_id)
        finished = [r for r in rows if r["delivery_status"] in ("sent", "failed")]
        return rows if len(rows) == n and len(finished) == n else None

    return await until(done, what=f"{n} settled triggers of alert {alert_id}")


async def next_message(pubsub: Any, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """The next published message (subscribe confirmations skipped), or None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if msg is not None:
            return msg
    return None


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/alerts", json=body)
    assert r.status_code == 201, r.text
    return r.json()


# -- the monitor ------------------------------------------------------------------------


async def test_price_alert_fires_on_crossing_once_and_telegram_retries_without_duplicates(
        conn: asyncpg.Connection, redis: Any, api: Any, monitor: AlertMonitor,
        telegram: FakeProvider) -> None:
    user = await make_user(conn, "ann@example.com")
    alert = await create(api(user), asset_id="PAXG", condition_type="price_above",
                         condition_value={"price": 4200}, notification_method="telegram",
                         notification_target="424242")
    # Telegram says "slow down" once, then fails once, then takes the message.
    telegram.fail_next(429, tg.too_many_requests(1))
    telegram.fail_next(500, tg.server_error())

    await tick(redis, monitor, "paxg", 4150)
    assert await history(conn, alert["alert_id"]) == []
    started = time.monotonic()
    await tick(redis, monitor, "paxg", 4210)  # crosses: fires
    for price in (4220, 4230, 4250):  # still above: no new trigger
        await tick(redis, monitor, "paxg", price)
    [row] = await settled(conn, alert["alert_id"], 1)
    assert time.monotonic() - started >= 1.0  # the 429's retry_after was honoured

    assert row["delivery_status"] == "sent" and row["sent_at"] is not None
    assert row["channel"] == "telegram" and row["target"] == "424242"
    assert row["attempts"] == 3 and row["idempotency_key"] == f"alert:{alert['alert_id']}:1"
    assert [a["status"] for a in row["attempt_log"]] == ["retrying", "retrying", "sent"]
    assert row["attempt_log"][0]["retry_after_s"] == 1
    assert "429" in row["attempt_log"][0]["error"] and "500" in row["attempt_log"][1]["error"]
    assert row["trigger_value"]["price"] == 4210 and row["trigger_value"]["threshold"] == 4200
    assert len(telegram.requests) == 3
    [sent] = telegram.fake.delivered
    assert sent["chat"]["id"] == "424242"
    assert sent["text"] == "RWA Prime alert: PAXG price 4210 is above 4200 (price_above)."

    # Redelivering a trigger recorded as sent (a retry after a crash) sends nothing.
    assert await monitor.dispatcher.deliver(monitor.pool, row["history_id"]) is None
    await monitor.sweep()
    assert len(telegram.requests) == 3

    # Below again re-arms; the next crossing fires a second, separate trigger.
    await tick(redis, monitor, "paxg", 4190)
    assert (await conn.fetchval("SELECT armed FROM alerts WHERE alert_id = $1",
                                alert["alert_id"])) is True
    await tick(redis, monitor, "paxg", 4201)
    rows = await settled(conn, alert["alert_id"], 2)
    assert [r["delivery_status"] for r in rows] == ["sent", "sent"]
    assert rows[1]["idempotency_key"] == f"alert:{alert['alert_id']}:2"
    assert len(telegram.fake.delivered) == 2

    # The API shows the same record.
    r = await api(user).get(f"/alerts/{alert['alert_id']}/history")
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["delivery_status"] for i in items] == ["sent", "sent"]
    assert items[1]["attempts"] == 3 and len(items[1]["attempt_log"]) == 3
    got = (await api(user).get(f"/alerts/{alert['alert_id']}")).json()
    assert got["trigger_count"] == 2 and got["last_triggered_at"] is not None


async def test_paused_and_draft_alerts_do_not_fire_and_resumed_ones_do(
        conn: asyncpg.Connection, redis: Any, api: Any, monitor: AlertMonitor,
        telegram: FakeProvider) -> None:
    user = await make_user(conn, "bob@example.com")
    client = api(user)
    paused = await create(client, asset_id="xaut", condition_type="price_below",
                          condition_value={"price": 4000}, notification_method="telegram",
                          notification_target="424242")
    draft = await create(client, asset_id="xaut", condition_type="price_below",
                         condition_value={"price": 4000}, notification_method="telegram",
                         notification_target="@rwa_alerts", state="draft")
    assert draft["state"] == "draft" and draft["is_active"] is False
    assert (await client.post(f"/alerts/{paused['alert_id']}/pause")).json()["state"] == "paused"

    for price in (3990, 3950, 3900):
        await tick(redis, monitor, "xaut", price)
    await monitor.sweep()
    assert await history(conn, paused["alert_id"]) == []
    assert await history(conn, draft["alert_id"]) == []
    assert telegram.requests == []

    r = await client.post(f"/alerts/{paused['alert_id']}/resume")
    assert r.status_code == 200 and r.json()["state"] == "active"
    await tick(redis, monitor, "xaut", 3890)
    [row] = await settled(conn, paused["alert_id"], 1)
    assert row["delivery_status"] == "sent" and row["trigger_value"]["price"] == 3890
    assert await history(conn, draft["alert_id"]) == []
    assert [m["chat"]["id"] for m in telegram.fake.delivered] == ["424242"]


async def test_email_alerts_go_through_smtp_to_the_account_address(
        conn: asyncpg.Connection, redis: Any, api: Any, monitor: AlertMonitor,
        smtp: tuple[SmtpSettings, Mailbox]) -> None:
    _, box = smtp
    box.messages.clear()
    user = await make_user(conn, "carol@example.com")
    alert = await create(api(user), asset_id="BUIDL", condition_type="price_above",
                         condition_value={"price": 1.01}, notification_method="email")
    await tick(redis, monitor, "buidl", 1.02)
    [row] = await settled(conn, alert["alert_id"], 1)
    assert row["delivery_status"] == "sent" and row["target"] == "carol@example.com"
    [(rcpts, msg)] = box.messages
    assert rcpts == ["carol@example.com"]
    assert msg["Subject"] == "RWA Prime alert: BUIDL"
    assert "BUIDL price 1.02 is above 1.01" in msg.get_payload(decode=True).decode()


async def test_push_webhook_is_signed_and_retried_with_one_idempotency_key(
        conn: asyncpg.Connection, redis: Any, api: Any, monitor: AlertMonitor,
        webhook: FakeProvider) -> None:
    user = await make_user(conn, "dan@example.com")
    alert = await create(api(user), asset_id="kau", condition_type="price_below",
                         condition_value={"price": 120}, notification_method="push",
                         notification_target=f"{webhook.url}/hooks/rwa")
    webhook.fail_next(503, b"busy")
    await tick(redis, monitor, "kau", 119.5)
    [row] = await settled(conn, alert["alert_id"], 1)
    assert row["delivery_status"] == "sent" and row["attempts"] == 2
    assert [r.headers["x-rwa-idempotency-key"] for r in webhook.requests] == \
        [row["idempotency_key"]] * 2
    [accepted] = webhook.receiver.accepted
    assert webhook.receiver.refused == 0
    body = accepted.json()
    assert accepted.path == "/hooks/rwa" and body["type"] == "alert.triggered"
    assert body["alert_id"] == alert["alert_id"] and body["trigger"]["price"] == 119.5
    assert body["idempotency_key"] == row["idempotency_key"]


async def test_pct_move_risk_change_and_forecast_band_alerts(
        conn: asyncpg.Connection, redis: Any, api: Any, monitor: AlertMonitor,
        telegram: FakeProvider) -> None:
    user = await make_user(conn, "eve@example.com", tier="pro")
    client = api(user)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Gold 1-minute bars at 100 for the last ten minutes: the monitor has seen no tick
    # of KAG yet (as after a restart) and fills its price history from them.
    await conn.copy_records_to_table(
        "price_bars_1m", columns=["time", "asset_id", "open", "high", "low", "close", "volume"],
        records=[(now - timedelta(minutes=m), "kag", 100.0, 100.0, 100.0, 100.0, 1.0)
                 for m in range(10, 1, -1)])
    move = await create(client, asset_id="kag", condition_type="pct_move",
                        condition_value={"pct": 5, "window_minutes": 5},
                        notification_method="telegram", notification_target="424242")
    await redis.set(cache.risk_key("acred"), json.dumps({"composite_score": 40.0}))
    risk = await create(client, asset_id="acred", condition_type="risk_change",
                        condition_value={"points": 10}, notification_method="telegram",
                        notification_target="424242")
    assert risk["risk_baseline"] == 40.0
    await redis.set(cache.prediction_key("bcspx", 7), json.dumps({
        "confidence_lower": 680, "confidence_upper": 700, "lower_95": 670, "upper_95": 710,
        "generated_at": now.isoformat()}))
    band = await create(client, asset_id="bcspx", condition_type="forecast_band",
                        condition_value={"horizon": 7, "band": "95"},
                        notification_method="telegram", notification_target="424242")

    await tick(redis, monitor, "kag", 104.0)  # 4 %: no
    await tick(redis, monitor, "kag", 94.5)  # -5.5 % against the gold bars: fires
    await tick(redis, monitor, "kag", 94.0)  # still moved: no second trigger
    [row] = await settled(conn, move["alert_id"], 1)
    assert row["trigger_value"]["reference_price"] == 100.0
    assert row["trigger_value"]["pct_move"] == pytest.approx(-5.5)

    await tick(redis, monitor, "acred", 1080)  # score still 40: no
    await redis.set(cache.risk_key("acred"), json.dumps({"composite_score": 52.5}))
    await tick(redis, monitor, "acred", 1080)  # +12.5 points: fires, baseline moves to 52.5
    [row] = await settled(conn, risk["alert_id"], 1)
    assert row["trigger_value"]["change"] == 12.5 and row["trigger_value"]["baseline"] == 40
    assert await conn.fetchval("SELECT risk_baseline FROM alerts WHERE alert_id = $1",
                               risk["alert_id"]) == 52.5
    await tick(redis, monitor, "acred", 1080)
    assert len(await history(conn, risk["alert_id"])) == 1

    await tick(redis, monitor, "bcspx", 705)  # outside 80 %, inside 95 %: no
    await tick(redis, monitor, "bcspx", 712)  # above the 95 % band: fires
    [row] = await settled(conn, band["alert_id"], 1)
    assert row["trigger_value"]["side"] == "above" and row["trigger_value"]["upper"] == 710
    assert len(telegram.fake.delivered) == 3


async def test_the_sweep_judges_latest_prices_and_finishes_due_deliveries(
        conn: asyncpg.Connection, redis: Any, api: Any, monitor: AlertMonitor,
        telegram: FakeProvider) -> None:
    user = await make_user(conn, "fay@example.com")
    alert = await create(api(user), asset_id="usyc", condition_type="price_above",
                         condition_value={"price": 1.2}, notification_method="telegram",
                         notification_target="424242")
    # Telegram down for every inline attempt: the delivery is left for the sweep.
    for _ in range(4):
        telegram.fail_next(502, "<html>Bad Gateway</html>")
    # No tick reaches the monitor; only the latest price in Redis says 1.25.
    await redis.set(cache.latest_price_key("usyc"), json.dumps(
        {"asset_id": "usyc", "price": 1.25, "time": datetime.now(UTC).isoformat()}))
    await monitor.sweep()

    async def retrying() -> dict[str, Any] | None:
        rows = await history(conn, alert["alert_id"])
        return rows[0] if rows and rows[0]["delivery_status"] == "retrying" \
            and rows[0]["attempts"] == 4 else None

    row = await until(retrying, what="the delivery to be left for the sweep")
    assert telegram.fake.delivered == []
    await until(lambda: not monitor._deliveries, what="inline attempts to end")
    # Due again after its backoff; made due now rather than waited out.
    await conn.execute("UPDATE alert_history SET next_attempt_at = now() WHERE history_id = $1",
                       row["history_id"])
    await monitor.sweep()
    [row] = await settled(conn, alert["alert_id"], 1)
    assert row["delivery_status"] == "sent" and row["attempts"] == 5
    assert len(telegram.fake.delivered) == 1


async def test_deliveries_are_sent_once_under_concurrency_and_fail_when_permanent(
        conn: asyncpg.Connection, dispatcher: Dispatcher, db_uri: str,
        telegram: FakeProvider) -> None:
    user = await make_user(conn, "gus@example.com")
    alert_id = await conn.fetchval(
        """INSERT INTO alerts (user_id, asset_id, condition_type, condition_value,
                               notification_method, notification_target)
           VALUES ($1, 'paxg', 'price_above', '{"price": 1}', 'telegram', '424242')
           RETURNING alert_id""", user)

    async def trigger(n: int, target: str = "424242") -> int:
        return await conn.fetchval(
            """INSERT INTO alert_history (alert_id, trigger_value, idempotency_key, channel,
                   target, message, next_attempt_at)
               VALUES ($1, '{}', $2, 'telegram', $3, 'hello', now()) RETURNING history_id""",
            alert_id, f"alert:{alert_id}:{n}", target)

    pool = await asyncpg.create_pool(db_uri, min_size=2, max_size=4)
    try:
        one = await trigger(1)
        results = await asyncio.gather(*(dispatcher.deliver(pool, one) for _ in range(4)))
        assert results.count("sent") == 1 and results.count(None) == 3
        assert await dispatcher.deliver(pool, one) is None  # sent stays sent
        assert len(telegram.fake.delivered) == 1
        # A replayed trigger insert conflicts on the idempotency key: recorded once.
        with pytest.raises(asyncpg.UniqueViolationError):
            await trigger(1)
        # A sender that died mid-send leaves a claim; it is taken over only after its lease.
        two = await trigger(2)
        await conn.execute(
            """UPDATE alert_history SET delivery_status = 'sending', attempts = 1,
                   claimed_until = now() + interval '1 hour' WHERE history_id = $1""", two)
        assert await dispatcher.deliver(pool, two) is None
        await conn.execute("UPDATE alert_history SET claimed_until = now() - interval '1 s'"
                           " WHERE history_id = $1", two)
        assert await dispatcher.deliver(pool, two) == "sent"
        assert len(telegram.fake.delivered) == 2
        # A permanent error (unknown chat) fails at once, after one attempt.
        three = await trigger(3, target="999")
        assert await dispatcher.deliver(pool, three) == "failed"
        status, attempts, error = await conn.fetchrow(
            "SELECT delivery_status, attempts, error FROM alert_history WHERE history_id = $1",
            three)
        assert (status, attempts) == ("failed", 1) and "chat not found" in error
        # The sent-at-most-once rule is the database's too.
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE alert_history SET delivery_status = 'sent' "
                               "WHERE history_id = $1", three)
    finally:
        await pool.close()


# -- the API ----------------------------------------------------------------------------


async def test_crud_lifecycle_and_change_announcements(
        conn: asyncpg.Connection, redis_url: str, api: Any) -> None:
    user = await make_user(conn, "hal@example.com")
    client = api(user)
    listener = cache.async_client(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(cache.ALERTS_CHANGED_CHANNEL)

    alert = await create(client, asset_id="paxg", condition_type="pct_move",
                         condition_value={"pct": 3, "window_minutes": 60},
                         notification_method="telegram", notification_target="-1001234567890")
    aid = alert["alert_id"]
    assert alert["asset_id"] == "paxg" and alert["symbol"] == "PAXG"
    assert alert["state"] == "active" and alert["is_active"] and alert["armed"]
    assert alert["condition_value"] == {"pct": 3.0, "window_minutes": 60}
    msg = await next_message(pubsub)
    assert json.loads(msg["data"]) == {"alert_id": aid, "action": "created",
                                       "asset_ids": ["paxg"]}

    listed = (await client.get("/alerts")).json()
    assert listed["total"] == 1 and listed["items"][0]["alert_id"] == aid
    assert (await client.get("/alerts", params={"state": "paused"})).json()["total"] == 0
    assert (await client.get("/alerts", params={"asset_id": "PAXG"})).json()["total"] == 1

    # Lifecycle: pause, refuse a second pause, resume, refuse resuming an active alert.
    assert (await client.post(f"/alerts/{aid}/pause")).json()["state"] == "paused"
    r = await client.post(f"/alerts/{aid}/pause")
    assert r.status_code == 409 and "already paused" in r.json()["detail"]
    assert (await client.post(f"/alerts/{aid}/resume")).json()["state"] == "active"
    r = await client.post(f"/alerts/{aid}/resume")
    assert r.status_code == 409 and "already active" in r.json()["detail"]
    r = await client.post(f"/alerts/{aid}/activate")
    assert r.status_code == 409

    # An edit of a fired, paused alert: modified → active, re-armed.
    await conn.execute("UPDATE alerts SET armed = false, last_triggered_at = now() "
                       "WHERE alert_id = $1", aid)
    await client.post(f"/alerts/{aid}/pause")
    r = await client.patch(f"/alerts/{aid}", json={
        "asset_id": "XAUt", "condition_type": "price_below", "condition_value": {"price": 4000},
        "notification_method": "email"})
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["state"] == "active" and edited["armed"] and edited["asset_id"] == "xaut"
    assert edited["notification_method"] == "email" and edited["notification_target"] is None
    assert edited["last_triggered_at"] is None
    # Refused steps announce nothing; the edit names the old asset and the new one.
    changes = [json.loads((await next_message(pubsub))["data"]) for _ in range(4)]
    assert [c["action"] for c in changes] == ["pause", "resume", "pause", "modified"]
    assert changes[3]["asset_ids"] == ["paxg", "xaut"]
    assert await next_message(pubsub, timeout_s=0.3) is None

    # A draft: edited stays a draft, started with activate only.
    draft = await create(client, asset_id="paxg", condition_type="price_above",
                         condition_value={"price": 5000}, notification_method="email",
                         state="draft")
    did = draft["alert_id"]
    r = await client.post(f"/alerts/{did}/resume")
    assert r.status_code == 409 and "activate" in r.json()["detail"]
    r = await client.patch(f"/alerts/{did}", json={"condition_value": {"price": 5100}})
    assert r.json()["state"] == "draft" and r.json()["condition_value"] == {"price": 5100.0}
    assert (await client.post(f"/alerts/{did}/activate")).json()["state"] == "active"

    # Delete: gone from every route; deleting again is a 404.
    r = await client.delete(f"/alerts/{did}")
    assert r.status_code == 204
    assert (await client.get(f"/alerts/{did}")).status_code == 404
    assert (await client.delete(f"/alerts/{did}")).status_code == 404
    assert (await client.post(f"/alerts/{did}/resume")).status_code == 404
    assert [a["alert_id"] for a in (await client.get("/alerts")).json()["items"]] == [aid]
    assert await conn.fetchval("SELECT state FROM alerts WHERE alert_id = $1", did) == "deleted"
    await pubsub.aclose()
    await listener.aclose()


async def test_bad_input_gets_422_with_a_clear_message(
        conn: asyncpg.Connection, api: Any) -> None:
    client = api(await make_user(conn, "ivy@example.com"))
    base = {"asset_id": "paxg", "condition_type": "price_above",
            "condition_value": {"price": 10}, "notification_method": "email"}
    for patch, message in [
        ({"condition_value": {"price": -5}},
         "condition_value for price_above: price: Input should be greater than 0"),
        ({"condition_type": "pct_move", "condition_value": {"pct": 5, "window_minutes": 2000}},
         "window_minutes: Input should be less than or equal to 1440"),
        ({"condition_type": "forecast_band", "condition_value": {"horizon": 7, "band": "50"}},
         "band: Input should be '80' or '95'"),
        ({"condition_value": {"price": 10, "when": "now"}}, "when: Extra inputs"),
        ({"asset_id": "NOPE"}, "asset_id: unknown asset 'NOPE'"),
        ({"asset_id": "pa\x00xg"}, "asset_id: unknown asset"),
        ({"notification_method": "telegram"}, "need notification_target"),
        ({"notification_method": "push", "notification_target": "file:///etc/passwd"},
         "http(s) URL"),
        ({"notification_target": "x@example.com"}, "account's address"),
    ]:
        r = await client.post("/alerts", json=base | patch)
        assert r.status_code == 422, (patch, r.text)
        assert message in r.json()["detail"], (patch, r.json())
    r = await client.post("/alerts", json=base | {"condition_type": "price_sideways"})
    assert r.status_code == 422 and "condition_type" in json.dumps(r.json()["detail"])
    alert = await create(client, **base)
    r = await client.patch(f"/alerts/{alert['alert_id']}", json={})
    assert r.status_code == 422 and "nothing to change" in r.json()["detail"]
    r = await client.patch(f"/alerts/{alert['alert_id']}", json={"condition_type": "pct_move"})
    assert r.status_code == 422 and "condition_value is needed" in r.json()["detail"]
    for path in ("/alerts/0", "/alerts/99999999999999999999", "/alerts/abc/history"):
        assert (await client.get(path)).status_code == 422, path
    assert (await conn.fetchval("SELECT count(*) FROM alerts")) == 1


async def test_another_users_alert_is_a_404_everywhere_and_tier_caps_hold(
        conn: asyncpg.Connection, api: Any) -> None:
    owner, other = await make_user(conn, "jo@example.com"), await make_user(conn, "kim@x.io")
    alert = await create(api(owner), asset_id="paxg", condition_type="price_above",
                         condition_value={"price": 10}, notification_method="email")
    aid, intruder = alert["alert_id"], api(other)
    for method, path, body in [
        ("GET", f"/alerts/{aid}", None), ("PATCH", f"/alerts/{aid}", {"condition_value":
                                                                         {"price": 1}}),
        ("POST", f"/alerts/{aid}/pause", None), ("POST", f"/alerts/{aid}/resume", None),
        ("DELETE", f"/alerts/{aid}", None), ("GET", f"/alerts/{aid}/history", None),
    ]:
        r = await intruder.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["detail"] == f"no alert {aid}"
    assert (await intruder.get("/alerts")).json() == {"items": [], "total": 0}
    got = (await api(owner).get(f"/alerts/{aid}")).json()
    assert got["state"] == "active" and got["condition_value"] == {"price": 10.0}

    # The free tier holds 3 alerts (drafts count, deleted ones do not).
    client = api(owner)
    await create(client, asset_id="paxg", condition_type="price_below",
                 condition_value={"price": 5}, notification_method="email", state="draft")
    await create(client, asset_id="xaut", condition_type="price_below",
                 condition_value={"price": 5}, notification_method="email")
    r = await client.post("/alerts", json={"asset_id": "kau", "condition_type": "price_below",
                                           "condition_value": {"price": 5},
                                           "notification_method": "email"})
    assert r.status_code == 403
    assert r.json()["detail"] == ("the free tier allows 3 alerts and 3 exist; delete one or "
                                  "upgrade the tier")
    assert (await client.delete(f"/alerts/{aid}")).status_code == 204
    await create(client, asset_id="kau", condition_type="price_below",
                 condition_value={"price": 5}, notification_method="email")
    await conn.execute("UPDATE users SET tier = 'pro' WHERE user_id = $1", owner)
    await create(client, asset_id="kag", condition_type="price_below",
                 condition_value={"price": 5}, notification_method="email")


def test_the_default_caps_come_from_the_tier_table() -> None:
    from serve.alerts.routes import _caps

    args = AppArgs(database_url="postgresql://x/y", redis_url="redis://x", sentiment=None)
    assert _caps(type("S", (), {"args": args})()) == {
        name: limits.max_alerts for name, limits in args.tiers.items()}


# -- the real actor -----------------------------------------------------------------------


@pytest.mark.slow
async def test_the_monitor_runs_as_a_ray_actor(
        local_ray: None, conn: asyncpg.Connection, redis: Any, db_uri: str, redis_url: str,
        telegram: FakeProvider, tmp_path: Path) -> None:
    import ray

    from actors.alerts import AlertMonitorActor
    from core.settings import Settings

    user = await make_user(conn, "lee@example.com")
    alert_id = await conn.fetchval(
        """INSERT INTO alerts (user_id, asset_id, condition_type, condition_value,
                               notification_method, notification_target)
           VALUES ($1, 'paxg', 'price_above', '{"price": 4200}', 'telegram', '424242')
           RETURNING alert_id""", user)
    settings = Settings(
        home=tmp_path, database_url=SecretStr(db_uri), redis_url=SecretStr(redis_url),
        telegram=TelegramSettings(bot_token=SecretStr(tg.TOKEN), base_url=telegram.url),
        alerts=alert_settings())
    actor = ray.remote(AlertMonitorActor).options(num_cpus=0.25, max_concurrency=4).remote(
        settings)
    try:
        async def subscribed() -> bool:
            counts = dict(await redis.pubsub_numsub(cache.TICKS_CHANNEL))
            return counts.get(cache.TICKS_CHANNEL, 0) >= 1

        await until(subscribed, what="the actor to subscribe", timeout_s=120)
        for price in (4100, 4300, 4310):
            await redis.publish(cache.TICKS_CHANNEL, json.dumps(
                {"asset_id": "paxg", "price": price, "time": datetime.now(UTC).isoformat()}))
        [row] = await settled(conn, alert_id, 1)
        assert row["delivery_status"] == "sent" and row["trigger_value"]["price"] == 4300
        async def beat() -> dict[str, Any] | None:
            raw = await redis.get(cache.heartbeat_key("alert-monitor"))
            figures = json.loads(raw) if raw else {}
            return figures if figures.get("fired") == 1 else None

        figures = await until(beat, what="the heartbeat to count the trigger")
        assert figures["sent"] == 1 and figures["alerts"] == 1
        assert len(telegram.fake.delivered) == 1
        await asyncio.to_thread(ray.get, actor.stop.remote(), timeout=30)
    finally:
        ray.kill(actor, no_restart=True)
