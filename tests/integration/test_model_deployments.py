"""The Serve application as ``build_app`` composes it (ingress, prediction and risk
deployments; sentiment left out) on a local Ray, over embedded PostgreSQL and Redis:
tier horizons, forecasts the job did not store made on demand and cached, the cached
path that never reaches the deployment, and risk scores computed on demand."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from core import cache
from core.settings import AuthSettings
from pipeline import gold
from rwa.embedded import free_port
from serve.args import AppArgs
from serve.auth.tokens import TokenCodec
from tests.databases import catalog_database, hourly_bars

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "deploy-test"
SECRET = "d" * 48
AUTH = AuthSettings(jwt_secret=SecretStr(SECRET))
DAYS = 60
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
async def db_uri(pg_uri: str) -> AsyncIterator[str]:
    """The catalog, and 60 days of hourly PAXG bars in gold (no other asset has any)."""
    async with catalog_database(pg_uri, "deployments") as uri:
        conn = await asyncpg.connect(uri)
        try:
            rng = np.random.default_rng(7)
            paxg = 2400 * np.exp(np.cumsum(rng.normal(0, 0.003, DAYS * 24)))
            await gold.load_price_bars(conn, hourly_bars("paxg", paxg, end=END))
        finally:
            await conn.close()
        yield uri


@pytest.fixture(scope="module")
def api_url(local_ray: None, db_uri: str, redis_url: str) -> Iterator[str]:
    from ray import serve

    from serve.app import build_app

    args = AppArgs(
        database_url=db_uri, redis_url=redis_url, sentiment=None, auth=AUTH,
        # One replica each so that the replica's counters are the deployment's; the risk
        # deployment keeps its default floor of zero replicas and starts on first use.
        prediction={"autoscaling": {"min_replicas": 1, "max_replicas": 1}},
        risk={"lake_root": None})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args.model_dump(mode="json")), name=APP, route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture
async def api(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as client:
        yield client


@pytest.fixture
async def conn(db_uri: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(db_uri)
    yield c
    await c.close()


async def bearer(conn: asyncpg.Connection, email: str, *, tier: str = "free",
                 admin: bool = False) -> dict[str, str]:
    """An access token of a new account of ``tier``."""
    user_id = await conn.fetchval(
        "INSERT INTO users (email, password_hash, tier, is_admin) VALUES ($1, 'x', $2, $3) "
        "RETURNING user_id", email, tier, admin)
    codec = TokenCodec(AUTH.jwt_secret, issuer=AUTH.issuer, audience=AUTH.audience)
    token = codec.issue(user_id, "access", ttl_s=900, family=str(uuid.uuid4()))
    return {"Authorization": f"Bearer {token}"}


async def forecasts_made() -> int:
    from ray import serve

    handle = serve.get_deployment_handle("prediction", app_name=APP)
    return (await asyncio.to_thread(lambda: handle.stats.remote().result()))["made"]


async def test_tiers_decide_the_horizons_a_caller_may_read(
        api: httpx.AsyncClient, conn: asyncpg.Connection) -> None:
    pro = await bearer(conn, "pro@example.com", tier="pro")
    for params, headers in [({"horizon": 14}, {}), ({"horizon": 30}, {}),
                            ({"horizon": 14}, pro), ({"horizon": 90}, pro)]:
        r = await api.get("/predictions/paxg", params=params, headers=headers)
        assert r.status_code == 403, (params, r.text)
        assert "forecast horizons" in r.json()["detail"]
    anonymous = await api.get("/predictions/paxg", params={"horizon": 30})
    assert "free tier" in anonymous.json()["detail"] and "1, 7 days" in anonymous.json()["detail"]
    for params in ({"horizon": 0}, {"horizon": "soon"}, {"horizon": 366}):
        assert (await api.get("/predictions/paxg", params=params)).status_code == 422
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert (await api.get("/predictions/paxg", headers=bad_token)).status_code == 401


async def test_a_horizon_the_job_does_not_make_is_forecast_on_demand_and_cached(
        api: httpx.AsyncClient, conn: asyncpg.Connection, redis_url: str) -> None:
    enterprise = await bearer(conn, "ent@example.com", tier="enterprise")
    before = await forecasts_made()
    r = await api.get("/predictions/PAXG", params={"horizon": 14}, headers=enterprise)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["asset_id"] == "paxg" and p["forecast_horizon"] == 14 and not p["cached"]
    assert p["lower_95"] <= p["confidence_lower"] <= p["predicted_price"] \
        <= p["confidence_upper"] <= p["upper_95"]
    assert len(p["path"]) == 14 and p["path"][-1]["mean"] == pytest.approx(p["predicted_price"])
    assert set(p["weights"]) >= {"naive", "arima", "ets"}
    # Calibrated on the spot (no stored calibration yet) and the calibration kept for the
    # job; no backtest has run, so there is no scorecard.
    assert p["model_version"].startswith("ens-v1(naive+arima-aic-v1+ets-damped-v1")
    assert not p["model_version"].endswith(":uncalibrated") and p["scorecard"] is None
    assert await conn.fetchval(
        "SELECT count(*) FROM forecast_calibrations WHERE asset_id = 'paxg'") == 1
    stored = await conn.fetchrow("SELECT * FROM predictions WHERE prediction_id = $1",
                                 p["prediction_id"])
    assert stored["forecast_horizon"] == 14
    assert stored["predicted_price"] == pytest.approx(p["predicted_price"])
    r_cache = cache.async_client(redis_url)
    try:
        key = cache.prediction_key("paxg", 14)
        assert json.loads(await r_cache.get(key))["prediction_id"] == p["prediction_id"]
        assert 0 < await r_cache.ttl(key) <= 3600
    finally:
        await r_cache.aclose()
    assert await forecasts_made() == before + 1

    # The cached path answers without the deployment.
    again = (await api.get("/predictions/paxg", params={"horizon": 14}, headers=enterprise)).json()
    assert again["cached"] and again["prediction_id"] == p["prediction_id"]
    assert await forecasts_made() == before + 1


async def test_missing_and_stale_rows_are_made_afresh_fresh_ones_are_served(
        api: httpx.AsyncClient, conn: asyncpg.Connection) -> None:
    # No job has run: the 7-day row is missing, so the deployment makes it.
    made = await forecasts_made()
    r = await api.get("/predictions/paxg", params={"horizon": 7})
    assert r.status_code == 200 and r.json()["forecast_horizon"] == 7
    assert await forecasts_made() == made + 1

    # A stored row within max_age_s is served from the database as it is; an older one
    # is made again (a cache miss in both cases: the cache holds neither).
    async def row(horizon: int, age: timedelta) -> int:
        return await conn.fetchval(
            """INSERT INTO predictions (asset_id, target, forecast_horizon, predicted_price,
                   confidence_lower, confidence_upper, lower_95, upper_95, target_time,
                   generated_at, model_version, path, weights)
               VALUES ('paxg', 'price', $1, 2400, 2300, 2500, 2200, 2600, now(), $2, 'test',
                       '[]', '{}') RETURNING prediction_id""",
            horizon, datetime.now(UTC) - age)

    fresh = await row(1, timedelta(minutes=10))
    assert (await api.get("/predictions/paxg", params={"horizon": 1})).json()[
        "prediction_id"] == fresh
    await conn.execute("DELETE FROM predictions WHERE prediction_id = $1", fresh)
    old = await row(1, timedelta(hours=3))
    remade = (await api.get("/predictions/paxg", params={"horizon": 1})).json()
    assert remade["prediction_id"] != old and remade["model_version"] != "test"
    assert await forecasts_made() == made + 2

    # What cannot be forecast is a clear 404, never a 500.
    for path, params, words in [
            ("/predictions/xaut", {"horizon": 7}, "day(s) of gold price data"),
            ("/predictions/paxg", {"target": "nav"}, "NAV-pinned assets only"),
            ("/predictions/buidl", {"target": "premium"}, "no premium series"),
            ("/predictions/no-such-asset", {}, "unknown asset")]:
        r = await api.get(path, params=params)
        assert r.status_code == 404 and words in r.json()["detail"], (path, r.text)


async def test_a_risk_score_not_stored_yet_is_computed_and_admins_can_refresh(
        api: httpx.AsyncClient, conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SELECT count(*) FROM risk_scores") == 0
    r = await api.get("/risk/PAXG")  # the risk deployment starts from zero replicas here
    assert r.status_code == 200, r.text
    score = r.json()
    assert score["asset_id"] == "paxg" and 0 <= score["composite_score"] <= 100
    assert set(score["explanation"]["sub_scores"]) == {"market", "credit", "regulatory",
                                                       "technical"}
    assert not score["cached"]
    assert (await api.get("/risk/paxg")).json() == score | {"cached": True}

    member = await bearer(conn, "member@example.com")
    admin = await bearer(conn, "admin@example.com", admin=True)
    assert (await api.post("/risk/paxg/refresh")).status_code == 401
    assert (await api.post("/risk/paxg/refresh", headers=member)).status_code == 403
    assert (await api.post("/risk/no-such-asset/refresh", headers=admin)).status_code == 404
    refreshed = await api.post("/risk/paxg/refresh", headers=admin)
    assert refreshed.status_code == 200
    assert refreshed.json()["score_id"] > score["score_id"]
    assert (await api.get("/risk/paxg")).json()["score_id"] == refreshed.json()["score_id"]
    assert await conn.fetchval("SELECT count(*) FROM risk_scores WHERE asset_id = 'paxg'") == 2
