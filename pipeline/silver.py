"""Silver for prices, as Spark ``DataFrame -> DataFrame`` rules.

Bronze rows carry the envelope with its payload as JSON text; silver rows are one
validated, deduplicated observation each, with ticks normalised to one-point bars so
that bars and ticks aggregate alike in gold. Rejected rows keep the rule that failed.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

#: The natural key: replays and at-least-once delivery collapse onto it.
NATURAL_KEY = ["source", "kind", "asset_id", "event_time"]

PAYLOAD_SCHEMA = T.StructType(
    [
        T.StructField("open", T.DoubleType()),
        T.StructField("high", T.DoubleType()),
        T.StructField("low", T.DoubleType()),
        T.StructField("close", T.DoubleType()),
        T.StructField("price", T.DoubleType()),
        T.StructField("volume", T.DoubleType()),
        T.StructField("nav", T.DoubleType()),
        T.StructField("interval", T.StringType()),
    ]
)

SILVER_COLUMNS = [
    "source", "kind", "asset_id", "event_time", "open", "high", "low", "close", "volume",
    "nav", "ingest_time", "date",
]

#: Oldest event time accepted; anything earlier is a broken clock, not history.
OLDEST_EVENT = "2000-01-01 00:00:00"


def parse_prices(bronze: DataFrame) -> DataFrame:
    """Bronze price rows → flat price rows (ticks become one-point bars)."""
    p = F.from_json(F.col("payload"), PAYLOAD_SCHEMA)
    tick = F.col("kind") == "tick"
    return bronze.select(
        "source", "kind", "asset_id", "event_time", "ingest_time", "payload",
        F.when(tick, p["price"]).otherwise(p["open"]).alias("open"),
        F.when(tick, p["price"]).otherwise(p["high"]).alias("high"),
        F.when(tick, p["price"]).otherwise(p["low"]).alias("low"),
        F.when(tick, p["price"]).otherwise(p["close"]).alias("close"),
        F.coalesce(p["volume"], F.lit(0.0)).alias("volume"),
        p["nav"].alias("nav"),
    )


def _rules(known_assets: Column, now: datetime) -> list[tuple[str, Column]]:
    """(rule name, condition that breaks it), checked in this order."""
    prices = [F.col(c) for c in ("open", "high", "low", "close")]
    return [
        ("unknown_asset", ~known_assets),
        ("missing_price", F.greatest(*[c.isNull().cast("int") for c in prices]) == 1),
        ("non_positive_price", F.least(*prices) <= 0),
        ("ohlc_inconsistent",
         (F.col("low") > F.least("open", "close")) | (F.col("high") < F.greatest("open", "close"))),
        ("negative_volume", F.col("volume") < 0),
        ("future_timestamp", F.col("event_time") > F.lit(now).cast("timestamp") + F.expr("INTERVAL 5 MINUTES")),
        ("too_old", F.col("event_time") < F.lit(OLDEST_EVENT).cast("timestamp")),
    ]


def validate_prices(parsed: DataFrame, known_asset_ids: list[str], now: datetime) -> DataFrame:
    """Add ``rule``: the first rule a row breaks, or null for a valid row."""
    rule = F.lit(None).cast("string")
    for name, broken in reversed(_rules(F.col("asset_id").isin(known_asset_ids), now)):
        rule = F.when(F.coalesce(broken, F.lit(True)), F.lit(name)).otherwise(rule)
    return parsed.withColumn("rule", rule)


def to_silver(validated: DataFrame) -> DataFrame:
    """Valid rows, one per natural key, in the silver shape."""
    return (
        validated.where(F.col("rule").isNull())
        .dropDuplicates(NATURAL_KEY)
        .withColumn("date", F.to_date("event_time"))
        .select(*SILVER_COLUMNS)
    )


def rejected(validated: DataFrame) -> DataFrame:
    """Rows that broke a rule, with the rule and the raw record for the quarantine."""
    return validated.where(F.col("rule").isNotNull()).select(
        "rule",
        F.to_json(F.struct("source", "kind", "asset_id", "event_time", "payload")).alias("record"),
    )


def new_rows(batch: DataFrame, existing: DataFrame) -> DataFrame:
    """Rows of ``batch`` whose natural key silver does not hold yet."""
    return batch.join(existing.select(*NATURAL_KEY), on=NATURAL_KEY, how="left_anti")


def within_hours(rows: DataFrame, hours: DataFrame) -> DataFrame:
    """Rows whose event hour is one of ``hours`` (a frame with an ``hour`` column)."""
    keyed = rows.withColumn("hour", F.date_trunc("hour", "event_time"))
    return keyed.join(hours, on="hour", how="left_semi").drop("hour")


def hourly_bars(silver: DataFrame) -> DataFrame:
    """OHLCV bars per asset and hour: first open, max high, min low, last close, summed volume."""
    return (
        silver.withColumn("time", F.date_trunc("hour", "event_time"))
        .groupBy("asset_id", "time")
        .agg(
            F.min_by("open", "event_time").alias("open"),
            F.max("high").alias("high"),
            F.min("low").alias("low"),
            F.max_by("close", "event_time").alias("close"),
            F.sum("volume").alias("volume"),
        )
        .select("time", "asset_id", "open", "high", "low", "close", "volume")
    )
