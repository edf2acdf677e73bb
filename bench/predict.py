"""The hourly prediction job over 100 assets, in seconds (target: <= 60 s on 2 cores).

An embedded PostgreSQL and Redis; 100 assets (the catalog's, repeated under new ids
with their own price paths), 180 days of hourly bars each loaded into gold
``price_data``; then ``training.predictions.run_job`` exactly as the scheduler actor
calls it: per asset the daily closes from gold, the ensemble's fit, one prediction
per horizon (1, 7, 30 days) into PostgreSQL and the Redis cache. It runs twice: cold
(every calibration backtested now) and warm (the stored calibrations, the hourly case).

    .venv/bin/python bench/predict.py [--assets 100] [--days 180]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa

from core.catalog import load_catalog
from core.domain import Asset

HORIZONS = (1, 7, 30)


def bench_assets(n: int) -> list[Asset]:
    """``n`` assets: the catalog's, then copies of it under new ids (no contracts)."""
    catalog = load_catalog()
    out = []
    for i in range(n):
        base = catalog[i % len(catalog)]
        if i < len(catalog):
            out.append(base)
            continue
        out.append(base.model_copy(update={"asset_id": f"{base.asset_id}-b{i}",
                                           "symbol": f"{base.symbol}B{i}",
                                           "contract_address": None}))
    return out


def hourly_bars(asset_ids: list[str], days: int, *, seed: int = 7) -> pa.Table:
    """Hourly OHLCV bars ending now: a random walk in log price per asset."""
    rng = np.random.default_rng(seed)
    hours = days * 24
    # Naive UTC: numpy keeps no zone; Arrow reads these as UTC below.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    times = np.array([end - timedelta(hours=hours - h) for h in range(hours)],
                     dtype="datetime64[us]")
    cols: dict[str, list] = {c: [] for c in ("time", "asset_id", "open", "high", "low", "close",
                                             "volume")}
    for asset_id in asset_ids:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, hours)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        cols["time"].append(times)
        cols["asset_id"].append(np.full(hours, asset_id))
        cols["open"].append(open_)
        cols["high"].append(np.maximum(open_, close) * 1.001)
        cols["low"].append(np.minimum(open_, close) * 0.999)
        cols["close"].append(close)
        cols["volume"].append(rng.uniform(1, 10, hours))
    return pa.table({
        "time": pa.array(np.concatenate(cols["time"]), pa.timestamp("us", "UTC")),
        **{c: pa.array(np.concatenate(v)) for c, v in cols.items() if c != "time"},
    })


async def _run(uri: str, redis_url: str, assets: list[Asset], days: int) -> dict[str, float]:
    import asyncpg

    from core import cache, db
    from pipeline import gold
    from training.predictions import run_job

    conn = await asyncpg.connect(uri)
    client = cache.sync_client(redis_url)
    try:
        await db.migrate(conn)
        await db.upsert_assets(conn, assets)
        t = time.perf_counter()
        bars = hourly_bars([a.asset_id for a in assets], days)
        await gold.load_price_bars(conn, bars)
        loaded = time.perf_counter() - t
        # Cold: no calibration stored, every asset backtested now (what a first start
        # or the daily recalibration costs). Warm: the hourly job with stored ones.
        t = time.perf_counter()
        cold = await run_job(conn, client, assets, horizons=HORIZONS, min_days=14, ttl_s=3600,
                             calibrations_per_run=len(assets))
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        result = await run_job(conn, client, assets, horizons=HORIZONS, min_days=14, ttl_s=3600,
                               calibrations_per_run=0)
        elapsed = time.perf_counter() - t
        stored = await conn.fetchval("SELECT count(*) FROM predictions")
        uncalibrated = await conn.fetchval(
            "SELECT count(*) FROM predictions WHERE model_version LIKE '%uncalibrated'")
        return {"seconds": elapsed, "predicted": len(result.predicted),
                "skipped": len(result.skipped), "rows": stored, "bars": bars.num_rows,
                "load_s": loaded, "cold_s": cold_s, "recalibrated": cold.recalibrated,
                "uncalibrated": uncalibrated}
    finally:
        client.close()
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--days", type=int, default=180)
    args = parser.parse_args()

    from rwa.embedded import EmbeddedPostgres, EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="rwa-bench-predict-"))
    pg, rd = EmbeddedPostgres(work / "pg"), EmbeddedRedis(work / "redis")
    try:
        uri, redis_url = pg.start(), rd.start()
        figures = asyncio.run(_run(uri, redis_url, bench_assets(args.assets), args.days))
    finally:
        rd.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"gold: {figures['bars']:,} hourly bars loaded in {figures['load_s']:.1f} s")
    print(f"cold run (calibrating {int(figures['recalibrated'])} series by rolling-origin "
          f"backtest): {figures['cold_s']:.1f} s")
    print(f"prediction job: {int(figures['predicted'])} of {args.assets} assets predicted "
          f"({int(figures['skipped'])} skipped), {int(figures['rows'])} prediction rows, in "
          f"{figures['seconds']:.1f} s = {figures['seconds'] / args.assets:.2f} s per asset "
          f"(target: 100 assets <= 60 s); uncalibrated rows: {int(figures['uncalibrated'])}")


if __name__ == "__main__":
    main()
