"""Predictions, risk and sentiment scoring: the routes that read what the analytics
layer (``training``) produced, or ask a model deployment for it.

``analytics_router(services, sentiment=...)`` returns the router ``serve.api`` mounts;
``services`` is its :class:`serve.api.Services`, ``sentiment`` a Serve handle to the
sentiment deployment (or None where it is not deployed).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core import cache
from serve import queries
from training import risk

#: Texts one POST /sentiment may hold (the deployment's own limit), and characters a text.
MAX_TEXTS = 256
MAX_TEXT_CHARS = 2000


class SentimentRequest(BaseModel):
    """Texts to score: headlines or short news items."""

    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                 max_length=MAX_TEXT_CHARS)]] = Field(
        min_length=1, max_length=MAX_TEXTS)


def analytics_router(services: Any, *, sentiment: Any = None) -> APIRouter:
    router = APIRouter()
    args = services.args

    @router.get("/risk/{asset_id}", tags=["risk"])
    async def get_risk(asset_id: str) -> dict[str, Any]:
        """The latest composite risk score (0-100, higher is riskier), its four sub-scores
        and the explanation factor by factor (docs/risk-methodology.md)."""
        asset = await services.asset_or_404(asset_id)
        hit = await services.cached(cache.risk_key(asset["asset_id"]))
        if hit:
            return hit | {"cached": True}
        async with (await services.ensure_pool()).acquire() as conn:
            row = await risk.latest_risk(conn, asset["asset_id"])
        if row is None:
            raise HTTPException(404, f"no risk score for {asset['asset_id']} yet")
        return row | {"cached": False}

    @router.get("/risk/{asset_id}/history", tags=["risk"])
    async def get_risk_history(
        asset_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        """Past scores, newest first, without explanations."""
        asset = await services.asset_or_404(asset_id)
        async with (await services.ensure_pool()).acquire() as conn:
            rows = await risk.risk_history(conn, asset["asset_id"], limit=limit)
        return {"asset_id": asset["asset_id"], "items": rows}

    @router.get("/predictions/{asset_id}", tags=["predictions"])
    async def get_prediction(
        asset_id: str, horizon: Annotated[int, Query(ge=1, le=365)] = 7,
        target: Annotated[Literal["price", "nav", "premium"], Query(
            description="price; for NAV-pinned assets also nav (its accrual) and premium "
                        "(price over NAV, minus 1)")] = "price",
    ) -> dict[str, Any]:
        """The latest ensemble forecast: point, 80/95 % bands, the path up to the horizon,
        the ensemble weights and the backtest scorecard against the naive forecast."""
        asset_ref = await services.resolve_asset_id(asset_id)
        # The seed's prediction request flow: the cache first, then the database.
        hit = await services.cached(cache.prediction_key(asset_ref, horizon, target))
        if hit:
            return hit | {"cached": True}
        row = await queries.latest_prediction(await services.ensure_pool(), asset_ref, horizon,
                                              target)
        if row is None:
            raise HTTPException(
                404, f"no {target} prediction for {asset_ref} at horizon {horizon} yet; "
                     f"horizons produced: {', '.join(map(str, args.prediction_horizons))}"
                     + ("; nav and premium exist for NAV-pinned assets only"
                        if target != "price" else ""))
        return row | {"cached": False}

    @router.post("/sentiment", tags=["sentiment"])
    async def score_sentiment(body: SentimentRequest) -> dict[str, Any]:
        """Score texts with the sentiment deployment: ``label`` positive, neutral or
        negative, and ``score`` = P(positive) - P(negative) in [-1, 1]."""
        if sentiment is None:
            raise HTTPException(503, "sentiment scoring is not deployed in this application")
        items = await sentiment.score.remote(body.texts)
        return {"items": items}

    return router
