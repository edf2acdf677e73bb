"""The hourly prediction job: for each asset and target, fit the ensemble on daily
values from gold and write one prediction per horizon, with its path and its backtest
scorecard, to PostgreSQL and to the Redis cache (TTL 1 h).

Targets: every asset's market ``price``; NAV-pinned assets (treasury and money-market
tokens) also their ``nav`` (the accrual, which is what moves) and their ``premium`` of
price over NAV.

Calibrations (ensemble weights and conformal quantiles, :mod:`training.ensemble`) are
what makes a forecast expensive: one component fit per rolling origin. The job reuses
the one stored per asset and target while it is fresh and made by the same components,
and recalibrates at most ``calibrations_per_run`` stale ones per run, so a cold start
spreads its cost over a few hours instead of blowing the hour. Until an asset has
one, its bands are the random-walk normal band, and its model_version says
``uncalibrated``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import redis

from core import cache
from core.errors import ForecastError
from training import ensemble
from training.backtest_store import latest_scorecards, load_calibrations, save_calibration
from training.components import Component, default_components, lstm_component

log = logging.getLogger(__name__)

#: Days of daily values the model sees; enough for ARIMA and calibration origins.
LOOKBACK_DAYS = 180

#: Calibration origins the job uses when it recalibrates.
JOB_ORIGINS = 16

TARGETS_NAV_PINNED = ("price", "nav", "premium")


@dataclass(frozen=True)
class PromotedLstm:
    """The registry's promoted LSTM, loaded; :meth:`component` binds it to a series."""

    model: Any
    lookback: int
    version: str
    #: Input channels: 1 for returns alone, more when trained with features.
    channels: int

    def component(self, exogenous: np.ndarray | None = None) -> Component | None:
        """The model as an ensemble component for one series, or None where it cannot
        run: a model trained with features needs them (price series from gold only)."""
        if self.channels == 1:
            return lstm_component(self.model, lookback=self.lookback, version=self.version)
        if exogenous is None or exogenous.shape[1] != self.channels - 1:
            return None
        return lstm_component(self.model, lookback=self.lookback, version=self.version,
                              exogenous=exogenous)


async def promoted_lstm(conn: asyncpg.Connection) -> PromotedLstm | None:
    """The promoted LSTM from the model registry, or None without one."""
    from training import registry

    mv = await registry.promoted(conn, "lstm")
    if mv is None:
        return None
    if mv.version not in _LSTM_CACHE:
        model, state = registry.load_lstm(mv)
        _LSTM_CACHE.clear()
        _LSTM_CACHE[mv.version] = PromotedLstm(
            model, int(state["config"]["lookback"]), mv.version,
            int(model.hparams.get("input_size", 1)))
    return _LSTM_CACHE[mv.version]


#: The loaded promoted LSTM, kept between hourly runs (loading it reads the artifact).
_LSTM_CACHE: dict[str, PromotedLstm] = {}


async def price_features(conn: asyncpg.Connection, asset_ids: Sequence[str], *,
                         days: int = LOOKBACK_DAYS) -> dict[str, Any]:
    """Per asset, the feature frame (:mod:`training.features`) of its daily closes."""
    from training.features import daily_features

    return await daily_features(conn, asset_ids, days=days)


def features_on(frame: Any, days: Sequence[datetime]) -> np.ndarray | None:
    """The exogenous features of ``frame`` on exactly ``days`` (carried over gaps)."""
    import pandas as pd

    from training.features import EXOGENOUS

    if frame is None:
        return None
    on = frame.reindex(pd.DatetimeIndex(days))[list(EXOGENOUS)]
    return on.ffill().fillna(0.0).to_numpy()


@dataclass
class JobResult:
    predicted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    recalibrated: int = 0


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


async def daily_navs(conn: asyncpg.Connection, asset_id: str, *, days: int) -> list:
    """The NAV of each day (gold keeps the day's last report), oldest first."""
    return await conn.fetch(
        """SELECT date_trunc('day', time) AS day, nav FROM onchain_metrics
           WHERE asset_id = $1 AND nav > 0
             AND time >= (SELECT max(time) FROM onchain_metrics WHERE asset_id = $1)
                         - make_interval(days => $2)
           ORDER BY time""",
        asset_id, days)


async def target_series(conn: asyncpg.Connection, asset_id: str, *, nav_pinned: bool,
                        days: int = LOOKBACK_DAYS) -> dict[str, tuple[list[datetime], np.ndarray]]:
    """Daily values per target: ``price``, and for NAV-pinned assets ``nav`` and
    ``premium`` (close / NAV - 1 on the days both are known)."""
    closes = await daily_closes(conn, asset_id, days=days)
    out = {"price": ([r["day"] for r in closes], np.array([r["close"] for r in closes], float))}
    if nav_pinned:
        navs = await daily_navs(conn, asset_id, days=days)
        if navs:
            out["nav"] = ([r["day"] for r in navs], np.array([r["nav"] for r in navs], float))
            nav_by_day = {r["day"]: r["nav"] for r in navs}
            both = [(r["day"], r["close"] / nav_by_day[r["day"]] - 1.0)
                    for r in closes if r["day"] in nav_by_day]
            out["premium"] = ([d for d, _ in both], np.array([p for _, p in both], float))
    return out


