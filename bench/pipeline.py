"""Lake throughput: silver on Spark and the gold load into PostgreSQL, in rows per second.

(a) silver: N bronze-shaped price rows (ticks and hourly bars, a few replayed twice and a
    few invalid) written as Parquet with pyarrow, then, on a local SparkSession
    (``local[2]``), parse_prices → validate_prices → to_silver → Parquet partitioned by
    date, exactly the functions the pipeline runs under RayDP. A warm-up run over the
    same rows comes first, so the JVM's start and its JIT compilation are not counted
    (the streaming job runs for days in one JVM); then TIMED_RUNS runs, of which the
    median is the figure (a single run on 2 cores varies by a third with GC and task
    placement).
(b) gold: N hourly bars from a Parquet hand-off folder (as Spark writes them) through
    ``read_table`` and ``load_rows`` (Arrow -> CSV COPY into staging -> MERGE) into
    ``price_data`` of an embedded pgserver, the path the pipeline runs: first as new
    rows, then the same rows again (nothing to write), then every row changed; and new
    rows once more from Python tuples (the path of small callers).

    .venv/bin/python bench/pipeline.py [--rows 1000000] [--skip-silver] [--skip-gold]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa
import pyarrow.parquet as pq

from core.catalog import load_catalog

START = datetime(2023, 1, 1, tzinfo=UTC)
#: Timed silver runs after the warm-up; the median is reported.
TIMED_RUNS = 3


def bronze_table(rows: int, asset_ids: list[str], *, seed: int = 1) -> pa.Table:
    """Bronze price rows in the sink's schema: 80 % ticks, 20 % bars, 1 % replays of an
    earlier row (deduplicated by silver) and 1 % invalid (quarantined by silver)."""
    from pipeline.bronze import BRONZE_SCHEMA, price_fields

    rng = random.Random(seed)
    now = datetime.now(UTC)
    cols: dict[str, list] = {f.name: [] for f in BRONZE_SCHEMA}
    for i in range(rows):
        if i and rng.random() < 0.01:  # a replay: the same envelope again, later offset
            j = rng.randrange(i)
            for name, values in cols.items():
                values.append(values[j] if name != "offset" else i)
            continue
        asset = asset_ids[i % len(asset_ids)]
        event = START + timedelta(seconds=i)
        price = 100.0 + rng.random()
        if rng.random() < 0.8:
            kind, payload = "tick", {"price": price, "volume": rng.random()}
        else:
            kind, payload = "bar", {"open": price, "high": price + 1, "low": price - 1,
                                    "close": price + 0.5, "volume": 10.0, "interval": "1h"}
        if rng.random() < 0.01:
            payload = {"price": -1.0, "volume": 1.0}
            kind = "tick"
        for name, value in (("topic", "price-data-raw"), ("partition", i % 3), ("offset", i),
                            ("key", asset), ("source", "bench"), ("kind", kind),
                            ("asset_id", asset), ("event_time", event), ("ingest_time", now),
                            ("schema_version", 1), ("payload", json.dumps(payload)),
                            ("price_fields", price_fields(kind, payload))):
            cols[name].append(value)
    return pa.Table.from_pydict(cols, schema=BRONZE_SCHEMA)


def bench_silver(rows: int, work: Path, asset_ids: list[str]) -> None:
    from pipeline import silver
    from pipeline.spark import local_spark
    from rwa.embedded import find_java_home

    bronze = work / "bronze"
    bronze.mkdir()
    started = time.perf_counter()
    table = bronze_table(rows, asset_ids)
    # Files of about the bronze sink's batch size.
    per_file = 50_000
    for n, offset in enumerate(range(0, rows, per_file)):
        pq.write_table(table.slice(offset, per_file), bronze / f"part-{n:05d}.parquet",
                       compression="zstd")
    print(f"bronze: {rows:,} rows generated in {time.perf_counter() - started:.1f} s")

    # The pipeline's own SQL settings, on a plain local[2] session.
    spark = local_spark("bench-silver", find_java_home(), cores=2, driver_memory="2g")
    try:
        def run(source: Path, target: Path) -> float:
            t = time.perf_counter()
            validated = silver.validate_prices(
                silver.parse_prices(spark.read.parquet(str(source))), asset_ids,
                datetime.now(UTC))
            silver.write(silver.to_silver(validated), str(target), mode="overwrite")
            return time.perf_counter() - t

        warm_s = run(bronze, work / "silver")
        runs = sorted(run(bronze, work / "silver") for _ in range(TIMED_RUNS))
        silver_rows = spark.read.parquet(str(work / "silver")).count()
    finally:
        spark.stop()
    elapsed = runs[len(runs) // 2]
    print(f"silver (Spark local[2]): parse -> validate -> to_silver -> Parquet: {rows:,} bronze "
          f"rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s (median of {len(runs)} runs; "
          f"{rows / runs[-1]:,.0f} to {rows / runs[0]:,.0f}), {silver_rows:,} silver rows "
          f"(warm-up run: {warm_s:.1f} s) (target >= 100,000 rows/s)")


def bar_records(rows: int, asset_ids: list[str]) -> list[tuple]:
    hours = -(-rows // len(asset_ids))
    out = []
    for h in range(hours):
        t = START + timedelta(hours=h)
        for n, asset in enumerate(asset_ids):
            close = 100.0 + (h % 97) + n
            out.append((t, asset, close - 0.5, close + 1.0, close - 1.0, close, float(h % 13)))
    return out[:rows]


async def _gold(uri: str, records: list[tuple], folder: Path) -> dict[str, float]:
    import asyncpg

    from core import db
    from pipeline import gold

    conn = await asyncpg.connect(uri)
    try:
        await db.migrate(conn)
        await db.upsert_assets(conn, load_catalog())
        figures: dict[str, float] = {}

        async def timed(label: str, rows: object, table: str = "price_data") -> None:
            t = time.perf_counter()
            if isinstance(rows, Path):  # the pipeline's path: Spark's Parquet hand-off
                rows = gold.read_table(rows, gold.PRICE_COLUMNS)
            written = await gold.load_rows(conn, table, gold.PRICE_COLUMNS, gold.PRICE_KEY, rows)
            figures[label] = time.perf_counter() - t
            figures[f"{label} written"] = written

        await timed("new rows", folder)
        await timed("same rows again", folder)
        changed = folder.parent / "gold-handoff-changed"
        changed.mkdir()
        table = pq.read_table(folder)
        pq.write_table(table.set_column(5, "close", pa.compute.add(table["close"], 0.25)),
                       changed / "part-00000.parquet")
        await timed("every row changed", changed)
        await conn.execute("TRUNCATE price_data")
        await timed("new rows from Python tuples", records)
        return figures
    finally:
        await conn.close()


def bench_gold(rows: int, work: Path, asset_ids: list[str]) -> None:
    from rwa.embedded import EmbeddedPostgres

    records = bar_records(rows, asset_ids)
    folder = work / "gold-handoff"
    folder.mkdir()
    table = pa.table({name: pa.array(values) for name, values in zip(
        ("time", "asset_id", "open", "high", "low", "close", "volume"), zip(*records))})
    pq.write_table(table, folder / "part-00000.parquet")
    server = EmbeddedPostgres(work / "pg")
    uri = server.start()
    try:
        figures = asyncio.run(_gold(uri, records, folder))
    finally:
        server.stop()
    for label in ("new rows", "same rows again", "every row changed",
                  "new rows from Python tuples"):
        s = figures[label]
        target = " (target >= 100,000 rows/s)" if label == "new rows" else ""
        print(f"gold load (Parquet hand-off -> Arrow -> CSV COPY into staging -> MERGE) into "
              f"price_data, {label}: {rows:,} bars in {s:.2f} s = {rows / s:,.0f} rows/s, "
              f"{int(figures[f'{label} written']):,} written{target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-silver", action="store_true")
    parser.add_argument("--skip-gold", action="store_true")
    args = parser.parse_args()
    asset_ids = [a.asset_id for a in load_catalog()]
    work = Path(tempfile.mkdtemp(prefix="rwa-bench-pipeline-"))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    try:
        if not args.skip_silver:
            bench_silver(args.rows, work, asset_ids)
        if not args.skip_gold:
            bench_gold(args.rows, work, asset_ids)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
