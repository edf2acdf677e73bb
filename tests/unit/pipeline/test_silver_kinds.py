"""Silver rules of on-chain, macro and news rows, natural keys, and asset-id enrichment,
on a local Spark session."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pipeline import silver

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KNOWN = ["paxg", "buidl"]
BRONZE = ("source string, kind string, asset_id string, event_time timestamp, "
          "ingest_time timestamp, payload string")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    from rwa.embedded import find_java_home, use_java

    use_java(find_java_home())
    session = (SparkSession.builder.master("local[1]").appName("silver-kinds")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    yield session
    session.stop()


def _row(kind: str, asset: str | None, hour: int, *, source: str = "simulated",
         ingest: int = 0, raw: str | None = None, **payload) -> dict:
    return {"source": source, "kind": kind, "asset_id": asset,
            "event_time": NOW - timedelta(days=2) + timedelta(hours=hour),
            "ingest_time": NOW + timedelta(seconds=ingest),
            "payload": raw if raw is not None else json.dumps(payload)}


def _frame(spark, rows: list[dict]):
    return spark.createDataFrame(rows, schema=BRONZE)


def _at(row: dict, when: datetime) -> dict:
    return row | {"event_time": when}


def _rules(validated, label: str) -> dict[str, str | None]:
    """``label`` field of each row's payload → its rule."""
    return {json.loads(r["payload"]).get(label) or r["asset_id"]: r["rule"]
            for r in validated.collect()}


def test_natural_keys() -> None:
    assert silver.natural_key("bar") == silver.natural_key("tick") == silver.NATURAL_KEY
    assert silver.natural_key("onchain") == ["source", "kind", "asset_id", "chain", "event_time"]
    assert silver.natural_key("macro") == ["source", "kind", "series", "event_time"]
    assert silver.natural_key("news") == ["source", "kind", "story", "event_time"]
    with pytest.raises(ValueError, match="no natural key"):
        silver.natural_key("weather")


# -- on-chain ---------------------------------------------------------------------------

def _onchain(spark, rows, **options):
    return silver.validate_onchain(silver.parse_onchain(_frame(spark, rows)), KNOWN, NOW, **options)


def test_each_onchain_rule_is_named(spark) -> None:
    good = {"holder_count": 1200, "transfer_volume": 5e5, "transfer_count": 40,
            "dex_liquidity": 1e6, "exchange_inflow": 1e4, "exchange_outflow": 2e4, "nav": 1.0,
            "apy": 4.5, "tvl_usd": 5e8, "chain": "ethereum"}
    cases = [
        (None, _row("onchain", "buidl", 1, **good)),
        ("unknown_asset", _row("onchain", "ghost", 2, holder_count=10)),
        ("empty_metrics", _row("onchain", "buidl", 3, chain="ethereum")),
        ("negative_metric", _row("onchain", "buidl", 4, exchange_outflow=-1.0)),
        ("negative_metric", _row("onchain", "buidl", 5, raw='{"transfer_volume": NaN}')),
        ("nav_non_positive", _row("onchain", "buidl", 6, nav=0.0)),
        ("apy_out_of_range", _row("onchain", "buidl", 7, apy=1500.0)),
        ("apy_out_of_range", _row("onchain", "buidl", 8, apy=-100.5)),
        (None, _row("onchain", "paxg", 9, apy=-2.0)),  # a negative yield is a yield
        ("future_timestamp", _at(_row("onchain", "buidl", 0, tvl_usd=1.0), NOW + timedelta(hours=1))),
        ("too_old", _at(_row("onchain", "buidl", 0, tvl_usd=2.0), datetime(1999, 12, 31, tzinfo=UTC))),
    ]
    validated = _onchain(spark, [row for _, row in cases])
    got = {r["event_time"].replace(tzinfo=UTC): r["rule"] for r in validated.collect()}
    assert got == {row["event_time"]: rule for rule, row in cases}
    assert {r["rule"] for r in silver.rejected(validated).collect()} < set(silver.RULES["onchain"])


