"""The prediction deployment: forecasts the hourly job did not store, made on demand.

The ingress answers ``GET /predictions/{asset_id}`` from the cache, then from the
database, and only on a miss (a horizon the caller's tier allows but the job does not
produce, an asset the job has not reached, a stored row past ``max_age_s``) asks this
deployment through a handle::

    outcome = await handle.forecast.remote("paxg", "price", 14)
    # {"prediction": {...}} or {"error": "only 3 day(s) of gold price data ..."}

:class:`Forecaster` is a thin shell over :func:`training.predictions.forecast_one`,
which fits the same ensemble as the job (stored calibrations, the promoted LSTM where
one exists) on the asset's gold daily closes, stores the row in ``predictions`` and
caches it under the usual key and TTL. Forecasts run one at a time per replica in a
worker thread (ARIMA and ETS fits are CPU-bound; the replica's event loop keeps
answering health checks), and concurrent requests for the same forecast share one fit.
The CPU budget is in ``serve/app.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve
from ray.serve import Application

from serve.args import PredictionArgs

log = logging.getLogger(__name__)

#: The deployment's options when its args leave them alone.
DEFAULTS = PredictionArgs()

#: The targets a forecast may be asked for (``training.predictions``).
TARGETS = ("price", "nav", "premium")
#: The longest horizon (days) anyone may ask for; GET /predictions holds the same bound.
MAX_HORIZON = 365


@serve.deployment(name="prediction", health_check_period_s=10, **DEFAULTS.deployment_options())
class Forecaster:
    """Makes one forecast at a time with the job's code; its options come from
    :class:`serve.args.PredictionArgs` (``build_prediction``)."""

    def __init__(self, args: dict[str, Any], *, database_url: str, redis_url: str,
                 job_horizons: list[int]) -> None:
        from core import cache
        from core.db import SyncDb

        self.args = PredictionArgs.model_validate(args)
        self.db = SyncDb(database_url)
        self.redis = cache.sync_client(redis_url)
        self.calibration_horizon = max(job_horizons, default=1)
        self._inflight: dict[tuple[str, str, int], asyncio.Future] = {}
        self.made = 0

    def forecast_sync(self, asset_id: str, target: str, horizon: int) -> dict[str, Any]:
        """``{"prediction": row}``, or ``{"error": why}`` where the asset cannot be
        forecast (unknown, too little gold data, no such target)."""
        from core.catalog import by_id_or_symbol
        from core.errors import ForecastError
        from training.predictions import forecast_one, promoted_lstm

        if target not in TARGETS:
            return {"error": f"target must be one of {', '.join(TARGETS)}"}
        if not 1 <= horizon <= MAX_HORIZON:
            return {"error": f"horizon must be between 1 and {MAX_HORIZON} days, got {horizon}"}
        asset = by_id_or_symbol(asset_id)
        args = self.args

        async def run(conn: Any) -> dict[str, Any]:
            known = await conn.fetchval("SELECT 1 FROM assets WHERE asset_id = $1", asset_id)
            if not known:
                return {"error": f"unknown asset: {asset_id}"}
            lstm = await promoted_lstm(conn) if args.use_lstm else None
            try:
                row = await forecast_one(
                    conn, self.redis, asset_id, target=target, horizon=horizon,
                    nav_pinned=bool(asset is not None and asset.nav_pinned),
                    min_days=args.min_days, ttl_s=args.cache_ttl_s, lstm=lstm,
                    calibrate=args.calibrate, calibration_max_age_s=args.calibration_max_age_s,
                    calibration_horizon=self.calibration_horizon)
            except ForecastError as e:
                return {"error": str(e)}
            return {"prediction": row}

        outcome = self.db.run(run)
        if "prediction" in outcome:
            self.made += 1
            log.info("on-demand forecast %s/%s/%d: %s", asset_id, target, horizon,
                     outcome["prediction"]["model_version"])
        return outcome

    async def forecast(self, asset_id: str, target: str = "price",
                       horizon: int = 7) -> dict[str, Any]:
        key = (asset_id, target, int(horizon))
        running = self._inflight.get(key)
        if running is not None:  # the same forecast is being made: share it
            return await asyncio.shield(running)
        task = asyncio.ensure_future(asyncio.to_thread(self.forecast_sync, *key))
        self._inflight[key] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._inflight.pop(key, None)
            else:  # the caller went away; forget the fit once it ends
                task.add_done_callback(lambda _: self._inflight.pop(key, None))

    def stats(self) -> dict[str, int]:
        return {"made": self.made, "in_flight": len(self._inflight)}



def build_prediction(args: PredictionArgs | dict[str, Any] | None = None, *, database_url: str,
                     redis_url: str, job_horizons: list[int]) -> Application:
    """The deployment with its CPUs, concurrency and autoscaling from ``args``, bound
    to the databases it reads and writes."""
    parsed = args if isinstance(args, PredictionArgs) else PredictionArgs.model_validate(
        args or {})
    return Forecaster.options(**parsed.deployment_options()).bind(
        parsed.model_dump(mode="json"), database_url=database_url, redis_url=redis_url,
        job_horizons=list(job_horizons))
