"""Predictions, risk and sentiment scoring: the routes that read what the analytics
layer (``training``) produced, or ask a model deployment for it.

``analytics_router(services, sentiment=..., prediction=..., risk=...)`` returns the
router ``serve.api`` mounts; ``services`` is its :class:`serve.api.Services`, the others
Serve handles to the model deployments (None where one is not deployed).

A prediction is read the seed's way: the cache, then the database, then (a miss, or
a stored row past ``max_age_s``) the prediction deployment, which makes it with the
hourly job's code and stores and caches it. The horizons a caller may read are their
tier's ``forecast_horizons`` (anonymous callers: the free tier's); others are a 403.
A risk score missing from cache and database is computed by the risk deployment.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from core import cache
from core.catalog import by_id_or_symbol
from serve import queries
from serve.auth.context import auth_for
from serve.auth.deps import optional_user, require_admin
from serve.auth.users import User
from training import risk as risk_scores

log = logging.getLogger(__name__)

#: Texts one POST /sentiment may hold (the deployment's own limit), and characters a text.
MAX_TEXTS = 256
MAX_TEXT_CHARS = 2000


class SentimentRequest(BaseModel):
    """Texts to score: headlines or short news items."""

    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                 max_length=MAX_TEXT_CHARS)]] = Field(
        min_length=1, max_length=MAX_TEXTS)


async def ask(call: Any, *, timeout_s: float, what: str) -> dict[str, Any]:
    """The answer of a deployment call; 503 when the deployment cannot answer in time."""
    try:
        return await asyncio.wait_for(call, timeout_s)
    except TimeoutError as e:
        raise HTTPException(503, f"{what} took longer than {timeout_s:.0f} s; try again "
                                 "shortly") from e
    except (RayError, RayServeException) as e:
        log.warning("%s failed: %s", what, e)
        raise HTTPException(503, f"{what} is unavailable right now") from e


def analytics_router(services: Any, *, sentiment: Any = None, prediction: Any = None,
                     risk: Any = None) -> APIRouter:
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
            row = await risk_scores.latest_risk(conn, asset["asset_id"])
        if row is not None:
            return row | {"cached": False}
        if risk is None or args.risk is None:
            raise HTTPException(404, f"no risk score for {asset['asset_id']} yet")
        outcome = await ask(risk.score.remote(asset["asset_id"]), timeout_s=args.risk.timeout_s,
                            what="risk scoring")
        if "error" in outcome:
            raise HTTPException(404, f"no risk score for {asset['asset_id']} yet: "
                                     f"{outcome['error']}")
        return outcome["risk"] | {"cached": False}

    @router.post("/risk/{asset_id}/refresh", tags=["risk"])
    async def refresh_risk(
        asset_id: str, admin: Annotated[User, Depends(require_admin)]
    ) -> dict[str, Any]:
        """Admins: score the asset now (fresh news, a changed catalog entry) instead of
        waiting for the hourly run; stored and cached like a scheduled score."""
        if risk is None or args.risk is None:
            raise HTTPException(503, "risk scoring is not deployed in this application")
        asset = await services.asset_or_404(asset_id)
        outcome = await ask(risk.score.remote(asset["asset_id"]), timeout_s=args.risk.timeout_s,
                            what="risk scoring")
        if "error" in outcome:
            raise HTTPException(409, f"cannot score {asset['asset_id']}: {outcome['error']}")
        log.info("risk of %s refreshed by admin %s", asset["asset_id"], admin.user_id)
        return outcome["risk"] | {"cached": False}

    @router.get("/risk/{asset_id}/history", tags=["risk"])
    async def get_risk_history(
        asset_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        """Past scores, newest first, without explanations."""
        asset = await services.asset_or_404(asset_id)
        async with (await services.ensure_pool()).acquire() as conn:
            rows = await risk_scores.risk_history(conn, asset["asset_id"], limit=limit)
        return {"asset_id": asset["asset_id"], "items": rows}

    def not_produced(asset_ref: str, horizon: int, target: str) -> str:
        return (f"no {target} prediction for {asset_ref} at horizon {horizon} yet; "
                f"horizons produced: {', '.join(map(str, args.prediction_horizons))}"
                + ("; nav and premium exist for NAV-pinned assets only"
                   if target != "price" else ""))

    @router.get("/predictions/{asset_id}", tags=["predictions"])
    async def get_prediction(
        asset_id: str, horizon: Annotated[int, Query(ge=1, le=365)] = 7,
        target: Annotated[Literal["price", "nav", "premium"], Query(
            description="price; for NAV-pinned assets also nav (its accrual) and premium "
                        "(price over NAV, minus 1)")] = "price",
        user: Annotated[User | None, Depends(optional_user)] = None,
    ) -> dict[str, Any]:
        """The latest ensemble forecast: point, 80/95 % bands, the path up to the horizon,
        the ensemble weights and the backtest scorecard against the naive forecast.
        ``horizon`` must be one of the caller's tier's forecast horizons (anonymous
        callers: the free tier's)."""
        tier = user.tier if user is not None else "free"
        allowed = auth_for(services).limits(tier).forecast_horizons
        if horizon not in allowed:
            who = "anonymous callers get the free tier's" if user is None else \
                f"your tier is {tier}"
            raise HTTPException(
                403, f"horizon {horizon} is not among the forecast horizons of your tier "
                     f"({who}: {', '.join(map(str, sorted(allowed)))} days); a higher tier "
                     "reads more")
        asset_ref = await services.resolve_asset_id(asset_id)
        if target != "price" and not getattr(by_id_or_symbol(asset_ref), "nav_pinned", True):
            raise HTTPException(404, not_produced(asset_ref, horizon, target))
        # The seed's prediction request flow: the cache first, then the database, then
        # the prediction deployment.
        hit = await services.cached(cache.prediction_key(asset_ref, horizon, target),
                                   near=True)
        if hit:
            return hit | {"cached": True}
        row = await queries.latest_prediction(await services.ensure_pool(), asset_ref, horizon,
                                              target)
        if prediction is None or args.prediction is None:
            if row is None:
                raise HTTPException(404, not_produced(asset_ref, horizon, target))
            return row | {"cached": False}
        if row is not None and not stale(row["generated_at"], args.prediction.max_age_s):
            return row | {"cached": False}
        try:
            outcome = await ask(prediction.forecast.remote(asset_ref, target, horizon),
                                timeout_s=args.prediction.timeout_s, what="forecasting")
        except HTTPException:
            if row is not None:  # an old forecast beats none while the deployment is away
                return row | {"cached": False}
            raise
        if "error" in outcome:
            if row is not None:
                return row | {"cached": False}
            raise HTTPException(404, f"no {target} prediction for {asset_ref} at horizon "
                                     f"{horizon}: {outcome['error']}")
        return outcome["prediction"] | {"cached": False}

    @router.post("/sentiment", tags=["sentiment"])
    async def score_sentiment(body: SentimentRequest) -> dict[str, Any]:
        """Score texts with the sentiment deployment: ``label`` positive, neutral or
        negative, and ``score`` = P(positive) - P(negative) in [-1, 1]."""
        if sentiment is None:
            raise HTTPException(503, "sentiment scoring is not deployed in this application")
        items = await sentiment.score.remote(body.texts)
        return {"items": items}

    return router


def stale(generated_at: datetime, max_age_s: float) -> bool:
    """Whether a stored prediction made at ``generated_at`` is older than ``max_age_s``."""
    if generated_at.tzinfo is None:
        generated_at = generated_at.replace(tzinfo=UTC)
    return (datetime.now(UTC) - generated_at).total_seconds() > max_age_s
