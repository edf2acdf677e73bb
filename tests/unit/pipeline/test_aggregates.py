"""Gold aggregations of silver on a local Spark session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline import aggregates, silver

DAY = datetime(2026, 5, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    from rwa.embedded import find_java_home, use_java

    use_java(find_java_home())
    session = (SparkSession.builder.master("local[1]").appName("gold-aggregates")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    yield session
    session.stop()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


PRICES = ("source string, kind string, asset_id string, event_time timestamp, open double, "
          "high double, low double, close double, volume double, interval string, outlier boolean")


def _tick(minutes: float, price: float, volume: float = 1.0, *, asset: str = "paxg",
          outlier: bool = False) -> tuple:
    return ("sim", "tick", asset, DAY + timedelta(minutes=minutes), price, price, price, price,
            volume, None, outlier)


def test_bars_at_each_interval(spark) -> None:
    rows = [
        _tick(0.5, 100.0), _tick(0.2, 101.0), _tick(0.9, 99.0),  # minute 0
        _tick(1.1, 102.0, 2.0),                                    # minute 1
        _tick(1.5, 500.0, 9.0, outlier=True),                      # a flagged print
        _tick(61, 103.0),                                          # hour 1
        _tick(24 * 60 + 5, 90.0, asset="buidl"),                   # the next day
        # An hourly bar of hour 2: fits 1 h and 1 d bars, not 1 m ones.
        ("sim", "bar", "paxg", DAY + timedelta(hours=2), 103.0, 110.0, 98.0, 104.0, 5.0, "1h", False),
    ]
    frame = spark.createDataFrame(rows, schema=PRICES)

    def bars(interval):
        return {(r["asset_id"], _utc(r["time"])): tuple(r[c] for c in aggregates.BAR_COLUMNS[2:])
                for r in aggregates.bars(frame, interval).collect()}

    assert bars("1m") == {
        ("paxg", DAY): (101.0, 101.0, 99.0, 99.0, 3.0),
        ("paxg", DAY + timedelta(minutes=1)): (102.0, 102.0, 102.0, 102.0, 2.0),
        ("paxg", DAY + timedelta(minutes=61)): (103.0, 103.0, 103.0, 103.0, 1.0),
        ("buidl", DAY + timedelta(days=1, minutes=5)): (90.0, 90.0, 90.0, 90.0, 1.0),
    }
    hourly = bars("1h")
    assert hourly[("paxg", DAY)] == (101.0, 102.0, 99.0, 102.0, 5.0)
    assert hourly[("paxg", DAY + timedelta(hours=2))] == (103.0, 110.0, 98.0, 104.0, 5.0)
    assert len(hourly) == 4
    assert bars("1d") == {("paxg", DAY): (101.0, 110.0, 98.0, 104.0, 11.0),
                          ("buidl", DAY + timedelta(days=1)): (90.0, 90.0, 90.0, 90.0, 1.0)}
    with pytest.raises(ValueError, match="interval"):
        aggregates.bars(frame, "5m")  # type: ignore[arg-type]


def test_hourly_bars_read_silver_written_before_the_outlier_flag(spark) -> None:
    old = spark.createDataFrame([r[:9] for r in [_tick(1, 10.0), _tick(2, 12.0)]],
                                schema=PRICES.rsplit(", interval", 1)[0])
    (bar,) = silver.hourly_bars(old).collect()
    assert (bar["open"], bar["close"], bar["volume"]) == (10.0, 12.0, 2.0)


ONCHAIN = ("source string, asset_id string, event_time timestamp, holder_count long, "
           "transfer_count long, transfer_volume double, dex_liquidity double, "
           "exchange_inflow double, exchange_outflow double, tvl_usd double, nav double, "
           "apy double, chain string, outlier boolean")


def _onchain(source: str, hours: float, *, chain: str = "ethereum", outlier: bool = False,
             **metrics) -> tuple:
    columns = ONCHAIN.split(", ")[3:12]
    return (source, "paxg", DAY + timedelta(hours=hours),
            *[metrics.get(c.split()[0]) for c in columns], chain, outlier)


def test_onchain_daily_levels_last_flows_by_window_kind(spark) -> None:
    rows = [
        # The simulator: trailing-24 h flows, the day's last figure is the day's flow.
        _onchain("simulated-onchain", 0, holder_count=100, transfer_volume=5.0, nav=1.00, apy=4.0),
        _onchain("simulated-onchain", 12, holder_count=110, transfer_volume=7.0, nav=1.01),
        _onchain("simulated-onchain", 18, holder_count=9999, transfer_volume=1e9, outlier=True),
        # Stamped at the next midnight: it closes this day's flows, opens the next's levels.
        _onchain("simulated-onchain", 24, holder_count=120, transfer_volume=8.0),
        # An indexer with hourly windows: its flows add up; holders per chain add up.
        _onchain("bitquery", 1, transfer_count=3, transfer_volume=1.0, exchange_inflow=2.0,
                 holder_count=50),
        _onchain("bitquery", 2, transfer_count=4, transfer_volume=2.0, exchange_inflow=3.0,
                 holder_count=60),
        _onchain("bitquery", 2, chain="polygon", transfer_count=1, transfer_volume=0.5,
                 holder_count=70),
    ]
    day = {_utc(r["time"]): r for r in aggregates.onchain_daily(
        spark.createDataFrame(rows, schema=ONCHAIN)).collect()}
    first, second = day[DAY], day[DAY + timedelta(days=1)]
    assert list(first.asDict()) == aggregates.ONCHAIN_COLUMNS
    assert first["holder_count"] == 130  # bitquery's 60 + 70 across chains beats the 110
    assert first["transfer_volume"] == 8.0  # the simulator's figure at midnight beats 2.5
    assert first["transfer_count"] == 8 and first["exchange_inflow"] == 5.0  # 3 + 4 + 1 on polygon
    assert (first["nav"], first["apy"], first["chain"]) == (1.01, 4.0, "ethereum")
    assert second["holder_count"] == 120 and second["transfer_volume"] is None


def test_onchain_metric_lists_agree() -> None:
    assert {*aggregates.ADDITIVE_LEVELS, *aggregates.ASSET_LEVELS, *aggregates.FLOWS} == set(
        silver.ONCHAIN_METRICS)


NEWS = ("source string, asset_id string, event_time timestamp, title string, url string, "
        "assets array<string>")


def test_news_counts_per_asset_hour_and_source(spark) -> None:
    rows = [
        ("wire", "buidl", DAY + timedelta(minutes=5), "BUIDL grows", "u1", ["buidl", "ondo"]),
        ("wire", None, DAY + timedelta(minutes=9), "Funds", None, ["buidl"]),
        ("wire", None, DAY + timedelta(minutes=30), "Funds", None, ["buidl"]),  # same story
        ("wire", None, DAY + timedelta(minutes=70), "Later", "u3", ["buidl"]),
        ("other", None, DAY + timedelta(minutes=10), "Elsewhere", "u4", ["buidl", "ghost"]),
    ]
    counts = aggregates.news_hourly(spark.createDataFrame(rows, schema=NEWS),
                                    known_asset_ids=["buidl", "ondo"])
    assert counts.columns == aggregates.SENTIMENT_COLUMNS
    got = {(r["asset_id"], _utc(r["time"]).hour, r["source"]): r["article_count"]
           for r in counts.collect()}
    assert got == {("buidl", 0, "wire"): 2, ("ondo", 0, "wire"): 1, ("buidl", 1, "wire"): 1,
                   ("buidl", 0, "other"): 1}
    assert {r["sentiment_score"] for r in counts.collect()} == {None}


def test_macro_series_take_the_latest_revision(spark) -> None:
    schema = ("source string, series string, event_time timestamp, value double, unit string, "
              "country string, frequency string, ingest_time timestamp")
    t = datetime(1959, 3, 31, tzinfo=UTC)
    rows = [("statsmodels", "US.CPI", t, 28.98, "index", "US", "Q", DAY),
            ("fred", "US.CPI", t, 29.01, "index", "US", "Q", DAY + timedelta(days=1)),
            ("fred", "US.M1", t, 139.7, "bn USD", "US", "Q", DAY)]
    got = aggregates.macro_series(spark.createDataFrame(rows, schema=schema))
    assert got.columns == aggregates.MACRO_COLUMNS
    assert sorted((r["series"], r["value"], r["source"]) for r in got.collect()) == [
        ("US.CPI", 29.01, "fred"), ("US.M1", 139.7, "fred")]
