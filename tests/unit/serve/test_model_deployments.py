"""The model deployments' classes without Ray: requests for the same forecast share one
fit, bad requests are answered without touching the database, and stored predictions
age out on time. (tests/integration/test_model_deployments.py runs them in Serve.)"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

from serve.analytics_routes import stale
from serve.prediction_deployment import Forecaster


def _forecaster() -> object:
    # Nothing connects until a forecast is made: the URLs are never dialled here.
    return Forecaster.func_or_class({}, database_url="postgresql://nowhere/x",
                                    redis_url="redis://nowhere:1/0", job_horizons=[1, 7, 30])


async def test_concurrent_requests_for_one_forecast_share_one_fit() -> None:
    forecaster = _forecaster()
    calls: list[tuple] = []
    release = threading.Event()

    def fit(asset_id: str, target: str, horizon: int) -> dict:
        calls.append((asset_id, target, horizon))
        release.wait(10)
        return {"prediction": {"asset_id": asset_id, "forecast_horizon": horizon}}

    forecaster.forecast_sync = fit
    same = [asyncio.ensure_future(forecaster.forecast("paxg", "price", 14)) for _ in range(3)]
    other = asyncio.ensure_future(forecaster.forecast("paxg", "price", 90))
    await asyncio.sleep(0.2)
    assert forecaster.stats()["in_flight"] == 2
    release.set()
    results = await asyncio.gather(*same, other)
    assert sorted(calls) == [("paxg", "price", 14), ("paxg", "price", 90)]
    assert [r["prediction"]["forecast_horizon"] for r in results] == [14, 14, 14, 90]
    assert forecaster.stats()["in_flight"] == 0


def test_bad_requests_are_refused_before_the_database() -> None:
    forecaster = _forecaster()
    assert "target must be one of" in forecaster.forecast_sync("paxg", "dividends", 7)["error"]
    assert "horizon must be between" in forecaster.forecast_sync("paxg", "price", 0)["error"]
    assert "horizon must be between" in forecaster.forecast_sync("paxg", "price", 366)["error"]
    assert forecaster.calibration_horizon == 30


def test_a_stored_prediction_is_stale_after_max_age() -> None:
    now = datetime.now(UTC)
    assert not stale(now - timedelta(minutes=59), 3600)
    assert stale(now - timedelta(minutes=61), 3600)
    assert stale((now - timedelta(hours=3)).replace(tzinfo=None), 7200)  # naive: UTC
