"""The hourly prediction job on embedded PostgreSQL and Redis: ensemble forecasts for
every target (price; NAV and premium for a NAV-pinned fund), calibrations reused and
budgeted, and the backtest scorecard stored by ``rwa backtest`` served beside them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
import redis

from core import cache, db
from core.catalog import by_id_or_symbol, load_catalog
from pipeline import gold
from serve import queries
from tests.databases import fresh_database, hourly_bars
from training import backtest_job
from training.predictions import run_job

pytestmark = pytest.mark.integration

DAYS = 60
HORIZONS = (1, 7)
PAXG, BUIDL = by_id_or_symbol("paxg"), by_id_or_symbol("buidl")
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = cache.sync_client(redis_url)
    yield client
    client.close()


@pytest.fixture
async def conn(pg_uri: str) -> AsyncIterator[asyncpg.Connection]:
    async with fresh_database(pg_uri, "predictions") as uri:
        c = await asyncpg.connect(uri)
        await db.migrate(c)
        await db.upsert_assets(c, load_catalog())
        rng = np.random.default_rng(1)
        hours = DAYS * 24
        paxg = 2400 * np.exp(np.cumsum(rng.normal(0, 0.003, hours)))
        nav = 100 * np.exp(0.045 / 8760 * np.arange(1, hours + 1))  # 4.5 % a year, accruing
        buidl = nav * (1 + rng.normal(0, 0.0005, hours))
        await gold.load_price_bars(c, hourly_bars("paxg", paxg, end=END)
                                   + hourly_bars("buidl", buidl, end=END))
        first_day = (END - timedelta(hours=hours)).replace(hour=0)
        await gold.load_onchain_daily(c, [
            (first_day + timedelta(days=d), "buidl", None, None, None, None, None, None,
             float(nav[min(d * 24 + 23, hours - 1)]), 0.045, None, "ethereum")
            for d in range(DAYS)])
        yield c
        await c.close()


async def _nav_week(conn: asyncpg.Connection) -> dict[str, float]:
    last = await conn.fetchval(
        "SELECT nav FROM onchain_metrics WHERE asset_id = 'buidl' ORDER BY time DESC LIMIT 1")
    return {"last": last, "accrued": last * np.exp(0.045 * 7 / 365)}


async def _latest(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT DISTINCT ON (asset_id, target, forecast_horizon) * FROM predictions
           ORDER BY asset_id, target, forecast_horizon, generated_at DESC, prediction_id DESC""")


async def test_every_target_is_forecast_and_calibrations_are_budgeted(
        conn: asyncpg.Connection, redis_client: redis.Redis) -> None:
    result = await run_job(conn, redis_client, [PAXG, BUIDL], horizons=HORIZONS, min_days=14,
                           ttl_s=60, calibrations_per_run=1)
    assert sorted(result.predicted) == ["buidl", "paxg"] and result.recalibrated == 1
    rows = await _latest(conn)
    targets = {(r["asset_id"], r["target"]) for r in rows}
    assert targets == {("paxg", "price"), ("buidl", "price"), ("buidl", "nav"),
                       ("buidl", "premium")}
    # One calibration was made (the first series); the rest wait with the normal band.
    versions = {(r["asset_id"], r["target"]): r["model_version"] for r in rows}
    assert not versions[("paxg", "price")].endswith(":uncalibrated")
    assert versions[("paxg", "price")].startswith("ens-v1(naive+arima-aic-v1+ets-damped-v1")
    assert all(versions[k].endswith(":uncalibrated") for k in targets - {("paxg", "price")})
    assert await conn.fetchval("SELECT count(*) FROM forecast_calibrations") == 1

    for r in rows:
        path = json.loads(r["path"])
        assert len(path) == r["forecast_horizon"]
        assert path[-1]["mean"] == pytest.approx(r["predicted_price"])
        assert r["lower_95"] <= r["confidence_lower"] <= r["predicted_price"] \
            <= r["confidence_upper"] <= r["upper_95"]
    by = {(r["asset_id"], r["target"], r["forecast_horizon"]): r for r in rows}
    # The NAV accrues: even uncalibrated (equal weights, naive among them) its forecast
    # moves up from the last NAV, by at most a week's yield.
    week = await _nav_week(conn)
    assert week["last"] < by[("buidl", "nav", 7)]["predicted_price"] < week["accrued"] * 1.0001
    # The premium is a small number around zero, not a price.
    assert abs(by[("buidl", "premium", 7)]["predicted_price"]) < 0.01

    cached = json.loads(redis_client.get(cache.prediction_key("buidl", 7, "nav")))
    assert cached["target"] == "nav"
    assert cached["prediction_id"] == by[("buidl", "nav", 7)]["prediction_id"]
    assert redis_client.ttl(cache.prediction_key("paxg", 1)) > 0


