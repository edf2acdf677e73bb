"""The silver rules on a local Spark session (the same functions run under RayDP)."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from pipeline import silver

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KNOWN = ["paxg", "buidl"]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    from rwa.embedded import find_java_home, use_java

    use_java(find_java_home())
    session = (SparkSession.builder.master("local[1]").appName("silver-rules")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    yield session
    session.stop()


def _row(kind: str, asset: str, minute: int, source: str = "simulated", **payload) -> dict:
    return {"source": source, "kind": kind, "asset_id": asset,
            "event_time": NOW - timedelta(hours=1) + timedelta(minutes=minute),
            "ingest_time": NOW, "payload": json.dumps(payload)}


def _frame(spark, rows: list[dict]):
    return spark.createDataFrame(rows, schema="source string, kind string, asset_id string, "
                                 "event_time timestamp, ingest_time timestamp, payload string")


def _validated(spark, rows):
    return silver.validate_prices(silver.parse_prices(_frame(spark, rows)), KNOWN, NOW)


def test_each_broken_rule_is_named(spark) -> None:
    rows = [
        _row("tick", "paxg", 1, price=2650.0, volume=1.0),
        _row("tick", "ghost", 2, price=1.0, volume=1.0),
        _row("tick", "paxg", 3, price=0.0, volume=1.0),
        _row("bar", "paxg", 4, open=10.0, high=9.0, low=8.0, close=9.5, volume=1.0),
        _row("tick", "paxg", 5, price=5.0, volume=-2.0),
        _row("bar", "paxg", 6, open=10.0, close=11.0, volume=1.0),
    ]
    future = _row("tick", "paxg", 0, price=1.0, volume=1.0) | {"event_time": NOW + timedelta(days=1)}
    ancient = _row("tick", "paxg", 0, price=1.0, volume=1.0) | {"event_time": datetime(1990, 1, 1, tzinfo=UTC)}
    got = {(r["asset_id"], r["event_time"].replace(tzinfo=UTC) if r["event_time"] else None): r["rule"]
           for r in _validated(spark, [*rows, future, ancient]).collect()}
    assert sorted(got.values(), key=str) == sorted(
        [None, "unknown_asset", "non_positive_price", "ohlc_inconsistent", "negative_volume",
         "missing_price", "future_timestamp", "too_old"], key=str)
    rejected = silver.rejected(_validated(spark, rows)).collect()
    assert {r["rule"] for r in rejected} == {"unknown_asset", "non_positive_price",
                                            "ohlc_inconsistent", "negative_volume", "missing_price"}
    assert all(json.loads(r["record"])["payload"] for r in rejected)


def test_the_future_starts_five_minutes_past_the_clock_read_to_the_minute(spark) -> None:
    # The clock is rounded up to the minute so that batches within a minute share
    # Spark's generated code: 12:00:20 reads as 12:01, the limit is 12:06.
    now = NOW + timedelta(seconds=20)
    ahead = {s: _row("tick", "paxg", 0, price=1.0, volume=1.0) | {
        "event_time": NOW + timedelta(seconds=s)} for s in (300, 359, 361, 3600)}
    rules = {r["event_time"].replace(tzinfo=UTC): r["rule"] for r in silver.validate_prices(
        silver.parse_prices(_frame(spark, list(ahead.values()))), KNOWN, now).collect()}
    assert [rules[NOW + timedelta(seconds=s)] for s in ahead] == [
        None, None, "future_timestamp", "future_timestamp"]
    assert silver._clock(NOW) == NOW
    assert silver._clock(NOW + timedelta(microseconds=1)) == NOW + timedelta(minutes=1)


def test_replays_collapse_to_one_row_per_natural_key(spark) -> None:
    tick = _row("tick", "paxg", 1, price=2650.0, volume=1.0)
    batch = silver.to_silver(_validated(spark, [tick, tick, tick, _row("tick", "paxg", 2, price=2651.0, volume=1.0)]))
    assert batch.count() == 2
    existing = silver.to_silver(_validated(spark, [tick]))
    fresh = silver.new_rows(batch, existing).collect()
    assert [r["close"] for r in fresh] == [2651.0]


def test_hourly_bars_take_first_open_last_close_and_extremes(spark) -> None:
    rows = [
        _row("tick", "paxg", 50, price=103.0, volume=1.0),
        _row("tick", "paxg", 5, price=100.0, volume=2.0),
        _row("tick", "paxg", 20, price=110.0, volume=0.5),
        _row("tick", "paxg", 40, price=95.0, volume=1.5),
        _row("tick", "buidl", 5, price=1.0, volume=10.0),
    ]
    bars = {r["asset_id"]: r for r in silver.hourly_bars(silver.to_silver(_validated(spark, rows))).collect()}
    paxg = bars["paxg"]
    assert (paxg["open"], paxg["high"], paxg["low"], paxg["close"], paxg["volume"]) == (100.0, 110.0, 95.0, 103.0, 5.0)
    assert paxg["time"].replace(tzinfo=UTC) == (NOW - timedelta(hours=1)).replace(minute=0)
    assert bars["buidl"]["volume"] == 10.0


def _walk(asset: str, n: int, *, seed: int, step: float = 0.003, start: float = 100.0) -> list[dict]:
    """``n`` ticks a minute apart: a random walk with ``step`` log volatility per tick."""
    rng = random.Random(seed)
    price, rows = start, []
    for i in range(n):
        price *= math.exp(rng.gauss(0.0, step))
        rows.append(_row("tick", asset, i, price=price, volume=1.0))
    return rows


def _rules_by_minute(validated) -> dict[int, str | None]:
    start = NOW - timedelta(hours=1)
    return {int((r["event_time"].replace(tzinfo=UTC) - start).total_seconds() // 60): r["rule"]
            for r in validated.collect()}


def test_a_spike_is_flagged_kept_in_silver_quarantined_and_left_out_of_bars(spark) -> None:
    rows = _walk("paxg", 30, seed=1)
    spike = json.loads(rows[12]["payload"])["price"] * 10
    rows[12] = _row("tick", "paxg", 12, price=spike, volume=1.0)
    parsed = silver.parse_prices(_frame(spark, rows))
    validated = silver.validate_prices(parsed, KNOWN, NOW).cache()
    got = _rules_by_minute(validated)
    assert {m for m, rule in got.items() if rule} == {12}
    assert got[12] == "price_outlier"

    stored = {r["close"]: r["outlier"] for r in silver.to_silver(validated).collect()}
    assert len(stored) == 30 and stored[spike] is True and sum(stored.values()) == 1
    quarantined = silver.rejected(validated, parsed).collect()
    assert [r["rule"] for r in quarantined] == ["price_outlier"]
    # Its raw payload, left behind during the windows, is found again for the record.
    assert json.loads(json.loads(quarantined[0]["record"])["payload"]) == {
        "price": spike, "volume": 1.0}
    bar = silver.hourly_bars(silver.to_silver(validated)).collect()[0]
    assert bar["high"] < spike / 5


def test_ordinary_moves_and_a_lasting_level_shift_are_not_outliers(spark) -> None:
    calm = _walk("paxg", 40, seed=2)  # 0.3 % a tick, fat moves included by chance
    impaired = _walk("buidl", 30, seed=3, step=0.0005)
    for i in range(15, 30):  # a 6 % impairment at minute 15 that lasts
        price = json.loads(impaired[i]["payload"])["price"] * 0.94
        impaired[i] = _row("tick", "buidl", i, price=price, volume=1.0)
    assert all(r["rule"] is None for r in _validated(spark, [*calm, *impaired]).collect())


def test_context_rows_are_neighbours_only(spark) -> None:
    history = silver.to_silver(_validated(spark, _walk("paxg", 10, seed=4)))
    late = [_row("tick", "paxg", 20, price=1000.0, volume=1.0)]
    alone = _validated(spark, late).collect()
    assert [r["rule"] for r in alone] == [None]  # nothing to compare with
    parsed = silver.parse_prices(_frame(spark, late))
    with_context = silver.validate_prices(parsed, KNOWN, NOW, context=history).collect()
    assert [(r["rule"], r["outlier"]) for r in with_context] == [("price_outlier", True)]


def test_prices_in_other_currencies_become_usd_and_nav_stays_apart(spark) -> None:
    rows = [
        _row("tick", "paxg", 1, price=2000.0, volume=1.0, currency="EUR"),
        _row("tick", "paxg", 2, price=2000.0, volume=1.0, currency="GBP"),
        _row("tick", "buidl", 3, price=1.01, volume=1.0, nav=1.0, currency="usdc"),
        _row("bar", "paxg", 4, open=1.0, high=1.0, low=1.0, close=1.0, volume=0.0, interval="1d"),
    ]
    parsed = silver.parse_prices(_frame(spark, rows), rates={"USD": 1.0, "USDC": 1.0, "EUR": 1.1})
    eur, gbp, usdc, daily = sorted(silver.validate_prices(parsed, KNOWN, NOW).collect(),
                                   key=lambda r: r["event_time"])
    assert eur["close"] == pytest.approx(2200.0) and eur["rule"] is None
    assert gbp["rule"] == "unknown_currency"
    assert usdc["nav"] == 1.0 and usdc["close"] == 1.01
    assert usdc["premium_to_nav"] == pytest.approx(0.01) and eur["premium_to_nav"] is None
    assert (daily["interval"], eur["interval"]) == ("1d", None)
    # The default rates know USD and the dollar stablecoins only.
    default = silver.validate_prices(silver.parse_prices(_frame(spark, rows[:1])), KNOWN, NOW)
    assert [r["rule"] for r in default.collect()] == ["unknown_currency"]


def test_price_silver_shape(spark) -> None:
    batch = silver.to_silver(_validated(spark, [_row("tick", "paxg", 1, price=1.0, volume=1.0)]))
    assert batch.columns == silver.COLUMNS["prices"]
    assert set(silver.SILVER_COLUMNS) < set(batch.columns)


# Payloads the sink may meet: plain ones it types, and ones it leaves to the JSON parser.
_PAYLOADS = [
    ("tick", {"price": 2650.0, "volume": 1.0}),
    ("tick", {"price": 2650, "volume": 2}),  # integers
    ("tick", {"price": 2650.5}),  # no volume
    ("tick", {"price": 1.0, "volume": None, "nav": 1.01, "currency": "EUR"}),
    ("bar", {"open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5, "volume": 3.0,
             "interval": "1d", "extra": [1, 2]}),
    ("bar", {"open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5, "interval": 5}),
    ("tick", {"price": True, "volume": 1.0}),
    ("tick", {"price": "2650.5", "volume": 1.0}),
    ("tick", {"price": float("nan"), "volume": 1.0}),
    ("tick", {"price": 2650.0, "volume": float("inf")}),
    ("tick", {"price": 10**30, "volume": 1.0}),
    ("tick", {"price": 2**53 + 1, "volume": 1.0}),
    ("tick", {}),
]


def test_typed_price_fields_parse_exactly_like_the_json(spark) -> None:
    from pipeline.bronze import price_fields, payload_text
    from pipeline.streaming import BRONZE_DDL

    rows = []
    for i, (kind, payload) in enumerate(_PAYLOADS):
        rows.append({"topic": "price-data-raw", "partition": 0, "offset": i, "key": "paxg",
                     "source": "simulated", "kind": kind, "asset_id": "paxg",
                     "event_time": NOW - timedelta(minutes=60 - i), "ingest_time": NOW,
                     "schema_version": 1, "payload": payload_text(payload),
                     "price_fields": price_fields(kind, payload)})
    typed = [r for r in rows if r["price_fields"] is not None]
    assert 5 <= len(typed) < len(rows)  # both paths are exercised
    with_fields = spark.createDataFrame(rows, schema=BRONZE_DDL)
    json_only = with_fields.drop("price_fields")
    assert "price_fields" not in json_only.columns

    def parsed(frame):
        out = silver.parse_prices(frame).orderBy("event_time").collect()
        # NaN != NaN: compare rows with NaN spelled out.
        return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in r.asDict().items()} for r in out]

    assert parsed(with_fields) == parsed(json_only)
    rules = silver.validate_prices(silver.parse_prices(with_fields), KNOWN, NOW)
    assert [r["rule"] for r in rules.orderBy("event_time").collect()] == [
        r["rule"] for r in silver.validate_prices(silver.parse_prices(json_only), KNOWN, NOW)
        .orderBy("event_time").collect()]


def test_silver_reads_the_typed_fields_where_the_sink_filled_them(spark) -> None:
    from pipeline.bronze import price_fields
    from pipeline.streaming import BRONZE_DDL

    row = {"topic": "price-data-raw", "partition": 0, "offset": 0, "key": "paxg",
           "source": "simulated", "kind": "tick", "asset_id": "paxg", "event_time": NOW,
           "ingest_time": NOW, "schema_version": 1, "payload": '{"price": 2650.0}',
           # Never disagrees with the payload in bronze; here it does, to show which is read.
           "price_fields": price_fields("tick", {"price": 7.0})}
    got = silver.parse_prices(spark.createDataFrame([row], schema=BRONZE_DDL)).collect()
    assert got[0]["close"] == 7.0