def prediction_rows(asset_id: str, target: str, last_day: datetime, fc: ensemble.EnsembleForecast,
                    horizons: Sequence[int], generated_at: datetime, model_version: str,
                    scorecards: Mapping[int, dict]) -> list[dict]:
    band = fc.band
    path = [{"time": (last_day + timedelta(days=i + 1)).isoformat(), "mean": float(band.mean[i]),
             "lower_80": float(band.lower[0.8][i]), "upper_80": float(band.upper[0.8][i]),
             "lower_95": float(band.lower[0.95][i]), "upper_95": float(band.upper[0.95][i])}
            for i in range(len(band.mean))]
    rows = []
    for h in horizons:
        rows.append({
            "asset_id": asset_id,
            "target": target,
            "forecast_horizon": h,
            "predicted_price": float(band.mean[h - 1]),
            "confidence_lower": float(band.lower[0.8][h - 1]),
            "confidence_upper": float(band.upper[0.8][h - 1]),
            "lower_95": float(band.lower[0.95][h - 1]),
            "upper_95": float(band.upper[0.95][h - 1]),
            "target_time": last_day + timedelta(days=h),
            "generated_at": generated_at,
            "model_version": model_version,
            "weights": {k: round(v, 4) for k, v in band.weights.items()},
            "path": path[:h],
            "scorecard": scorecards.get(h),
        })
    return rows


async def store(conn: asyncpg.Connection, rows: list[dict]) -> list[int]:
    if not rows:
        return []
    return [r["prediction_id"] for r in await conn.fetch(
        """INSERT INTO predictions (asset_id, target, forecast_horizon, predicted_price,
               confidence_lower, confidence_upper, lower_95, upper_95, target_time,
               generated_at, model_version, path, weights)
           SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[], $5::float8[],
                                $6::float8[], $7::float8[], $8::float8[], $9::timestamptz[],
                                $10::timestamptz[], $11::text[], $12::jsonb[], $13::jsonb[])
           RETURNING prediction_id""",
        *[[r[k] for r in rows] for k in (
            "asset_id", "target", "forecast_horizon", "predicted_price", "confidence_lower",
            "confidence_upper", "lower_95", "upper_95", "target_time", "generated_at",
            "model_version")],
        [json.dumps(r["path"]) for r in rows], [json.dumps(r["weights"]) for r in rows])]


def cache_body(row: dict, prediction_id: int) -> dict[str, Any]:
    """A prediction row as the cache (and the API) holds it: JSON values, ISO times."""
    body = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    return body | {"prediction_id": prediction_id}


def cache_rows(client: redis.Redis, rows: list[dict], ids: list[int], *, ttl_s: int) -> None:
    pipe = client.pipeline(transaction=False)
    for r, pid in zip(rows, ids):
        pipe.set(cache.prediction_key(r["asset_id"], r["forecast_horizon"], r["target"]),
                 json.dumps(cache_body(r, pid)), ex=ttl_s)
    pipe.execute()


@dataclass
class _Calibrator:
    """Which stored calibrations to trust, and the budget for making new ones."""

    stored: Mapping[tuple[str, str], tuple[str, ensemble.Calibration, datetime]]
    budget: int
    max_age: timedelta
    now: datetime
    made: int = 0

    def fresh(self, key: tuple[str, str], version: str, horizon: int,
              ) -> ensemble.Calibration | None:
        entry = self.stored.get(key)
        if entry is None:
            return None
        stored_version, cal, computed_at = entry
        if (stored_version != version or self.now - computed_at > self.max_age
                or len(cal.horizons) < horizon):
            return None
        return cal


async def forecast_target(conn: asyncpg.Connection, asset_id: str, target: str, y: np.ndarray,
                          components: Sequence[Component], horizon: int,
                          calibrator: _Calibrator) -> tuple[ensemble.EnsembleForecast, str]:
    """The ensemble forecast for one series and the model_version to record."""
    applicable = [c for c in components if c.applies_to(y)]
    version = ensemble.model_version(applicable)
    cal = calibrator.fresh((asset_id, target), version, horizon)
    if cal is not None:
        fc = ensemble.fit_forecast(y, horizon, applicable, calibration=cal)
        return fc, fc.model_version
    if calibrator.made < calibrator.budget:
        fc = ensemble.fit_forecast(y, horizon, applicable, max_origins=JOB_ORIGINS)
        calibrator.made += 1
        await save_calibration(conn, asset_id, target, fc.model_version, fc.calibration)
        return fc, fc.model_version
    fc = ensemble.fit_forecast(y, horizon, applicable, calibration=ensemble.Calibration())
    return fc, f"{fc.model_version}:uncalibrated"


