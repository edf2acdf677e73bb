"""Streaming silver: Spark Structured Streaming's file source over bronze, checkpointed.

One query watches every raw topic's bronze folder; each micro-batch is handed, inside
``foreachBatch``, to the same idempotent step the batch backfill uses
(:func:`pipeline.cycles.process_batch`), which routes each kind to its dataset. A job killed
mid-batch has not committed that batch to its checkpoint, so on restart Spark replays
it; silver appends only natural keys it does not hold and gold recomputes whole hours,
so every valid row ends up in silver exactly once.

The file source skips files it cannot read (``ignoreCorruptFiles``) rather than dying
on them; :func:`quarantine_unreadable` finds those files and puts them in quarantine
with the reason, so nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from core import broker, lake
from core.db import SyncDb
from pipeline import gold, silver
from pipeline.cycles import process_batch, total
from pipeline.prices import CycleResult, inspect_parquet

log = logging.getLogger(__name__)

#: Bronze's Parquet columns as Spark reads them (pipeline.bronze.BRONZE_SCHEMA); the
#: ``date``/``hour`` folders are discovered as partition columns on top. Files written
#: before ``price_fields`` existed read it as null (silver then parses the payload).
BRONZE_DDL = ("topic string, partition int, offset bigint, key string, source string, "
              "kind string, asset_id string, event_time timestamp, ingest_time timestamp, "
              "schema_version smallint, payload string, "
              f"price_fields {silver.PAYLOAD_SCHEMA.simpleString()}")
CHECK_STAGE = "bronze-check"


def checkpoint_dir(lake_root: str, name: str) -> Path:
    return Path(lake_root) / "_checkpoints" / name


def start_silver_stream(spark: SparkSession, db: SyncDb, *, lake_root: str,
                        asset_ids: list[str], trigger_s: float = 5.0,
                        max_files_per_trigger: int = 500,
                        on_batch: Callable[[int, CycleResult], None] | None = None,
                        ) -> StreamingQuery:
    """Start the silver stream over all raw topics; it runs in Spark's threads until
    stopped.

    Args:
        on_batch: Called after each micro-batch with its id and summed figures.
    """
    spark.conf.set("spark.sql.files.ignoreCorruptFiles", "true")
    for topic in broker.RAW_TOPICS:
        lake.bronze_dir(lake_root, topic).mkdir(parents=True, exist_ok=True)
    pattern = str(Path(lake_root) / "bronze" / "*" / "date=*" / "hour=*" / "*.parquet")
    bronze = (spark.readStream.schema(BRONZE_DDL)
              .option("maxFilesPerTrigger", max_files_per_trigger)
              .parquet(pattern))

    def each(batch_df: DataFrame, batch_id: int) -> None:
        results = process_batch(spark, db, batch_df, lake_root=lake_root, asset_ids=asset_ids)
        log.info("silver stream batch %d: %s", batch_id, results)
        if on_batch is not None:
            on_batch(batch_id, total(results))

    return (bronze.writeStream.queryName("silver")
            .foreachBatch(each)
            .option("checkpointLocation", str(checkpoint_dir(lake_root, "silver")))
            .trigger(processingTime=f"{max(trigger_s, 0.5):.1f} seconds")
            .start())


def quarantine_unreadable(db: SyncDb, lake_root: str, checked: set[str] | None = None) -> int:
    """Quarantine bronze files the stream cannot read; each file is checked once.

    Args:
        checked: Paths already checked, kept by a caller that calls this on a schedule so
            the manifest is read from PostgreSQL once, not on every call.
    """
    if checked is None:
        checked = set()
    if not checked:
        checked.update(r["path"] for r in db.fetch(
            "SELECT path FROM lake_manifest WHERE stage = $1", CHECK_STAGE))
    files = [p for topic in broker.RAW_TOPICS
             for p in lake.list_parquet(lake.bronze_dir(lake_root, topic)) if str(p) not in checked]
    if not files:
        return 0
    inspected = {p: inspect_parquet(p) for p in files}
    bad = [("unreadable_file", f"{p}: {why}") for p, (_, why) in inspected.items() if why]
    db.run(lambda c: gold.record_quarantine(c, "bronze", bad))
    db.run(lambda c: c.executemany(
        "INSERT INTO lake_manifest (stage, path, row_count) VALUES ($1, $2, $3) "
        "ON CONFLICT (stage, path) DO NOTHING",
        [(CHECK_STAGE, str(p), rows) for p, (rows, _) in inspected.items()]))
    checked.update(str(p) for p in files)
    if bad:
        log.warning("quarantined %d unreadable bronze files", len(bad))
    return len(bad)


def progress(query: StreamingQuery | None) -> dict[str, Any]:
    """The figures an operator wants from a running stream."""
    if query is None:
        return {"stream": "not started"}
    last = query.lastProgress or {}
    exc = query.exception() if not query.isActive else None
    return {
        "stream": "active" if query.isActive else "stopped",
        "batch_id": last.get("batchId"),
        "input_rows": last.get("numInputRows"),
        "rows_per_s": round(last.get("processedRowsPerSecond") or 0.0, 1),
        "last_trigger": last.get("timestamp"),
        "error": str(exc)[:300] if exc else None,
    }
