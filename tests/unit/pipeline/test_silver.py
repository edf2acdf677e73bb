"""The silver rules on a local Spark session (the same functions run under RayDP)."""

from __future__ import annotations

import json
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