async def test_a_backtest_stores_scorecards_and_calibrations_the_job_then_serves(
        conn: asyncpg.Connection, redis_client: redis.Redis) -> None:
    series = await backtest_job.gold_series(conn, [PAXG, BUIDL], days=DAYS)
    assert {(s.series_id, s.target) for s in series} == {
        ("paxg", "price"), ("buidl", "price"), ("buidl", "nav"), ("buidl", "premium")}
    outcomes = backtest_job.run(series, horizons=HORIZONS, max_origins=10, jobs=1)
    run_id = await backtest_job.store(conn, outcomes, source="gold", horizons=HORIZONS,
                                      params={"origins": 10})
    assert await conn.fetchval("SELECT count(*) FROM forecast_calibrations") == 4
    assert await conn.fetchval(
        "SELECT finished_at IS NOT NULL FROM backtest_runs WHERE run_id = $1", run_id)

    result = await run_job(conn, redis_client, [PAXG, BUIDL], horizons=HORIZONS, min_days=14,
                           ttl_s=60, calibrations_per_run=0)
    assert result.recalibrated == 0
    rows = await _latest(conn)
    assert not [r["model_version"] for r in rows if r["model_version"].endswith("uncalibrated")]

    # Calibrated, the weights favour the models that follow the accrual.
    nav7 = next(r for r in rows if (r["asset_id"], r["target"], r["forecast_horizon"])
                == ("buidl", "nav", 7))
    week = await _nav_week(conn)
    assert nav7["predicted_price"] == pytest.approx(week["accrued"], rel=1e-4)

    cached = json.loads(redis_client.get(cache.prediction_key("paxg", 7)))
    card = cached["scorecard"]
    assert card["run_id"] == run_id
    assert {"ensemble", "naive", "arima", "ets"} <= set(card)
    assert 0 <= card["ensemble"]["coverage_80"] <= 1 and card["naive"]["coverage_80"] is None
    assert card["ensemble"]["n"] > 0 and card["ensemble"]["mase"] > 0

    # The API's database path returns the same prediction with its path and scorecard.
    served = await _served(conn, "buidl", 7, "nav")
    assert served["target"] == "nav" and len(served["path"]) == 7
    assert set(served["weights"]) == {"naive", "arima", "ets"}
    assert sum(served["weights"].values()) == pytest.approx(1.0, abs=1e-3)
    assert served["scorecard"]["run_id"] == run_id and "ensemble" in served["scorecard"]


async def test_stale_calibrations_are_not_trusted(conn: asyncpg.Connection,
                                                 redis_client: redis.Redis) -> None:
    await run_job(conn, redis_client, [PAXG], horizons=HORIZONS, min_days=14, ttl_s=60,
                  calibrations_per_run=1)
    await run_job(conn, redis_client, [PAXG], horizons=HORIZONS, min_days=14, ttl_s=60,
                  calibrations_per_run=0, calibration_max_age_s=1e-6)
    rows = await _latest(conn)
    assert all(r["model_version"].endswith(":uncalibrated") for r in rows)


