"""Contract tests of the CoinAPI connector against local fakes of its REST and WebSocket APIs."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from core.catalog import load_catalog
from core.errors import ProviderAuthError, ProviderBadResponse, ProviderUnavailable
from core.settings import CoinApiSettings
from ingestion.coinapi import (
    DEFAULT_SYMBOLS,
    CoinApiSource,
    CoinApiStream,
    StreamOptions,
    transform_ohlcv,
    transform_trade,
)
from ingestion.source import Reject
from tests.fakes.coinapi import (
    KEY,
    FakeCoinApiWs,
    hourly_bars,
    ohlcv_route,
    reconnect,
    trade,
)
from tests.fakes.server import HTML_ERROR_PAGE, FakeProvider

NOW = datetime(2025, 3, 10, 12, 34, 56, tzinfo=UTC)
END = datetime(2025, 3, 10, 12, tzinfo=UTC)  # the last completed hour ends here
PAXG, XAUT = DEFAULT_SYMBOLS["paxg"], DEFAULT_SYMBOLS["xaut"]
ASSETS = [a for a in load_catalog() if a.asset_id in DEFAULT_SYMBOLS]
FAST = StreamOptions(backoff_base_s=0.01, backoff_max_s=0.05, open_timeout_s=2)


def bars() -> dict[str, list[dict]]:
    start = END - timedelta(days=10)
    hours = 10 * 24 + 3  # runs past END: the open hour must not be emitted
    return {PAXG: hourly_bars(start, hours, price=2000.0),
            XAUT: hourly_bars(start, hours, price=3000.0)}


def settings(url: str, **kw) -> CoinApiSettings:
    base = {"api_key": KEY, "base_url": url, "stream": False, "lookback_days": 7,
            "max_attempts": 3, "timeout_s": 2.0}
    return CoinApiSettings(**(base | kw))


def source(fake: FakeProvider, sleeps: list[float] | None = None, **kw) -> CoinApiSource:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return CoinApiSource(settings(fake.url, **kw), assets=ASSETS, sleep=sleep,
                         stream_options=FAST)


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def collect(s: CoinApiStream, n: int) -> list:
    """Drain ``s`` until ``n`` items came, or fail after a deadline."""
    got: list = []
    wait_for(lambda: got.extend(s.drain(n)) or len(got) >= n)
    return got


# -- REST ------------------------------------------------------------------------------
def test_maps_periods_to_hourly_bars_of_the_catalog_assets():
    with FakeProvider(ohlcv_route(bars())) as fake:
        src = source(fake)
        batch = src.poll(None, NOW)
        src.close()
    by_asset = {a: [e for e in batch.envelopes if e.asset_id == a] for a in ("paxg", "xaut")}
    assert len(by_asset["paxg"]) == 100 and len(by_asset["xaut"]) == 100
    first = by_asset["paxg"][0]
    assert first.source == "coinapi" and first.kind == "bar"
    assert first.event_time == END - timedelta(days=7)
    assert first.event_time.tzinfo is not None
    # 3 days of history before the window: the 73rd period of the fixture.
    assert first.payload == {"open": 2072.0, "high": 2077.5, "low": 2067.75, "close": 2073.0,
                             "volume": 82.0, "interval": "1h"}
    assert by_asset["xaut"][0].payload["open"] == 3072.0
    times = [e.event_time for e in by_asset["paxg"]]
    assert times == sorted(times) and all(t.minute == 0 for t in times)
    assert batch.rejects == []


def test_sends_the_key_header_and_documented_parameters():
    with FakeProvider(ohlcv_route(bars())) as fake:
        src = source(fake)
        src.poll(None, NOW)
        src.close()
    request = fake.requests[0]
    assert request.headers["x-coinapi-key"] == KEY
    assert request.path == f"/v1/ohlcv/{PAXG}/history"
    assert request.param("period_id") == "1HRS"
    assert request.param("time_start") == "2025-03-03T12:00:00"
    assert request.param("time_end") == "2025-03-10T12:00:00"
    assert request.param("limit") == "100"
    assert {r.path for r in fake.requests} == {f"/v1/ohlcv/{PAXG}/history",
                                              f"/v1/ohlcv/{XAUT}/history"}


def test_pages_through_history_and_resumes_from_the_cursor_without_repeats():
    with FakeProvider(ohlcv_route(bars())) as fake:
        src = source(fake)
        first = src.poll(None, NOW)
        assert first.more is True
        second = src.poll(first.cursor, NOW)
        assert second.more is False
        assert fake.requests[2].param("time_start") == "2025-03-07T16:00:00"  # after 100 h
        third = src.poll(second.cursor, NOW)
        assert third.envelopes == [] and len(fake.requests) == 4  # caught up: no request
        later = src.poll(second.cursor, NOW + timedelta(hours=1))
        src.close()
    keys = [(e.asset_id, e.event_time) for b in (first, second) for e in b.envelopes]
    assert len(keys) == len(set(keys)) == 2 * 7 * 24
    assert max(t for _, t in keys) == END - timedelta(hours=1)
    assert [e.event_time for e in later.envelopes] == [END, END]
    assert second.cursor["last_period_start"]["paxg"] == (END - timedelta(hours=1)).isoformat()


def test_repolling_an_old_cursor_yields_the_same_events():
    with FakeProvider(ohlcv_route(bars())) as fake:
        src = source(fake)
        first = src.poll(None, NOW)
        again = src.poll(None, NOW)
        src.close()
    assert [(e.asset_id, e.event_time, e.payload) for e in first.envelopes] == \
           [(e.asset_id, e.event_time, e.payload) for e in again.envelopes]
    assert first.cursor == again.cursor


def test_an_empty_window_still_advances_the_cursor():
    with FakeProvider(ohlcv_route({})) as fake:
        src = source(fake)
        batch = src.poll(None, NOW)
        src.close()
    assert batch.envelopes == [] and batch.more is False
    assert batch.cursor["last_period_start"] == {
        "paxg": (END - timedelta(hours=1)).isoformat(),
        "xaut": (END - timedelta(hours=1)).isoformat()}


def test_configured_symbols_override_the_defaults():
    custom = {"GEMINI_SPOT_PAXG_USD": hourly_bars(END - timedelta(hours=2), 2)}
    with FakeProvider(ohlcv_route(custom)) as fake:
        src = source(fake, symbols={"paxg": "GEMINI_SPOT_PAXG_USD"})
        batch = src.poll(None, NOW)
        src.close()
    assert {r.path for r in fake.requests} == {"/v1/ohlcv/GEMINI_SPOT_PAXG_USD/history"}
    assert [e.asset_id for e in batch.envelopes] == ["paxg", "paxg"]


def test_429_with_retry_after_is_waited_out_and_retried():
    sleeps: list[float] = []
    with FakeProvider(ohlcv_route(bars())) as fake:
        fake.fail_next(429, {"message": "Too many requests"}, headers={"Retry-After": "2"})
        src = source(fake, sleeps)
        batch = src.poll(None, NOW)
        src.close()
    assert sleeps == [2.0]
    assert len(batch.envelopes) == 200 and len(fake.requests) == 3


def test_5xx_then_success_is_retried():
    sleeps: list[float] = []
    with FakeProvider(ohlcv_route(bars())) as fake:
        fake.fail_next(503, {"message": "busy"})
        src = source(fake, sleeps)
        batch = src.poll(None, NOW)
        src.close()
    assert len(sleeps) == 1 and len(batch.envelopes) == 200


def test_5xx_persisting_raises_unavailable():
    with FakeProvider(ohlcv_route(bars())) as fake:
        fake.fail_next(500, {"message": "down"}, times=3)
        src = source(fake)
        with pytest.raises(ProviderUnavailable):
            src.poll(None, NOW)
        src.close()
    assert len(fake.requests) == 3


def test_wrong_key_raises_auth_error_without_leaking_the_key():
    secret = "wrong-secret-key-123"
    with FakeProvider(ohlcv_route(bars())) as fake:
        src = source(fake, api_key=secret)
        with pytest.raises(ProviderAuthError) as info:
            src.poll(None, NOW)
        src.close()
    assert "401" in str(info.value) and secret not in str(info.value)
    assert len(fake.requests) == 1  # not retried


@pytest.mark.parametrize("body, content_type", [
    (HTML_ERROR_PAGE, "text/html"),
    ('[{"time_period_start": "2025-03-03T12:00:00.0000000Z", "price_op', "application/json"),
])
def test_html_or_truncated_json_raises_bad_response_with_raw(body, content_type):
    with FakeProvider(ohlcv_route(bars())) as fake:
        fake.fail_next(200, body, headers={"Content-Type": content_type})
        src = source(fake)
        with pytest.raises(ProviderBadResponse) as info:
            src.poll(None, NOW)
        src.close()
    assert info.value.raw == body


@pytest.mark.parametrize("body", [
    {"data": hourly_bars(END - timedelta(hours=2), 2)},  # wrapped in an object
    [{"start": "2025-03-10T10:00:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}],  # renamed
])
def test_a_changed_schema_raises_bad_response(body):
    with FakeProvider(ohlcv_route(bars())) as fake:
        fake.fail_next(200, body)
        src = source(fake)
        with pytest.raises(ProviderBadResponse) as info:
            src.poll(None, NOW)
        src.close()
    assert info.value.raw and ("data" in info.value.raw or "start" in info.value.raw)


def test_a_bad_record_is_rejected_with_a_reason_not_raised():
    data = bars()
    data[PAXG][10 * 24 - 5]["price_low"] = -1.0
    data[PAXG][10 * 24 - 4]["volume_traded"] = "lots"
    del data[PAXG][10 * 24 - 3]["price_open"]
    with FakeProvider(ohlcv_route(data)) as fake:
        src = source(fake, lookback_days=0, symbols={"paxg": PAXG})
        batch = src.poll({"last_period_start": {"paxg": (END - timedelta(hours=8)).isoformat()}},
                         NOW)
        src.close()
    assert len(batch.envelopes) == 7 - 3
    reasons = [r.reason for r in batch.rejects]
    assert len(reasons) == 3
    assert "low" in reasons[0] and "volume" in reasons[1] and "price_open" in reasons[2]
    assert batch.rejects[0].raw["price_low"] == -1.0
    assert all(r.startswith("coinapi ohlcv:") for r in reasons)


def test_transform_skips_the_open_hour_and_rejects_unusable_periods():
    records = hourly_bars(END - timedelta(hours=1), 2)
    records.append({"time_period_start": None})
    envelopes, rejects = transform_ohlcv(records, asset_id="paxg", window_end=END)
    assert [e.event_time for e in envelopes] == [END - timedelta(hours=1)]
    assert len(rejects) == 1 and rejects[0].raw == {"time_period_start": None}


def test_timeout_raises_unavailable():
    with FakeProvider(ohlcv_route(bars())) as fake:
        fake.fail_next(200, b"[]", headers={"Content-Type": "application/json"},
                       delay_s=1.5)
        src = source(fake, timeout_s=0.1, max_attempts=1)
        with pytest.raises(ProviderUnavailable, match="timeout"):
            src.poll(None, NOW)
        src.close()


# -- WebSocket -------------------------------------------------------------------------
def trades(n: int, symbol: str = PAXG, start: int = 1) -> list[dict]:
    return [trade(symbol, i, at=NOW + timedelta(seconds=i), price=2000.0 + i)
            for i in range(start, start + n)]


def stream(url: str, key: str = KEY, **options) -> CoinApiStream:
    return CoinApiStream(url, key, {PAXG: "paxg", XAUT: "xaut"},
                         options=FAST.model_copy(update=options), rng=random.Random(1))


def test_stream_sends_hello_and_maps_trades_to_ticks():
    messages = trades(2) + [trade("KRAKEN_SPOT_BTC_USD", 99, at=NOW, price=1.0)] + trades(
        1, XAUT, start=3)
    with FakeCoinApiWs(messages) as fake:
        s = stream(fake.url)
        s.start()
        got = collect(s, 3)
        s.close()
    assert fake.hellos[0] == {"type": "hello", "apikey": KEY, "heartbeat": False,
                              "subscribe_data_type": ["trade"],
                              "subscribe_filter_symbol_id": [f"{PAXG}$", f"{XAUT}$"]}
    assert [(e.kind, e.asset_id, e.payload["price"], e.payload["volume"]) for e in got] == [
        ("tick", "paxg", 2001.0, 0.5), ("tick", "paxg", 2002.0, 0.5),
        ("tick", "xaut", 2003.0, 0.5)]
    assert got[0].event_time == NOW + timedelta(seconds=1) and got[0].source == "coinapi"
    assert s.errors == {}


def test_stream_with_a_wrong_key_counts_auth_errors_and_backs_off():
    with FakeCoinApiWs(trades(3)) as fake:
        s = stream(fake.url, key="bad-key-456")
        s.start()
        wait_for(lambda: s.errors["auth"] >= 2)
        alive = s._thread.is_alive()
        s.close()
    assert alive and s.drain(10) == [] and fake.sent == 0
    assert s.connects >= 2 and s.errors["connection"] == 0
    assert not s._thread.is_alive()


def test_stream_reconnects_after_the_server_hangs_up_and_continues():
    with FakeCoinApiWs(trades(7), close_after=3) as fake:
        s = stream(fake.url)
        s.start()
        got = collect(s, 7)
        s.close()
    assert [e.payload["price"] for e in got] == [2001.0 + i for i in range(7)]
    assert s.connects >= 3 and len(fake.hellos) >= 3


def test_stream_honours_a_reconnect_request_at_once():
    with FakeCoinApiWs(trades(2) + [reconnect(NOW)] + trades(2, start=3)) as fake:
        s = stream(fake.url, backoff_base_s=30.0, backoff_max_s=30.0)
        s.start()
        got = collect(s, 4)  # a backoff of up to 30 s would miss the deadline
        s.close()
    assert [e.payload["price"] for e in got] == [2001.0, 2002.0, 2003.0, 2004.0]
    assert s.connects == 2 and s.errors == {}


def test_stream_reconnects_after_the_server_went_away():
    fake = FakeCoinApiWs(trades(1))
    url = fake.url
    with fake:
        pass  # closed: nothing listens on the port any more
    s = stream(url)
    s.start()
    wait_for(lambda: s.errors["connection"] >= 2)
    s.close()
    assert s.connects == 0


def test_stream_queue_is_bounded_and_keeps_the_newest():
    with FakeCoinApiWs(trades(5)) as fake:
        s = stream(fake.url, queue_size=2)
        s.start()
        wait_for(lambda: fake.sent == 5 and s.dropped == 3)
        got = s.drain(10)
        s.close()
    assert [e.payload["price"] for e in got] == [2004.0, 2005.0]


def test_a_bad_trade_becomes_a_reject():
    assets = {PAXG: "paxg"}
    bad_price = trade(PAXG, 1, at=NOW, price=-3.0)
    assert isinstance(transform_trade(bad_price, assets=assets), Reject)
    unknown = transform_trade(trade("X_SPOT_A_B", 1, at=NOW, price=1.0), assets=assets)
    assert isinstance(unknown, Reject) and "X_SPOT_A_B" in unknown.reason
    missing = transform_trade({"type": "trade", "symbol_id": PAXG}, assets=assets)
    assert isinstance(missing, Reject) and missing.reason.startswith("coinapi trade:")


def test_source_with_stream_adds_ticks_without_moving_the_cursor():
    with FakeProvider(ohlcv_route(bars())) as rest, FakeCoinApiWs(trades(4)) as ws:
        src = CoinApiSource(settings(rest.url, stream=True, ws_url=ws.url), assets=ASSETS,
                            sleep=lambda s: None, stream_options=FAST)
        first = src.poll(None, NOW)
        second = src.poll(first.cursor, NOW)
        cursor = second.cursor
        ticks = [e for b in (first, second) for e in b.envelopes if e.kind == "tick"]

        def poll_ticks() -> bool:
            batch = src.poll(cursor, NOW)
            assert batch.cursor == cursor and all(e.kind == "tick" for e in batch.envelopes)
            ticks.extend(batch.envelopes)
            return len(ticks) >= 4

        wait_for(poll_ticks)
        src.close()
    assert [e.payload["price"] for e in ticks] == [2001.0, 2002.0, 2003.0, 2004.0]
    assert ws.hellos[0]["apikey"] == KEY
    assert len(rest.requests) == 4  # ticks never triggered REST requests of their own
