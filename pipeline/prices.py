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

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
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
    validated = silver.validate_prices(silver.parse_prices(bronze_df), asset_ids, now)
    validated = validated.localCheckpoint()  # one read of bronze for all that follows
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
        fresh.write.mode("append").partitionBy("date").parquet(str(silver_path))
    # Gold is recomputed for every hour this batch touched, not only for new rows: a
    # batch re-run after a crash between the silver write and the gold load still
    # completes gold. Whole hours from silver, so the upsert overwrites, never adds.
    touched = batch.select(F.date_trunc("hour", "event_time").alias("hour")).distinct()
    stored = spark.read.parquet(str(silver_path)).where(F.col("date").isin(dates))
    in_hours = silver.within_hours(stored, touched).localCheckpoint()
    result.gold_bars = _load_bars(db, lake_root, aggregates.bars(in_hours, "1h"), "1h")
    _load_bars(db, lake_root, aggregates.bars(in_hours, "1m"), "1m")
    _load_bars(db, lake_root, aggregates.bars(stored, "1d"), "1d")  # whole touched days
    quarantine = [(r["rule"], r["record"]) for r in silver.rejected(validated).collect()]
    result.quarantined = len(quarantine)
    db.run(lambda c: gold.record_quarantine(c, STAGE, quarantine))
    return result


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
