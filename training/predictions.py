"""The prediction job: for each asset, fit the forecaster on daily closes from gold and
write one prediction per horizon to PostgreSQL and to the Redis cache (TTL 1 h)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import redis

from core import cache
from training import arima

log = logging.getLogger(__name__)

#: Days of daily closes the model sees; enough for ARIMA, small enough to fit fast.
LOOKBACK_DAYS = 180


@dataclass
class JobResult:
    predicted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


async def daily_closes(conn: asyncpg.Connection, asset_id: str, *, days: int) -> list:
    """The last close of each day, oldest first, over the last ``days`` days of data."""
    return await conn.fetch(
        """SELECT day, close FROM (
               SELECT DISTINCT ON (date_trunc('day', time))
                      date_trunc('day', time) AS day, close
               FROM price_data
               WHERE asset_id = $1
                 AND time >= (SELECT max(time) FROM price_data WHERE asset_id = $1) - make_interval(days => $2)
               ORDER BY date_trunc('day', time), time DESC) d
           ORDER BY day""",
        asset_id,
        days,
    )


def prediction_rows(asset_id: str, last_day: datetime, fc: arima.ArimaForecast,
                    horizons: Sequence[int], generated_at: datetime) -> list[dict]:
    rows = []
    for h in horizons:
        rows.append({
            "asset_id": asset_id,
            "forecast_horizon": h,
            "predicted_price": float(fc.mean[h - 1]),
            "confidence_lower": float(fc.lower_80[h - 1]),
            "confidence_upper": float(fc.upper_80[h - 1]),
            "lower_95": float(fc.lower_95[h - 1]),
            "upper_95": float(fc.upper_95[h - 1]),
            "target_time": last_day + timedelta(days=h),
            "generated_at": generated_at,
            "model_version": arima.MODEL_VERSION,
        })
    return rows


async def store(conn: asyncpg.Connection, rows: list[dict]) -> list[int]:
    ids = []
    for r in rows:
        ids.append(await conn.fetchval(
            """INSERT INTO predictions (asset_id, forecast_horizon, predicted_price,
                   confidence_lower, confidence_upper, lower_95, upper_95, target_time,
                   generated_at, model_version)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING prediction_id""",
            r["asset_id"], r["forecast_horizon"], r["predicted_price"], r["confidence_lower"],
            r["confidence_upper"], r["lower_95"], r["upper_95"], r["target_time"],
            r["generated_at"], r["model_version"]))
    return ids


def cache_rows(client: redis.Redis, rows: list[dict], ids: list[int], *, ttl_s: int) -> None:
    pipe = client.pipeline(transaction=False)
    for r, pid in zip(rows, ids):
        body = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
        pipe.set(cache.prediction_key(r["asset_id"], r["forecast_horizon"]),
                 json.dumps(body | {"prediction_id": pid}), ex=ttl_s)
    pipe.execute()


async def predict_asset(conn: asyncpg.Connection, asset_id: str, *, horizons: Sequence[int],
                        min_days: int) -> list[dict] | str:
    """Rows for one asset, or why it was skipped."""
    closes = await daily_closes(conn, asset_id, days=LOOKBACK_DAYS)
    if len(closes) < min_days:
        return f"only {len(closes)} day(s) of gold bars, need {min_days}"
    values = np.array([r["close"] for r in closes], dtype=float)
    fc = arima.fit_forecast(values, max(horizons))
    return prediction_rows(asset_id, closes[-1]["day"], fc, horizons, datetime.now(UTC))


async def run_job(conn: asyncpg.Connection, client: redis.Redis, asset_ids: Sequence[str], *,
                  horizons: Sequence[int], min_days: int, ttl_s: int) -> JobResult:
    result = JobResult()
    for asset_id in asset_ids:
        outcome = await predict_asset(conn, asset_id, horizons=horizons, min_days=min_days)
        if isinstance(outcome, str):
            result.skipped[asset_id] = outcome
            continue
        ids = await store(conn, outcome)
        cache_rows(client, outcome, ids, ttl_s=ttl_s)
        result.predicted.append(asset_id)
    return result
