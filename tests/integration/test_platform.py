"""End to end on the real embedded stack started by ``rwa up``."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from websockets.sync.client import connect

from core import broker, envelope
from core.catalog import load_catalog
from tests.integration.conftest import Platform, wait_until

pytestmark = pytest.mark.integration


def _first_tick(plat: Platform, subscribe: list[str], timeout_s: float = 30) -> dict:
    with connect(plat.ws_url, open_timeout=30, max_queue=None,
                 additional_headers=plat.ws_headers()) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "authenticated"
        ws.send(json.dumps({"action": "subscribe", "assets": subscribe}))
        ack = json.loads(ws.recv(timeout=10))
        assert ack == {"type": "subscribed", "assets": sorted(a.lower() for a in subscribe)}
        while True:
            msg = json.loads(ws.recv(timeout=timeout_s))
            if "price" in msg:
                return msg


def test_a_tick_reaches_a_websocket_client_and_then_gold(platform: Platform) -> None:
    tick = _first_tick(platform, ["PAXG"])
    assert tick["asset_id"] == "paxg" and tick["symbol"] == "PAXG"
    assert tick["price"] > 0
    tick_time = datetime.fromisoformat(tick["time"])
    assert datetime.now(UTC) - tick_time < timedelta(minutes=1)

    # The same tick travels the lake path: bronze → silver (Spark) → gold bar of its hour.
    hour = tick_time.replace(minute=0, second=0, microsecond=0)

    def bar_holds_tick():
        rows = platform.sql(
            "SELECT low, high FROM price_data WHERE asset_id = 'paxg' AND time = $1", hour)
        return rows and rows[0]["low"] <= tick["price"] <= rows[0]["high"] and rows[0]

    # The stream's first micro-batch holds the whole simulated history beside this tick,
    # and on 2 cores it shares them with the rest of the platform's start.
    bar = wait_until(bar_holds_tick, timeout_s=600, what="the tick's hour bar in gold")
    assert bar["low"] <= tick["price"] <= bar["high"]


def test_gold_bars_become_predictions_served_by_the_api(platform: Platform) -> None:
    def served():
        r = httpx.get(f"{platform.api_url}/predictions/PAXG", params={"horizon": 7}, timeout=10)
        return r.json() if r.status_code == 200 else None

    p = wait_until(served, timeout_s=300, what="a 7-day PAXG prediction", interval_s=2)
    assert p["asset_id"] == "paxg" and p["forecast_horizon"] == 7
    assert p["lower_95"] <= p["confidence_lower"] <= p["predicted_price"] <= p["confidence_upper"] <= p["upper_95"]
    assert p["confidence_lower"] < p["confidence_upper"]
    assert p["model_version"].startswith("ens-v1(naive+arima-aic-v1+ets-damped-v1")
    assert p["target"] == "price" and len(p["path"]) == 7
    stored = platform.sql("SELECT predicted_price, asset_id FROM predictions WHERE prediction_id = $1",
                          p["prediction_id"])
    assert stored and stored[0]["predicted_price"] == pytest.approx(p["predicted_price"])
    # The forecast is anchored on the gold history it was fitted to.
    last_close = platform.sql(
        "SELECT close FROM price_data WHERE asset_id = 'paxg' ORDER BY time DESC LIMIT 1")[0]["close"]
    assert 0.7 * last_close < p["predicted_price"] < 1.3 * last_close

    # Every catalog asset gets predictions for every horizon.
    expected = len(load_catalog())

    def all_assets_predicted():
        rows = platform.sql("SELECT forecast_horizon, count(DISTINCT asset_id) AS n "
                            "FROM predictions GROUP BY forecast_horizon")
        counts = {r["forecast_horizon"]: r["n"] for r in rows}
        return counts == {1: expected, 7: expected, 30: expected} and counts

    wait_until(all_assets_predicted, timeout_s=240, what="predictions for every asset",
               interval_s=3)


def test_the_scheduler_scores_risk_and_news_sentiment_served_by_the_api(
        platform: Platform) -> None:
    """The analytics scheduler appends explained risk scores (cached in Redis) and turns
    silver news into scored hourly sentiment; the API serves both."""
    def scored():
        r = httpx.get(f"{platform.api_url}/risk/PAXG", timeout=10)
        return r.json() if r.status_code == 200 else None

    risk = wait_until(scored, timeout_s=240, what="a PAXG risk score", interval_s=2)
    assert risk["asset_id"] == "paxg" and 0 <= risk["composite_score"] <= 100
    subs = risk["explanation"]["sub_scores"]
    assert set(subs) == {"market", "credit", "regulatory", "technical"}
    assert all(sub["factors"] for sub in subs.values())
    history = httpx.get(f"{platform.api_url}/risk/paxg/history", timeout=10).json()["items"]
    assert history and history[0]["score_id"] == risk["score_id"]

    def sentiment():
        rows = platform.sql("SELECT asset_id FROM sentiment_scores "
                            "WHERE sentiment_score IS NOT NULL LIMIT 1")
        return rows[0]["asset_id"] if rows else None

    asset = wait_until(sentiment, timeout_s=240, what="scored news sentiment", interval_s=3)
    items = httpx.get(f"{platform.api_url}/assets/{asset}/sentiment", timeout=10).json()["items"]
    scored_hours = [i for i in items if i["sentiment_score"] is not None]
    assert scored_hours and all(-1 <= i["sentiment_score"] <= 1 and i["article_count"] >= 1
                                for i in scored_hours)

    def onchain_day():
        rows = platform.sql("SELECT asset_id, time, holder_count FROM onchain_metrics "
                            "ORDER BY time DESC LIMIT 1")
        return rows[0] if rows else None

    day = wait_until(onchain_day, timeout_s=240, what="a gold on-chain day", interval_s=3)
    onchain = httpx.get(f"{platform.api_url}/assets/{day['asset_id']}/onchain",
                        timeout=10).json()
    assert onchain["asset_id"] == day["asset_id"]
    served = {datetime.fromisoformat(i["time"]): i["holder_count"] for i in onchain["items"]}
    assert served[day["time"]] == day["holder_count"]


def test_malformed_messages_go_to_dead_letter_while_good_ones_flow(platform: Platform) -> None:
    marker = f"test-probe-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=platform.kafka_bootstrap, acks="all")
    producer.send(broker.PRICE_RAW, key=b"paxg", value=b"{not json")
    bad_price = envelope.make(source=marker, kind="tick", asset_id="paxg",
                              event_time=datetime.now(UTC), payload={"price": 1.0, "volume": 1.0})
    broken = json.loads(bad_price.to_bytes())
    broken["payload"]["price"] = -5
    producer.send(broker.PRICE_RAW, key=b"paxg", value=json.dumps(broken).encode())
    good = envelope.make(source=marker, kind="tick", asset_id="paxg",
                         event_time=datetime.now(UTC), payload={"price": 2000.0, "volume": 3.0})
    producer.send(broker.PRICE_RAW, key=b"paxg", value=good.to_bytes())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=platform.kafka_bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    parts = [TopicPartition(broker.DEAD_LETTER, p)
             for p in consumer.partitions_for_topic(broker.DEAD_LETTER)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    found: list[dict] = []

    def both_dead_lettered():
        for record in consumer:
            found.append(json.loads(record.value))
        raws = [f for f in found if "{not json" in f["raw"] or marker in f["raw"]]
        return len(raws) >= 2 and raws

    letters = wait_until(both_dead_lettered, timeout_s=60, what="two dead letters")
    consumer.close()
    reasons = {("{not json" in d["raw"]): d["reason"] for d in letters}
    assert "not JSON" in reasons[True]
    assert "price" in reasons[False] and "greater than 0" in reasons[False]
    assert all(d["topic"] == broker.PRICE_RAW and d["stage"] == "bronze" for d in letters)

    # The sink kept going: the good message after them is in bronze.
    def good_in_bronze():
        for path in sorted(Path(platform.lake_root, "bronze", broker.PRICE_RAW).rglob("*.parquet"),
                           reverse=True)[:50]:
            table = pq.read_table(path, columns=["source", "payload"])
            if marker in table.column("source").to_pylist():
                return path
        return None

    wait_until(good_in_bronze, timeout_s=60, what="the good message in bronze")


def test_screener_lists_and_filters_the_whole_catalog(platform: Platform) -> None:
    catalog = load_catalog()
    r = httpx.get(f"{platform.api_url}/assets", params={"limit": 500}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == len(catalog)
    assert {a["asset_id"] for a in body["items"]} == {a.asset_id for a in catalog}

    gold = httpx.get(f"{platform.api_url}/assets", params={"asset_class": "gold"}).json()
    assert gold["total"] == sum(a.asset_class == "gold" for a in catalog)
    assert all(a["asset_class"] == "gold" for a in gold["items"])

    ethereum = httpx.get(f"{platform.api_url}/assets", params={"blockchain": "ethereum"}).json()
    assert ethereum["total"] == sum("ethereum" in a.chains for a in catalog)

    yielding = httpx.get(f"{platform.api_url}/assets", params={"min_apy": 4, "sort": "-apy"}).json()
    apys = [a["apy"] for a in yielding["items"]]
    assert apys and all(x >= 4 for x in apys) and apys == sorted(apys, reverse=True)

    page1 = httpx.get(f"{platform.api_url}/assets", params={"limit": 5, "offset": 0}).json()
    page2 = httpx.get(f"{platform.api_url}/assets", params={"limit": 5, "offset": 5}).json()
    assert len(page1["items"]) == 5 and not {a["asset_id"] for a in page1["items"]} & {
        a["asset_id"] for a in page2["items"]}

    found = httpx.get(f"{platform.api_url}/assets", params={"q": "blackrock"}).json()
    assert "buidl" in {a["asset_id"] for a in found["items"]}

    detail = httpx.get(f"{platform.api_url}/assets/BUIDL").json()
    assert detail["asset_id"] == "buidl" and detail["issuer"]


def test_prices_endpoint_serves_gold_bars(platform: Platform) -> None:
    def bars():
        r = httpx.get(f"{platform.api_url}/assets/xaut/prices", params={"limit": 48}, timeout=10)
        return r.json()["items"] if r.status_code == 200 and len(r.json()["items"]) == 48 else None

    items = wait_until(bars, timeout_s=240, what="48 hourly XAUT bars")
    times = [datetime.fromisoformat(i["time"]) for i in items]
    assert times == sorted(times) and all(b - a == timedelta(hours=1) for a, b in zip(times, times[1:]))
    assert all(i["low"] <= min(i["open"], i["close"]) <= max(i["open"], i["close"]) <= i["high"]
               for i in items)
    daily = httpx.get(f"{platform.api_url}/assets/xaut/prices",
                      params={"interval": "1d", "limit": 5}).json()["items"]
    assert len(daily) == 5
    start = times[10].isoformat()
    end = times[20].isoformat()
    window = httpx.get(f"{platform.api_url}/assets/xaut/prices",
                       params={"start": start, "end": end}).json()["items"]
    assert len(window) == 10


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/assets/not-an-asset", {}, 404),
        ("/assets/not-an-asset/prices", {}, 404),
        ("/predictions/not-an-asset", {}, 404),
        ("/assets", {"limit": 0}, 422),
        ("/assets", {"limit": "ten"}, 422),
        ("/assets", {"asset_class": "tulips"}, 422),
        ("/assets", {"sort": "price; drop table assets"}, 422),
        ("/assets", {"min_apy": -1}, 422),
        ("/assets/paxg/prices", {"start": "yesterday"}, 422),
        ("/assets/paxg/prices", {"interval": "7m"}, 422),
        ("/assets/paxg/prices", {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, 422),
        ("/predictions/paxg", {"horizon": 0}, 422),
        ("/predictions/paxg", {"horizon": "soon"}, 422),
        ("/risk/no-such-asset", {}, 404),
        ("/risk/paxg/history", {"limit": 0}, 422),
        ("/assets/paxg/sentiment", {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
         422),
        ("/assets/no-such-asset/onchain", {}, 404),
        ("/predictions/paxg", {"target": "dividends"}, 422),
        ("/predictions/paxg", {"target": "nav"}, 404),  # gold is not NAV-pinned
    ],
)
def test_bad_input_gets_a_clear_4xx(platform: Platform, path: str, params: dict, status: int) -> None:
    r = httpx.get(f"{platform.api_url}{path}", params=params, timeout=10)
    assert r.status_code == status
    assert r.json()["detail"]


def test_the_sentiment_deployment_scores_texts_through_the_api(platform: Platform) -> None:
    texts = ["Tokenized treasury fund doubles its assets as inflows hit a record",
             "Issuer defaults on its notes and the fund suspends redemptions"]
    r = httpx.post(f"{platform.api_url}/sentiment", json={"texts": texts}, timeout=60)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["text"] for i in items] == texts
    assert items[0]["label"] == "positive" and items[1]["label"] == "negative"
    assert items[0]["score"] > 0 > items[1]["score"]
    for body in ({"texts": []}, {"texts": ["  "]}, {"texts": ["x"] * 257}, {"text": "hi"},
                 {"texts": [3]}):
        bad = httpx.post(f"{platform.api_url}/sentiment", json=body, timeout=30)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.json()["detail"]


def test_an_investor_signs_up_and_keeps_a_portfolio_and_an_alert(platform: Platform) -> None:
    """Accounts, portfolios and alerts through the running Serve app, end to end."""
    api = platform.api_url
    email = f"investor-{uuid.uuid4().hex[:8]}@example.com"
    password = "Treasury-Ladder-2026!"
    r = httpx.post(f"{api}/auth/register", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["email"] == email and r.json()["tier"] == "free"
    r = httpx.post(f"{api}/auth/login", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}

    assert httpx.get(f"{api}/portfolio", timeout=10).status_code == 401
    r = httpx.post(f"{api}/portfolio/items", headers=auth, timeout=10,
                   json={"asset_id": "paxg", "quantity": 2, "avg_purchase_price": 2000})
    assert r.status_code == 201, r.text
    item_id = r.json()["portfolio_id"]
    held = httpx.get(f"{api}/portfolio", headers=auth, timeout=10).json()
    assert [i["portfolio_id"] for i in held["items"]] == [item_id]
    assert held["items"][0]["quantity"] == pytest.approx(2)

    r = httpx.post(f"{api}/alerts", headers=auth, timeout=10, json={
        "asset_id": "paxg", "condition_type": "price_above", "condition_value": {"price": 1e9},
        "notification_method": "email"})
    assert r.status_code == 201, r.text
    alerts = httpx.get(f"{api}/alerts", headers=auth, timeout=10).json()
    assert [a["alert_id"] for a in alerts["items"]] == [r.json()["alert_id"]]
    bad = httpx.post(f"{api}/alerts", headers=auth, timeout=10, json={
        "asset_id": "paxg", "condition_type": "price_above", "condition_value": {"price": -1},
        "notification_method": "email"})
    assert bad.status_code == 422 and bad.json()["detail"]


def test_websocket_wants_a_token(platform: Platform) -> None:
    from websockets.exceptions import ConnectionClosed

    with connect(platform.ws_url, open_timeout=30) as ws:
        ws.send(json.dumps({"action": "subscribe", "assets": ["paxg"]}))
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=10)
    assert e.value.rcvd and (e.value.rcvd.code, e.value.rcvd.reason) == (
        1008, "authentication required")
    # A browser's way in: the token as the first message.
    with connect(platform.ws_url, open_timeout=30) as ws:
        ws.send(json.dumps({"action": "auth", "token": platform.access_token()}))
        hello = json.loads(ws.recv(timeout=10))
        assert hello == {"type": "authenticated", "tier": "free", "max_assets": 5}
        ws.send(json.dumps({"action": "subscribe", "assets": [a.asset_id for a in load_catalog()]}))
        err = json.loads(ws.recv(timeout=10))
        assert err["type"] == "error" and "free tier allows 5 assets" in err["detail"]


def test_websocket_rejects_bad_messages_and_keeps_the_socket(platform: Platform) -> None:
    with connect(platform.ws_url, open_timeout=30, max_queue=None,
                 additional_headers=platform.ws_headers()) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "authenticated"
        ws.send("hello")
        err = json.loads(ws.recv(timeout=10))
        assert err["type"] == "error" and "subscribe" in err["detail"]
        ws.send(json.dumps({"action": "subscribe", "assets": ["nope", "xaut"]}))
        err = json.loads(ws.recv(timeout=10))
        assert err == {"type": "error", "detail": "unknown asset(s): nope"}
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed", "assets": ["xaut"]}
        while "price" not in (msg := json.loads(ws.recv(timeout=30))):
            pass
        assert msg["asset_id"] == "xaut"


def test_websocket_refuses_foreign_origins(platform: Platform) -> None:
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    headers = platform.ws_headers()  # a valid token does not make a foreign page welcome
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        with connect(platform.ws_url, origin="https://evil.example", open_timeout=30,
                     additional_headers=headers) as ws:
            ws.recv(timeout=5)


def test_health_and_status_report_every_component(platform: Platform) -> None:
    health = httpx.get(f"{platform.api_url}/health", timeout=10).json()
    assert health["components"]["postgres"]["status"] == "up"
    assert health["components"]["redis"]["status"] == "up"
    wait_until(lambda: httpx.get(f"{platform.api_url}/health").json()["components"]["pipeline"]["status"] == "up",
               timeout_s=120, what="the pipeline heartbeat")

    out = subprocess.run([str(Path(sys.executable).parent / "rwa"), "status", "--json"],
                         env=platform.env, capture_output=True, text=True, timeout=120)
    report = json.loads(out.stdout)
    comps = report["components"]
    down = {k: v for k, v in comps.items() if v["status"] != "up"}
    assert not down, down
    assert out.returncode == 0
    assert comps["postgres"]["figures"]["rows"]["assets"] == len(load_catalog())
    assert comps["kafka"]["figures"]["end_offsets"][broker.PRICE_RAW] > 0
    assert comps["ray"]["figures"]["alive_actors"] >= 5
    assert comps["actor:ingest-simulated"]["figures"]["ticks_sent"] > 0


def test_openapi_docs_are_served(platform: Platform) -> None:
    assert httpx.get(f"{platform.api_url}/docs", timeout=10).status_code == 200
    spec = httpx.get(f"{platform.api_url}/openapi.json", timeout=10).json()
    assert {"/assets", "/assets/{asset_id}", "/assets/{asset_id}/prices",
            "/predictions/{asset_id}", "/health"} <= set(spec["paths"])


def test_metrics_are_exposed_for_prometheus(platform: Platform) -> None:
    httpx.get(f"{platform.api_url}/assets", timeout=10)
    text = httpx.get(f"{platform.api_url}/metrics", timeout=10).text
    assert 'rwa_api_requests_total{route="/assets",status="200"}' in text