class _OneConnPool:
    """What ``queries.latest_prediction`` needs of a pool, over one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    def acquire(self):
        conn = self.conn

        class _Ctx:
            async def __aenter__(self):
                return conn

            async def __aexit__(self, *exc):
                return False

        return _Ctx()


async def _served(conn: asyncpg.Connection, asset_id: str, horizon: int, target: str) -> dict:
    return await queries.latest_prediction(_OneConnPool(conn), asset_id, horizon, target)


async def test_the_promoted_lstm_joins_the_ensemble_with_its_features(
        conn: asyncpg.Connection, redis_client: redis.Redis, tmp_path) -> None:
    from training import lstm, registry
    from training.features import EXOGENOUS
    from training.predictions import promoted_lstm

    assert await promoted_lstm(conn) is None
    lstm.seed_everything(0)
    model = lstm.LSTMForecaster(input_size=1 + len(EXOGENOUS), hidden_size=8)
    (tmp_path / "ckpt").mkdir()
    lstm.save_checkpoint(tmp_path / "ckpt", model=model, optimizer=None, epoch=1,
                         config={"lookback": 10}, scalers={})
    mv = await registry.register(conn, kind="lstm", artifact_dir=tmp_path / "ckpt",
                                 metrics={"val_loss": 1.0}, params={"features": list(EXOGENOUS)},
                                 lake_url=str(tmp_path / "lake"))
    await registry.promote(conn, mv.version)
    loaded = await promoted_lstm(conn)
    assert loaded.version == mv.version and loaded.channels == 1 + len(EXOGENOUS)

    await run_job(conn, redis_client, [PAXG, BUIDL], horizons=HORIZONS, min_days=14, ttl_s=60,
                  lstm=loaded, calibrations_per_run=10)
    rows = {(r["asset_id"], r["target"]): r for r in await _latest(conn)}
    # Price series from gold have features, so the LSTM forecasts them and gets a weight;
    # NAV and premium have none, and a feature-trained model sits those out.
    assert mv.version in rows[("paxg", "price")]["model_version"]
    assert "lstm" in json.loads(rows[("paxg", "price")]["weights"])
    assert mv.version in rows[("buidl", "price")]["model_version"]
    assert mv.version not in rows[("buidl", "nav")]["model_version"]


async def test_the_daily_gold_backtest_stores_scorecards_and_calibrations(
        conn: asyncpg.Connection) -> None:
    from core.settings import BacktestSettings
    from training.backtest_job import backtest_gold

    # The scheduler's daily run waits an hour after start, for ingest and the pipeline.
    assert BacktestSettings().first_delay_s == 3600 and BacktestSettings().interval_s == 86400
    run_id, scored = await backtest_gold(conn, [PAXG, BUIDL], horizons=HORIZONS, max_origins=6,
                                         days=DAYS, params={"by": "test"})
    assert scored == 4
    run = await conn.fetchrow("SELECT * FROM backtest_runs WHERE run_id = $1", run_id)
    assert run["source"] == "gold" and run["finished_at"] is not None
    assert json.loads(run["params"]) == {"origins": 6, "days": DAYS, "by": "test"}
    assert await conn.fetchval("SELECT count(*) FROM forecast_calibrations") == 4
    assert await conn.fetchval(
        "SELECT count(DISTINCT (series_id, target)) FROM backtest_scores WHERE run_id = $1",
        run_id) == 4


@pytest.mark.parametrize("ttl_s", [30.0, 0.0])
async def test_a_hot_prediction_stays_in_the_replica_for_near_cache_ttl_s(
        redis_client: redis.Redis, redis_url: str, ttl_s: float) -> None:
    """``Services.cached(near=True)`` keeps a hit for ``near_cache_ttl_s`` (0: never);
    reads without ``near`` always ask Redis."""
    from serve.api import Services
    from serve.args import AppArgs

    services = Services(AppArgs(database_url="postgresql://unused/rwa", redis_url=redis_url,
                                near_cache_ttl_s=ttl_s))
    key = cache.prediction_key("paxg", 7) + f":near-test-{ttl_s:g}"
    value = {"asset_id": "paxg", "predicted_price": 2400.0}
    try:
        redis_client.set(key, json.dumps(value))
        assert await services.cached(key, near=True) == value
        redis_client.delete(key)  # the job replaced or expired it
        assert await services.cached(key) is None
        assert await services.cached(key, near=True) == (value if ttl_s else None)
    finally:
        redis_client.delete(key)
        await services.redis.aclose()