def test_holder_count_jumps_are_flagged_and_growth_is_not(spark) -> None:
    counts = [1000 + 3 * i for i in range(20)]
    counts[9] = 50_000
    rows = [_row("onchain", "paxg", i, holder_count=c, chain="ethereum")
            for i, c in enumerate(counts)]
    # A fast-growing token on another chain is a series of its own and not an outlier.
    rows += [_row("onchain", "paxg", i, holder_count=100 * 2 ** i, chain="solana")
             for i in range(10)]
    validated = _onchain(spark, rows).cache()
    flagged = [(r["chain"], r["holder_count"], r["rule"], r["outlier"])
               for r in validated.collect() if r["rule"]]
    assert flagged == [("ethereum", 50_000, "onchain_outlier", True)]
    stored = silver.to_silver(validated, dataset="onchain")
    assert stored.columns == silver.COLUMNS["onchain"]
    assert dict(stored.groupBy("outlier").count().collect()) == {True: 1, False: 29}
    assert dict(stored.dtypes)["holder_count"] == "bigint"


def test_onchain_replays_collapse_and_the_first_ingested_wins(spark) -> None:
    first = _row("onchain", "paxg", 1, ingest=0, holder_count=10)
    replay = _row("onchain", "paxg", 1, ingest=5, holder_count=11)
    other_source = _row("onchain", "paxg", 1, source="rwaio", holder_count=12)
    other_chain = _row("onchain", "paxg", 1, holder_count=13, chain="polygon")
    rows = [replay, first, other_source, other_chain]
    batch = silver.to_silver(_onchain(spark, rows), dataset="onchain")
    assert sorted(r["holder_count"] for r in batch.collect()) == [10, 12, 13]
    # A null chain is a key part like any other: the stored row is not new again.
    existing = silver.to_silver(_onchain(spark, [first]), dataset="onchain")
    fresh = silver.new_rows(batch, existing, dataset="onchain").collect()
    assert sorted(r["holder_count"] for r in fresh) == [12, 13]


# -- macro ------------------------------------------------------------------------------

def _macro(spark, rows):
    return silver.validate_macro(silver.parse_macro(_frame(spark, rows)), NOW)


def test_each_macro_rule_is_named(spark) -> None:
    rows = [
        _at(_row("macro", None, 0, series="US.CPI", value=28.98, unit="index", country="US",
                 frequency="Q"), datetime(1959, 3, 31, tzinfo=UTC)),
        _row("macro", None, 1, series="  ", value=1.0),
        _row("macro", None, 2, raw='{"value": 1.0}'),
        _row("macro", None, 3, raw='{"series": "US.NAN", "value": NaN}'),
        _row("macro", None, 4, raw='{"series": "US.INF", "value": -Infinity}'),
        _row("macro", None, 5, raw='{"series": "US.NULL", "value": null}'),
        _at(_row("macro", None, 0, series="US.NEXT", value=1.0), NOW + timedelta(minutes=10)),
        _at(_row("macro", None, 0, series="US.SOON", value=1.0), NOW + timedelta(minutes=4)),
        _at(_row("macro", None, 0, series="US.OLD", value=1.0), datetime(1899, 12, 31, tzinfo=UTC)),
    ]
    validated = _macro(spark, rows)
    got = {r["series"] or f"#{r['event_time'].hour}": r["rule"] for r in validated.collect()}
    assert got == {"US.CPI": None, "#13": "missing_series", "#14": "missing_series",
                   "US.NAN": "non_finite_value", "US.INF": "non_finite_value",
                   "US.NULL": "non_finite_value", "US.NEXT": "future_timestamp",
                   "US.SOON": None, "US.OLD": "too_old"}
    assert {r["rule"] for r in silver.rejected(validated).collect()} == {
        "missing_series", "non_finite_value", "future_timestamp", "too_old"}


def test_macro_rows_are_keyed_by_series(spark) -> None:
    rows = [_row("macro", None, 1, series="US.CPI", value=1.0),
            _row("macro", None, 1, series="US.CPI", value=1.0, ingest=9),
            _row("macro", None, 1, series="US.M1", value=2.0)]
    batch = silver.to_silver(_macro(spark, rows), dataset="macro")
    assert batch.columns == silver.COLUMNS["macro"]
    assert sorted(r["series"] for r in batch.collect()) == ["US.CPI", "US.M1"]
    existing = silver.to_silver(_macro(spark, rows[:1]), dataset="macro")
    fresh = silver.new_rows(batch, existing, dataset="macro").collect()
    assert [r["series"] for r in fresh] == ["US.M1"]


