"""Gold aggregations of silver, as Spark ``DataFrame -> DataFrame`` functions.

Each returns the rows of one gold table (extra columns are harmless to the loader,
which picks its columns by name). Rows silver flagged ``outlier`` are left out of
every aggregate: they stay findable in silver and the quarantine, but a bad print
must not become a bar's high or a day's holder count.

* :func:`bars`: OHLCV per asset at 1 m, 1 h or 1 d.
* :func:`onchain_daily`: on-chain metrics per asset and UTC day.
* :func:`news_hourly`: article counts per asset, hour and source; the sentiment score
  stays null until a model fills it.
* :func:`macro_series`: one value per series and time.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

Interval = Literal["1m", "1h", "1d"]

#: ``date_trunc`` unit of each bar interval.
INTERVALS: dict[str, str] = {"1m": "minute", "1h": "hour", "1d": "day"}
#: Fineness of a silver row: a tick (no interval) feeds every bar, a bar only bars at
#: least as long as itself.
_FINENESS: dict[str, int] = {"1m": 1, "1h": 2, "1d": 3}

BAR_COLUMNS = ["time", "asset_id", "open", "high", "low", "close", "volume"]

#: Levels: the state at a moment. Additive ones are summed over an asset's chains.
ADDITIVE_LEVELS = ["holder_count", "dex_liquidity", "tvl_usd"]
#: Levels that are one figure for the whole asset; the day's last observation wins.
ASSET_LEVELS = ["nav", "apy"]
#: Flows: amounts over a window.
FLOWS = ["transfer_volume", "transfer_count", "exchange_inflow", "exchange_outflow"]
#: Sources whose flows are trailing-24-hour figures at ``event_time`` rather than sums
#: over their own short window (the simulator; see ``ingestion.simulated_onchain``).
TRAILING_FLOW_SOURCES: frozenset[str] = frozenset({"simulated-onchain"})

ONCHAIN_COLUMNS = [
    "time", "asset_id", "holder_count", "transfer_volume", "dex_liquidity", "exchange_inflow",
    "exchange_outflow", "transfer_count", "nav", "apy", "tvl_usd", "chain",
]
SENTIMENT_COLUMNS = ["time", "asset_id", "source", "article_count", "sentiment_score"]
MACRO_COLUMNS = ["time", "series", "value", "unit", "country", "frequency", "source"]


def _not_outlier(silver: DataFrame) -> DataFrame:
    """Silver without its flagged rows; files written before the flag existed have none."""
    if "outlier" not in silver.columns:
        return silver
    return silver.where(~F.coalesce(F.col("outlier"), F.lit(False)))


def _last(column: str) -> Column:
    """The value of ``column`` at the latest ``event_time`` where it is known."""
    return F.max_by(column, F.when(F.col(column).isNotNull(), F.col("event_time")))


def bars(silver: DataFrame, interval: Interval = "1h") -> DataFrame:
    """OHLCV bars per asset and ``interval`` from silver prices: first open, max high,
    min low, last close, summed volume, without outliers.

    Ticks feed every interval; a bar only intervals at least as long as its own (an
    hourly bar cannot be split into minutes). A bar without ``interval`` (silver files
    written before the column existed) counts as hourly, the envelope's default.

    Raises:
        ValueError: For an interval other than 1m, 1h or 1d.
    """
    if interval not in INTERVALS:
        raise ValueError(f"no bars of interval {interval!r}; one of {sorted(INTERVALS)}")
    rows = _not_outlier(silver)
    own = F.col("interval") if "interval" in rows.columns else F.lit(None).cast("string")
    fineness = F.try_element_at(F.create_map(*[F.lit(x) for kv in _FINENESS.items() for x in kv]),
                            F.coalesce(own, F.lit("1h")))
    fits = (F.col("kind") == "tick") | (fineness <= _FINENESS[interval])
    return (
        rows.where(fits)
        .withColumn("time", F.date_trunc(INTERVALS[interval], "event_time"))
        .groupBy("asset_id", "time")
        .agg(
            F.min_by("open", "event_time").alias("open"),
            F.max("high").alias("high"),
            F.min("low").alias("low"),
            F.max_by("close", "event_time").alias("close"),
            F.sum("volume").alias("volume"),
        )
        .select(*BAR_COLUMNS)
    )


def onchain_daily(silver: DataFrame, *,
                  trailing_sources: Collection[str] = TRAILING_FLOW_SOURCES) -> DataFrame:
    """On-chain metrics per asset and UTC day (``time`` = the day's start), in
    :data:`ONCHAIN_COLUMNS`.

    Levels (:data:`ADDITIVE_LEVELS`): per source and chain the day's last value, summed
    over the chains. Flows (:data:`FLOWS`): per source and chain the day's sum of the
    source's windows, except for :data:`TRAILING_FLOW_SOURCES`-like sources, whose
    figure already covers the 24 hours before ``event_time``: there the day's last
    figure is the day's flow, and a figure stamped at exactly midnight closes the
    day before. Where several sources report an asset, the largest figure wins (they
    count the same holders and transfers; the largest is the most complete), so
    sources are never added up. ``nav`` and ``apy`` are the day's last observation of
    any source; ``chain`` is the chain of the day's last observation.
    """
    rows = (_not_outlier(silver)
            .withColumn("_chain", F.coalesce(F.col("chain"), F.lit("")))
            .withColumn("time", F.date_trunc("day", "event_time")))
    by_chain = ["asset_id", "time", "source", "_chain"]

    levels = (rows.groupBy(*by_chain).agg(*[_last(m).alias(m) for m in ADDITIVE_LEVELS])
              .groupBy("asset_id", "time", "source")
              .agg(*[F.sum(m).alias(m) for m in ADDITIVE_LEVELS])
              .groupBy("asset_id", "time").agg(*[F.max(m).alias(m) for m in ADDITIVE_LEVELS]))

    trailing = F.col("source").isin(*trailing_sources) if trailing_sources else F.lit(False)
    window_end_day = F.date_trunc("day", F.col("event_time") - F.expr("INTERVAL 1 MICROSECOND"))
    flow_rows = rows.withColumn("time", F.when(trailing, window_end_day).otherwise(F.col("time")))
    per_chain = flow_rows.groupBy(*by_chain).agg(
        *[_last(m).alias(f"_last_{m}") for m in FLOWS], *[F.sum(m).alias(f"_sum_{m}") for m in FLOWS])
    flows = (per_chain.select(*by_chain, *[
                 F.when(trailing, F.col(f"_last_{m}")).otherwise(F.col(f"_sum_{m}")).alias(m)
                 for m in FLOWS])
             .groupBy("asset_id", "time", "source").agg(*[F.sum(m).alias(m) for m in FLOWS])
             .groupBy("asset_id", "time").agg(*[F.max(m).alias(m) for m in FLOWS]))

    whole = rows.groupBy("asset_id", "time").agg(
        *[_last(m).alias(m) for m in [*ASSET_LEVELS, "chain"]])

    day = (levels.join(whole, on=["asset_id", "time"], how="full")
           .join(flows, on=["asset_id", "time"], how="full"))
    return day.select(
        *[F.col(c).cast("long").alias(c) if c in ("holder_count", "transfer_count") else c
          for c in ONCHAIN_COLUMNS])


def news_hourly(silver: DataFrame, *, known_asset_ids: list[str] | None = None) -> DataFrame:
    """Articles per asset, hour and source, in :data:`SENTIMENT_COLUMNS`.

    An article counts for the envelope's asset and every asset its payload names, once
    each; a story (its URL, else its title) counts once however often it was stamped.
    ``sentiment_score`` is null: a model scores the hour later.

    Args:
        known_asset_ids: Where given, assets outside it (names the catalog does not
            know) are left out, as the gold table's foreign key would refuse them.
    """
    own = F.when(F.col("asset_id").isNotNull(), F.array("asset_id"))
    named = F.coalesce(F.col("assets"), F.array().cast("array<string>"))
    mentioned = F.array_distinct(F.concat(F.coalesce(own, F.array().cast("array<string>")), named))
    rows = silver.select(
        F.date_trunc("hour", "event_time").alias("time"), "source",
        F.explode(mentioned).alias("asset_id"),
        F.coalesce(F.col("url"), F.col("title")).alias("_story"),
    )
    if known_asset_ids is not None:
        rows = rows.where(F.col("asset_id").isin(known_asset_ids))
    return (rows.groupBy("time", "asset_id", "source")
            .agg(F.countDistinct("_story").cast("int").alias("article_count"))
            .withColumn("sentiment_score", F.lit(None).cast("double"))
            .select(*SENTIMENT_COLUMNS))


def macro_series(silver: DataFrame) -> DataFrame:
    """One observation per series and time, in :data:`MACRO_COLUMNS`; where sources
    disagree, the one ingested last (the freshest revision) wins."""
    latest = F.max_by(F.struct("value", "unit", "country", "frequency", "source"),
                      "ingest_time")
    return (silver.groupBy(F.col("event_time").alias("time"), "series")
            .agg(latest.alias("_v"))
            .select("time", "series", *[F.col(f"_v.{c}").alias(c) for c in MACRO_COLUMNS[2:]]))
