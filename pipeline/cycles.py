"""One pass of bronze rows through silver into gold, for every kind of data.

The streaming job's micro-batches and the batch backfill both call
:func:`process_batch`. Each dataset's step is idempotent: silver appends only natural
keys it does not hold, and gold is recomputed for every day or hour the batch touched
from all of silver's rows there, then upserted. A batch replayed after a crash, or the
same bronze fed twice, leaves silver and gold as one pass does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import lake
from core.db import SyncDb
from pipeline import aggregates, gold, silver
from pipeline.prices import CycleResult, process_prices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Dataset:
    name: str
    parse: Callable[[DataFrame], DataFrame]
    validate: Callable[[DataFrame, list[str], datetime], DataFrame]
    #: Silver rows of the touched dates → gold rows, and the loader for them.
    aggregate: Callable[[DataFrame, DataFrame, list[str]], DataFrame]
    columns: tuple[str, ...]
    load: Callable


def _touched_hours(batch: DataFrame) -> DataFrame:
    return batch.select(F.date_trunc("hour", "event_time").alias("hour")).distinct()


DATASETS: dict[str, _Dataset] = {
    "onchain": _Dataset(
        "onchain", silver.parse_onchain, silver.validate_onchain,
        lambda stored, batch, ids: aggregates.onchain_daily(stored),
        gold.ONCHAIN_COLUMNS, gold.load_onchain_daily),
    "macro": _Dataset(
        "macro", silver.parse_macro, lambda parsed, ids, now: silver.validate_macro(parsed, now),
        lambda stored, batch, ids: aggregates.macro_series(stored),
        gold.MACRO_COLUMNS, gold.load_macro_series),
    "news": _Dataset(
        "news", silver.parse_news, silver.validate_news,
        lambda stored, batch, ids: aggregates.news_hourly(
            silver.within_hours(stored, _touched_hours(batch)), known_asset_ids=ids),
        gold.SENTIMENT_COLUMNS, gold.load_sentiment_hourly),
}


def process_dataset(spark: SparkSession, db: SyncDb, bronze_df: DataFrame, *, dataset: str,
                    lake_root: str, asset_ids: list[str]) -> CycleResult:
    """Bronze rows of one non-price dataset → silver → gold; rejects to quarantine."""
    d = DATASETS[dataset]
    stage = f"silver-{dataset}"
    result = CycleResult()
    validated = d.validate(d.parse(bronze_df), asset_ids, datetime.now(UTC)).localCheckpoint()
    result.bronze_rows = validated.count()
    if not result.bronze_rows:
        return result
    batch = silver.to_silver(validated, dataset=dataset)  # type: ignore[arg-type]
    path = lake.silver_dir(lake_root, dataset)
    dates = [r["date"] for r in batch.select("date").distinct().collect()]
    if lake.list_parquet(path):
        existing = spark.read.parquet(str(path)).where(F.col("date").isin(dates))
        fresh = silver.new_rows(batch, existing, dataset=dataset)  # type: ignore[arg-type]
    else:
        fresh = batch
    fresh = fresh.localCheckpoint()
    result.silver_new = fresh.count()
    if result.silver_new:
        silver.write(fresh, str(path))
    if dates and lake.list_parquet(path):
        stored = spark.read.parquet(str(path)).where(F.col("date").isin(dates))
        rows = [tuple(r) for r in d.aggregate(stored, batch, asset_ids)
                .select(*d.columns).collect()]
        result.gold_bars = db.run(lambda c: d.load(c, rows))
    quarantine = [(r["rule"], r["record"]) for r in silver.rejected(validated).collect()]
    result.quarantined = len(quarantine)
    db.run(lambda c: gold.record_quarantine(c, stage, quarantine))
    return result


#: Which dataset each envelope kind belongs to.
DATASET_OF_KIND = {"bar": "prices", "tick": "prices", "onchain": "onchain", "macro": "macro",
                   "news": "news"}


def process_batch(spark: SparkSession, db: SyncDb, bronze_df: DataFrame, *, lake_root: str,
                  asset_ids: list[str]) -> dict[str, CycleResult]:
    """Bronze rows of any topics: each dataset present goes through its own step."""
    bronze_df = bronze_df.persist()
    try:
        kinds = {r["kind"] for r in bronze_df.select("kind").distinct().collect()}
        present = sorted({DATASET_OF_KIND[k] for k in kinds if k in DATASET_OF_KIND})
        results: dict[str, CycleResult] = {}
        for dataset in present:
            own = [k for k, d in DATASET_OF_KIND.items() if d == dataset]
            frame = bronze_df.where(F.col("kind").isin(own))
            if dataset == "prices":
                results[dataset] = process_prices(spark, db, frame, lake_root=lake_root,
                                                  asset_ids=asset_ids)
            else:
                results[dataset] = process_dataset(spark, db, frame, dataset=dataset,
                                                   lake_root=lake_root, asset_ids=asset_ids)
        unknown = kinds - set(DATASET_OF_KIND)
        if unknown:
            log.warning("bronze rows of unknown kinds %s left in bronze", sorted(unknown))
        return results
    finally:
        bronze_df.unpersist()


def total(results: dict[str, CycleResult]) -> CycleResult:
    out = CycleResult()
    for r in results.values():
        for name in ("files", "bronze_rows", "silver_new", "quarantined", "gold_bars"):
            setattr(out, name, getattr(out, name) + getattr(r, name))
    return out
