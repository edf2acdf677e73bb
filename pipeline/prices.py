"""One cycle of the price lake path: new bronze files → silver (Spark) → gold
(PostgreSQL), with rejected rows quarantined and processed files recorded.

Every step is idempotent, so a cycle cut short anywhere is simply run again: silver
appends only keys it does not hold, gold upserts whole recomputed bars, and a file is
marked processed only after its rows reached gold.
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

from core import broker, lake
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


def pending_bronze_files(db: SyncDb, lake_root: str, *, limit: int) -> list[Path]:
    done = {r["path"] for r in db.fetch("SELECT path FROM lake_manifest WHERE stage = $1", STAGE)}
    files = lake.list_parquet(lake.bronze_dir(lake_root, broker.PRICE_RAW))
    return [p for p in files if str(p) not in done][:limit]


def _inspect(path: Path) -> tuple[int, str | None]:
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
        records = gold.read_bar_records(handoff)
        return db.run(lambda c: gold.load_price_bars(c, records, interval=interval))
    finally:
        shutil.rmtree(handoff, ignore_errors=True)


def run_price_cycle(spark: SparkSession, db: SyncDb, *, lake_root: str,
                    asset_ids: list[str], max_files: int = 500,
                    files: list[Path] | None = None) -> CycleResult:
    """Batch mode: the given bronze files (default: those no cycle has processed yet),
    unreadable ones quarantined, each recorded in the manifest once its rows are in gold."""
    if files is None:
        files = pending_bronze_files(db, lake_root, limit=max_files)
    if not files:
        return CycleResult()
    inspected = {p: _inspect(p) for p in files}
    bad = {p: why for p, (_, why) in inspected.items() if why}
    good = [str(p) for p in files if p not in bad]
    result = CycleResult()
    if good:
        result = process_prices(spark, db, spark.read.parquet(*good), lake_root=lake_root,
                                asset_ids=asset_ids)
    result.files = len(files)
    unreadable = [("unreadable_file", f"{p}: {why}") for p, why in bad.items()]
    db.run(lambda c: gold.record_quarantine(c, STAGE, unreadable))
    result.quarantined += len(unreadable)
    db.run(lambda c: c.executemany(
        "INSERT INTO lake_manifest (stage, path, row_count) VALUES ($1, $2, $3) "
        "ON CONFLICT (stage, path) DO NOTHING",
        [(STAGE, str(p), inspected[p][0]) for p in files]))
    log.info("price cycle: %s", result)
    return result