async def run_job(conn: asyncpg.Connection, client: redis.Redis, assets: Sequence[Any], *,
                  horizons: Sequence[int], min_days: int, ttl_s: int,
                  lstm: PromotedLstm | None = None, calibrations_per_run: int = 8,
                  calibration_max_age_s: float = 86400.0) -> JobResult:
    """Forecast every target of every asset.

    Args:
        assets: Catalog assets (``asset_id`` and ``nav_pinned``), or bare asset ids
            (treated as not NAV-pinned).
        lstm: The promoted LSTM, if there is one.
    """
    result = JobResult()
    horizon = max(horizons)
    ids = [getattr(a, "asset_id", a) for a in assets]
    features = (await price_features(conn, ids) if lstm is not None and lstm.channels > 1
                else {})
    calibrator = _Calibrator(await load_calibrations(conn, ids), calibrations_per_run,
                             timedelta(seconds=calibration_max_age_s), datetime.now(UTC))
    scorecards = await latest_scorecards(conn, ids)
    for asset in assets:
        asset_id = getattr(asset, "asset_id", asset)
        series = await target_series(conn, asset_id, nav_pinned=bool(getattr(asset, "nav_pinned", False)))
        rows = []
        for target, (days, y) in series.items():
            if len(y) < min_days:
                if target == "price":
                    result.skipped[asset_id] = f"only {len(y)} day(s) of gold bars, need {min_days}"
                continue
            exogenous = features_on(features.get(asset_id), days) if target == "price" else None
            components = default_components(
                lstm=lstm.component(exogenous) if lstm is not None else None)
            fc, version = await forecast_target(conn, asset_id, target, y, components, horizon,
                                                calibrator)
            rows += prediction_rows(asset_id, target, days[-1], fc, horizons, datetime.now(UTC),
                                    version, scorecards.get((asset_id, target), {}))
        if not rows:
            continue
        ids_ = await store(conn, rows)
        cache_rows(client, rows, ids_, ttl_s=ttl_s)
        result.predicted.append(asset_id)
    result.recalibrated = calibrator.made
    return result


async def forecast_one(conn: asyncpg.Connection, client: redis.Redis, asset_id: str, *,
                       target: str = "price", horizon: int, nav_pinned: bool, min_days: int,
                       ttl_s: int, lstm: PromotedLstm | None = None, calibrate: bool = True,
                       calibration_max_age_s: float = 86400.0,
                       calibration_horizon: int = 1) -> dict[str, Any]:
    """One target's forecast at one horizon, made now the way :func:`run_job` makes it
    (same series, components, stored calibrations and scorecards), stored in
    ``predictions`` and cached under the usual key: for a horizon the job does not
    produce, or an asset it has not reached yet.

    Args:
        calibrate: Calibrate and store a calibration where no fresh one covers the
            horizon (one rolling-origin backtest: a second or two); otherwise the
            random-walk band, and the model_version says ``uncalibrated``.
        calibration_horizon: Forecast (and calibrate) at least this many steps, the
            job's longest horizon, so that a calibration made here serves the job too.

    Returns:
        The prediction as the cache holds it (:func:`cache_body`).

    Raises:
        ForecastError: The asset has no such target series, or too few days of it.
    """
    series = await target_series(conn, asset_id, nav_pinned=nav_pinned and target != "price")
    if target not in series:
        raise ForecastError(f"no {target} series for {asset_id}"
                            + ("; nav and premium exist for NAV-pinned assets only"
                               if not nav_pinned else ""))
    days, y = series[target]
    if len(y) < min_days:
        raise ForecastError(f"only {len(y)} day(s) of gold {target} data for {asset_id}, "
                            f"need {min_days}")
    exogenous = None
    if lstm is not None and lstm.channels > 1 and target == "price":
        exogenous = features_on((await price_features(conn, [asset_id])).get(asset_id), days)
    components = default_components(lstm=lstm.component(exogenous) if lstm is not None else None)
    calibrator = _Calibrator(await load_calibrations(conn, [asset_id]), 1 if calibrate else 0,
                             timedelta(seconds=calibration_max_age_s), datetime.now(UTC))
    fc, version = await forecast_target(conn, asset_id, target, y, components,
                                        max(horizon, calibration_horizon), calibrator)
    scorecards = await latest_scorecards(conn, [asset_id])
    rows = prediction_rows(asset_id, target, days[-1], fc, [horizon], datetime.now(UTC), version,
                           scorecards.get((asset_id, target), {}))
    ids = await store(conn, rows)
    cache_rows(client, rows, ids, ttl_s=ttl_s)
    return cache_body(rows[0], ids[0])
