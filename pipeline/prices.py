"""The price step of the lake path: bronze rows → silver (Spark) → gold bars
(PostgreSQL), rejected rows quarantined.

Idempotent, so a step cut short anywhere is simply run again: silver appends only keys
it does not hold, and gold upserts whole recomputed bars.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from core import lake
from core.db import SyncDb
from pipeline import aggregates, gold, silver

log = logging.getLogger(__name__)

STAGE = "silver-prices"


@dataclass
class CycleResult:
    files: int = 0
    bronze_rows: int = 0
    silver_new: int = 0
    quarantined: int = 0
    gold_bars: int = 0


def inspect_parquet(path: Path) -> tuple[int, str | None]:
    """(rows, None) for a readable Parquet file, else (0, why not)."""
    try:
        return pq.read_metadata(path).num_rows, None
    except Exception as e:  # pyarrow raises several types for corrupt files
        return 0, f"{type(e).__name__}: {e}"


def process_prices(spark: SparkSession, db: SyncDb, bronze_df: DataFrame, *, lake_root: str,
                   asset_ids: list[str]) -> CycleResult:
    """Bronze price rows → silver (new natural keys only) → gold bars of the touched hours,
    rejected rows to quarantine. Idempotent: the streaming job's micro-batches and the
    batch backfill both call it, and running it twice on the same rows changes nothing."""
    result = CycleResult()
    now = datetime.now(UTC)
    parsed = silver.parse_prices(bronze_df).localCheckpoint()  # one read of bronze
    recent = read_recent(spark, lake_root)
    validated = silver.validate_prices(parsed, asset_ids, now,
                                       context=_outlier_context(recent, parsed))
    validated = validated.localCheckpoint()
    result.bronze_rows = validated.count()
    if not result.bronze_rows:
        return result
    batch = silver.to_silver(validated)

    silver_path = lake.silver_dir(lake_root, "prices")
    dates = [r["date"] for r in batch.select("date").distinct().collect()]
    if lake.list_parquet(silver_path):
        existing = spark.read.parquet(str(silver_path)).where(F.col("date").isin(dates))
        fresh = silver.new_rows(batch, existing)
    else:
        fresh = batch
    # Materialise before writing into the folder it was compared against.
    fresh = fresh.localCheckpoint()
    result.silver_new = fresh.count()
    if result.silver_new:
        silver.write(fresh, str(silver_path))
    # From the whole batch, not only its new rows: a re-run after a crash right after the
    # silver write still brings the neighbours up to date.
    remember_recent(lake_root, batch, recent)
    # Gold is recomputed for every hour this batch touched, not only for new rows: a
    # batch re-run after a crash between the silver write and the gold load still
    # completes gold. Whole hours from silver, so the upsert overwrites, never adds.
    touched = batch.select(F.date_trunc("hour", "event_time").alias("hour")).distinct()
    stored = spark.read.parquet(str(silver_path)).where(F.col("date").isin(dates))
    in_hours = silver.within_hours(stored, touched).localCheckpoint()
    result.gold_bars = _load_bars(db, lake_root, aggregates.bars(in_hours, "1h"), "1h")
    _load_bars(db, lake_root, aggregates.bars(in_hours, "1m"), "1m")
    _load_bars(db, lake_root, aggregates.bars(stored, "1d"), "1d")  # whole touched days
    quarantine = [(r["rule"], r["record"])
                  for r in silver.rejected(validated, parsed).collect()]
    result.quarantined = len(quarantine)
    db.run(lambda c: gold.record_quarantine(c, STAGE, quarantine))
    return result


#: Silver rows per asset kept for the next batch as outlier neighbours: a micro-batch
#: of a few ticks has too few of its own.
RECENT_ROWS = 4 * silver.OUTLIER_WINDOW
_RECENT_SCHEMA = pa.schema([("asset_id", pa.string()), ("event_time", pa.timestamp("us", "UTC")),
                            ("close", pa.float64())])


def recent_path(lake_root: str | Path) -> lake.LakePath:
    """Where the newest :data:`RECENT_ROWS` silver prices per asset are kept."""
    return lake.join(lake_root, "state", "silver-prices-recent.parquet")


def read_recent(spark: SparkSession, lake_root: str) -> DataFrame | None:
    """The newest silver rows per asset (see :func:`remember_recent`), materialised, as
    the file is replaced after the batch; None before the first batch."""
    path = recent_path(lake_root)
    fs, key = lake.filesystem(path)
    if not fs.exists(key):
        return None
    return spark.read.parquet(str(path)).localCheckpoint()


def _outlier_context(recent: DataFrame | None, parsed: DataFrame) -> DataFrame | None:
    """``recent`` as neighbours for the batch's outlier check, less the times the batch
    holds itself: a replayed row is that row, not a neighbour, and counted twice it
    would shrink the spread and flag honest moves. A few hundred rows cost a
    micro-batch nothing, where reading silver around its hours would cost a day of
    ticks."""
    if recent is None:
        return None
    return recent.join(parsed.select("asset_id", "event_time"), on=["asset_id", "event_time"],
                       how="left_anti")


def remember_recent(lake_root: str, batch: DataFrame, previous: DataFrame | None) -> None:
    """Keep the newest :data:`RECENT_ROWS` rows per asset of ``previous`` and the batch's
    silver rows that are not outliers (a bad print must not shield the next one)."""
    rows = batch.where(~F.col("outlier")).select("asset_id", "event_time", "close")
    if previous is not None:
        rows = rows.unionByName(previous)
    newest = Window.partitionBy("asset_id").orderBy(F.col("event_time").desc())
    kept = (rows.dropDuplicates(["asset_id", "event_time"])
            .withColumn("_n", F.row_number().over(newest))
            .where(F.col("_n") <= RECENT_ROWS).drop("_n").collect())
    table = pa.Table.from_pylist([r.asDict() for r in kept], schema=_RECENT_SCHEMA)
    lake.write_parquet_atomic(table, recent_path(lake_root))


def _load_bars(db: SyncDb, lake_root: str, bars: DataFrame, interval: str) -> int:
    """Spark's bars → Parquet hand-off → COPY + upsert into the interval's table."""
    handoff = lake.gold_dir(lake_root, f"price_bars_{interval}") / f"batch={uuid.uuid4().hex}"
    bars.coalesce(1).write.mode("overwrite").parquet(str(handoff))
    try:
        table = gold.read_table(handoff, gold.PRICE_COLUMNS)
        if table is None:
            return 0
        return db.run(lambda c: gold.load_price_bars(c, table, interval=interval))
    finally:
        shutil.rmtree(handoff, ignore_errors=True)
