"""Batch backfill: the streaming job's transformation over any event-time range of
bronze, in chunks of files so a long range shows progress and a crash loses one chunk
at most (the step is idempotent; run the same range again)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from core import broker, lake
from core.db import SyncDb
from pipeline.cycles import process_batch, total
from pipeline.prices import CycleResult, inspect_parquet
from pipeline.streaming import BRONZE_DDL

log = logging.getLogger(__name__)


@dataclass
class BackfillResult(CycleResult):
    unreadable: int = 0
    skipped: int = 0


def _event_span(path: str) -> tuple[datetime, datetime] | None:
    """(min, max) event time of a bronze file from its Parquet statistics, None if unknown."""
    meta = pq.read_metadata(path)
    index = meta.schema.names.index("event_time")
    lows, highs = [], []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows.append(stats.min)
        highs.append(stats.max)
    if not lows:
        return None
    return _utc(min(lows)), _utc(max(highs))


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def backfill(spark: SparkSession, db: SyncDb, *, lake_root: str, asset_ids: list[str],
             start: datetime, end: datetime, chunk_files: int = 2000,
             progress: Callable[[int, int], None] | None = None) -> BackfillResult:
    """Reprocess bronze rows of every raw topic with ``start <= event_time < end``.

    Args:
        progress: Called with (files done, files in all) after each chunk.
    """
    files = [p for topic in broker.RAW_TOPICS
             for p in lake.list_parquet(lake.bronze_dir(lake_root, topic))]
    summary = BackfillResult(files=len(files))
    readable = []
    for path in files:
        _, why = inspect_parquet(path)
        if why:
            summary.unreadable += 1
            log.warning("backfill skips unreadable %s: %s", path, why)
            continue
        # Footer statistics tell which files can hold the range; the rest are not read.
        span = _event_span(str(path))
        if span is None or (span[1] >= start and span[0] < end):
            readable.append(str(path))
    summary.skipped = len(files) - summary.unreadable - len(readable)
    done = summary.unreadable + summary.skipped
    if progress is not None:
        progress(done, len(files))
    for i in range(0, len(readable), chunk_files):
        chunk = readable[i:i + chunk_files]
        # The stream's schema, so files from before a bronze column existed read it as null.
        frame = spark.read.schema(BRONZE_DDL).parquet(*chunk).where(
            (F.col("event_time") >= F.lit(start)) & (F.col("event_time") < F.lit(end)))
        part = total(process_batch(spark, db, frame, lake_root=lake_root, asset_ids=asset_ids))
        for name in ("bronze_rows", "silver_new", "quarantined", "gold_bars"):
            setattr(summary, name, getattr(summary, name) + getattr(part, name))
        done += len(chunk)
        if progress is not None:
            progress(done, len(files))
    return summary