# -- news -------------------------------------------------------------------------------

def _news(spark, rows):
    return silver.validate_news(silver.parse_news(_frame(spark, rows)), KNOWN, NOW)


def test_each_news_rule_is_named(spark) -> None:
    rows = [
        _row("news", "buidl", 1, title="BUIDL crosses $2bn", assets=["buidl"], issuers=["BlackRock"]),
        _row("news", None, 2, title="Tokenized funds grow"),
        _row("news", None, 3, title=" ", url="https://x.test/blank"),
        _row("news", "ghost", 4, title="Ghost token"),
        _at(_row("news", None, 0, title="From tomorrow"), NOW + timedelta(days=1)),
        _at(_row("news", None, 0, title="From the past"), datetime(1999, 1, 1, tzinfo=UTC)),
    ]
    got = {r["title"]: r["rule"] for r in _news(spark, rows).collect()}
    assert got == {"BUIDL crosses $2bn": None, "Tokenized funds grow": None, " ": "empty_title",
                   "Ghost token": "unknown_asset", "From tomorrow": "future_timestamp",
                   "From the past": "too_old"}


def test_news_is_keyed_by_url_or_title(spark) -> None:
    rows = [
        _row("news", None, 1, title="A", url="https://x.test/1"),
        _row("news", None, 1, title="A, edited", url="https://x.test/1", ingest=3),
        _row("news", None, 1, title="B"),
        _row("news", None, 1, title="B", body="again", ingest=3),
        _row("news", None, 1, title="B", source="newsapiai"),
    ]
    batch = silver.to_silver(_news(spark, rows), dataset="news")
    assert batch.columns == silver.COLUMNS["news"]
    got = sorted((r["source"], r["title"], r["body"]) for r in batch.collect())
    assert got == [("newsapiai", "B", None), ("simulated", "A", None), ("simulated", "B", None)]
    one = batch.where("title = 'B'").collect()[0]
    assert (one["assets"], one["issuers"], one["lang"]) == ([], [], "en")
    existing = silver.to_silver(_news(spark, rows[:1]), dataset="news")
    assert silver.new_rows(batch, existing, dataset="news").count() == 2


# -- enrichment -------------------------------------------------------------------------

def test_asset_ids_come_from_contract_then_symbol(spark) -> None:
    from core.domain import Asset

    def asset(asset_id, symbol, chain, contract):
        return Asset(asset_id=asset_id, symbol=symbol, name=asset_id, issuer="i",
                     asset_class="gold", blockchain_network=chain, chains=[chain],
                     contract_address=contract, reference_price=1.0, description="")

    mapping = silver.asset_mapping(spark, [
        asset("paxg", "PAXG", "ethereum", "0x45804880De22913dAFE09f4980848ECE6EcbAf78"),
        asset("xaut", "XAUt", "ethereum", "0x68749665FF8D2d112Fa859AA293F07A622782F38"),
        asset("usdy", "USDY", "solana", "A1KLoBrKBde8Ty9qtNQUtq3C2ortoC3u7twggz7sEto6"),
    ])
    rows = [
        _row("news", None, 1, symbol="paxg"),
        _row("news", None, 2, chain="Ethereum", contract_address="0x68749665ff8d2d112fa859aa293f07a622782f38"),
        _row("news", None, 3, address="0x68749665FF8D2D112FA859AA293F07A622782F38", symbol="PAXG"),
        _row("news", None, 4, chain="solana", address="A1KLoBrKBde8Ty9qtNQUtq3C2ortoC3u7twggz7sEto6"),
        _row("news", None, 5, chain="solana", address="a1klobrkbde8ty9qtnqutq3c2ortoc3u7twggz7seto6"),
        _row("news", None, 6, chain="polygon", contract_address="0x45804880De22913dAFE09f4980848ECE6EcbAf78"),
        _row("news", "buidl", 7, symbol="PAXG"),
        _row("news", None, 8, title="no reference"),
    ]
    got = {r["event_time"].hour: r["asset_id"]
           for r in silver.resolve_asset_ids(_frame(spark, rows), mapping).collect()}
    # Solana addresses are case-sensitive; a contract on another chain is no match.
    assert got == {13: "paxg", 14: "xaut", 15: "xaut", 16: "usdy", 17: None, 18: None,
                   19: "buidl", 20: None}
