"""REST routes of alerts (DESIGN.md's contract) with the seed's lifecycle.

``alerts_router(services, current_user)`` returns an ``APIRouter`` for the API app
(``serve.api``): ``services`` is its :class:`serve.api.Services` and ``current_user`` the
dependency that authenticates a request and returns an object with ``user_id`` and
``tier``. Every query is scoped to that user: another user's alert is a 404, exactly
like a missing or deleted one. Each change is announced on ``rwa:alerts:changed`` so
the monitor (``actors.alerts``) reloads that asset's alerts at once.

Statuses: bad condition values and targets → 422 naming the field; a lifecycle step
the alert's state does not allow → 409 saying what is allowed; over the tier's alert
cap → 403.
"""


import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import redis.exceptions
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from core import alert_store, cache
from core.alerts import (
    Action,
    ConditionType,
    NotificationMethod,
    RiskChange,
    apply,
    parse_condition,
    validate_target,
)
from core.errors import InvalidCondition, InvalidTransition

log = logging.getLogger(__name__)

_MAX_ID = 2**63 - 1

AlertId = Annotated[int, Path(ge=1, le=_MAX_ID, description="The alert's alert_id.")]
AssetRef = Annotated[str, Field(min_length=1, max_length=80,
                                description="An asset id (paxg) or symbol (PAXG).")]
ConditionValue = Annotated[dict[str, Any], Field(
    description="By condition_type: price_above/price_below {price}; pct_move {pct, "
                "window_minutes}; risk_change {points}; forecast_band {horizon, band: "
                "'80'|'95'}.")]
Target = Annotated[str | None, Field(
    default=None, max_length=2048,
    description="telegram: the chat id or @channel; push: the webhook URL; email: leave "
                "it out (the account's address).")]


class AlertIn(BaseModel):
    """A new alert; ``state: "draft"`` keeps it from running until activated."""

    model_config = ConfigDict(extra="forbid")

    asset_id: AssetRef
    condition_type: ConditionType
    condition_value: ConditionValue
    notification_method: NotificationMethod
    notification_target: Target = None
    state: Literal["active", "draft"] = "active"


class AlertPatch(BaseModel):
    """An edit: any of the fields; an active or paused alert becomes active again with
    its arming reset (the seed's ``modified`` step)."""

    model_config = ConfigDict(extra="forbid")

    asset_id: AssetRef | None = None
    condition_type: ConditionType | None = None
    condition_value: ConditionValue | None = None
    notification_method: NotificationMethod | None = None
    notification_target: Target = None


class AlertOut(BaseModel):
    alert_id: int
    asset_id: str
    symbol: str
    condition_type: str
    condition_value: dict[str, Any]
    notification_method: str
    notification_target: str | None
    state: str
    is_active: bool
    armed: bool
    risk_baseline: float | None
    trigger_count: int
    last_triggered_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AlertPage(BaseModel):
    items: list[AlertOut]
    total: int


def _caps(services: Any) -> dict[str, int]:
    tiers = getattr(getattr(services, "args", None), "tiers", None)
    if not tiers:
        from core.settings import default_tier_table

        tiers = default_tier_table()
    return {name: (t.max_alerts if hasattr(t, "max_alerts") else int(t["max_alerts"]))
            for name, t in tiers.items()}


def alerts_router(services: Any, current_user: Callable[..., Any], *,
                  max_alerts: Mapping[str, int] | None = None) -> APIRouter:
    """The alert routes.

    Args:
        services: The API's ``Services`` (pool, Redis, the id/symbol map).
        current_user: A FastAPI dependency returning the authenticated user (an object
            with ``user_id`` and ``tier``).
        max_alerts: Tier name → alerts a user may hold (every state but deleted);
            default: ``max_alerts`` of the Serve args' tier table (``AppArgs.tiers``), else
            of the settings' defaults. A tier missing from it gets the free tier's cap.
    """
    router = APIRouter(tags=["alerts"])
    User = Annotated[Any, Depends(current_user)]
    caps = dict(max_alerts) if max_alerts is not None else _caps(services)

    def cap_of(tier: str) -> int:
        return caps.get(tier, caps.get("free", 0))

    async def pool() -> asyncpg.Pool:
        return await services.ensure_pool()

    async def resolve(ref: str) -> str:
        key = ref.strip().lower()
        asset_id = services.symbols.get(key)
        if asset_id is None and not key.isprintable():  # PostgreSQL refuses NUL bytes
            raise HTTPException(422, f"asset_id: unknown asset {ref!r}")
        if asset_id is None:
            asset_id = await (await pool()).fetchval(
                "SELECT asset_id FROM assets WHERE lower(asset_id) = $1 OR lower(symbol) = $1"
                " ORDER BY lower(asset_id) = $1 DESC LIMIT 1", key)
        if asset_id is None:
            raise HTTPException(422, f"asset_id: unknown asset {ref!r}")
        return asset_id

    async def alert_or_404(conn: asyncpg.Connection, user_id: int, alert_id: int, *,
                           for_update: bool = False) -> dict[str, Any]:
        alert = await alert_store.get_alert(conn, user_id, alert_id, for_update=for_update)
        if alert is None:
            raise HTTPException(404, f"no alert {alert_id}")
        return alert

    async def current_risk(conn: asyncpg.Connection, asset_id: str) -> float | None:
        """The asset's composite risk score now: the risk_change baseline."""
        try:
            raw = await services.redis.get(cache.risk_key(asset_id))
            hit = json.loads(raw) if raw else None
        except (redis.exceptions.RedisError, OSError, ValueError):
            hit = None
        if isinstance(hit, dict) and isinstance(hit.get("composite_score"), (int, float)):
            return float(hit["composite_score"])
        return await alert_store.latest_risk_score(conn, asset_id)

    async def announce(alert_id: int, action: str, *asset_ids: str) -> None:
        """Tell the monitor; if Redis is down its next sweep picks the change up."""
        body = json.dumps({"alert_id": alert_id, "action": action,
                           "asset_ids": sorted(set(asset_ids))})
        try:
            await services.redis.publish(cache.ALERTS_CHANGED_CHANNEL, body)
        except (redis.exceptions.RedisError, OSError) as e:
            log.warning("alert change not announced (the monitor's sweep will see it): %s", e)

    def checked(condition_type: str, value: dict[str, Any], method: str,
                target: str | None) -> tuple[dict[str, Any], str | None]:
        try:
            condition = parse_condition(condition_type, value)
            target = validate_target(method, target)
        except InvalidCondition as e:
            raise HTTPException(422, str(e)) from e
        return condition.model_dump(mode="json"), target

    @router.post("/alerts", status_code=201, response_model=AlertOut)
    async def create_alert(body: AlertIn, user: User) -> dict[str, Any]:
        """Create an alert (``active`` by default, or a ``draft``)."""
        value, target = checked(body.condition_type, body.condition_value,
                                body.notification_method, body.notification_target)
        asset_id = await resolve(body.asset_id)
        cap = cap_of(user.tier)
        async with (await pool()).acquire() as conn, conn.transaction():
            if not await alert_store.lock_user(conn, user.user_id):
                raise HTTPException(401, "the authenticated user no longer exists")
            held = await alert_store.count_alerts(conn, user.user_id)
            if held >= cap:
                raise HTTPException(403, f"the {user.tier} tier allows {cap} alerts and "
                                         f"{held} exist; delete one or upgrade the tier")
            baseline = (await current_risk(conn, asset_id)
                        if body.condition_type == "risk_change" else None)
            alert = await alert_store.create_alert(
                conn, user_id=user.user_id, asset_id=asset_id,
                condition_type=body.condition_type, condition_value=value,
                notification_method=body.notification_method, notification_target=target,
                state=body.state, risk_baseline=baseline)
        await announce(alert["alert_id"], "created", asset_id)
        return alert

    @router.get("/alerts", response_model=AlertPage)
    async def list_alerts(
        user: User,
        state: Literal["draft", "active", "paused"] | None = None,
        asset_id: Annotated[str | None, Query(min_length=1, max_length=80)] = None,
    ) -> dict[str, Any]:
        """The caller's alerts (deleted ones are gone), optionally by state or asset."""
        resolved = await resolve(asset_id) if asset_id is not None else None
        async with (await pool()).acquire() as conn:
            items = await alert_store.list_alerts(conn, user.user_id, state=state,
                                                  asset_id=resolved)
        return {"items": items, "total": len(items)}

    @router.get("/alerts/{alert_id}", response_model=AlertOut)
    async def get_alert(alert_id: AlertId, user: User) -> dict[str, Any]:
        async with (await pool()).acquire() as conn:
            return await alert_or_404(conn, user.user_id, alert_id)

    @router.patch("/alerts/{alert_id}", response_model=AlertOut)
    async def update_alert(alert_id: AlertId, body: AlertPatch, user: User) -> dict[str, Any]:
        """Edit an alert. An active or paused one passes through ``modified`` and is
        active again, armed afresh (a risk_change baseline is taken anew); a draft stays
        a draft."""
        sent = body.model_fields_set
        if not sent:
            raise HTTPException(422, "nothing to change: send any of asset_id, "
                                     "condition_type, condition_value, notification_method, "
                                     "notification_target")
        new_asset = await resolve(body.asset_id) if body.asset_id is not None else None
        async with (await pool()).acquire() as conn, conn.transaction():
            alert = await alert_or_404(conn, user.user_id, alert_id, for_update=True)
            try:
                path = apply(alert["state"], "edit")
            except InvalidTransition as e:
                raise HTTPException(409, str(e)) from e
            condition_type = body.condition_type or alert["condition_type"]
            method = body.notification_method or alert["notification_method"]
            if "condition_value" in sent and body.condition_value is not None:
                value = body.condition_value
            elif "condition_type" in sent and condition_type != alert["condition_type"]:
                raise HTTPException(422, f"condition_value is needed with a new "
                                         f"condition_type ({condition_type})")
            else:
                value = alert["condition_value"]
            if "notification_target" in sent:
                target = body.notification_target
            elif method != alert["notification_method"]:
                target = None  # a new method needs its own target (or none, for email)
            else:
                target = alert["notification_target"]
            value, target = checked(condition_type, value, method, target)
            asset_id = new_asset or alert["asset_id"]
            changes = {"asset_id": asset_id, "condition_type": condition_type,
                       "condition_value": value, "notification_method": method,
                       "notification_target": target}
            baseline = await current_risk(conn, asset_id) if isinstance(
                parse_condition(condition_type, value), RiskChange) else None
            state = path[-1] if path else alert["state"]
            updated = await alert_store.update_alert(conn, alert_id, state=state,
                                                     changes=changes, rearm=True,
                                                     risk_baseline=baseline)
        await announce(alert_id, "modified", alert["asset_id"], asset_id)
        return updated

    async def step(alert_id: int, user: Any, action: Action) -> dict[str, Any]:
        async with (await pool()).acquire() as conn, conn.transaction():
            alert = await alert_or_404(conn, user.user_id, alert_id, for_update=True)
            try:
                path = apply(alert["state"], action)
            except InvalidTransition as e:
                raise HTTPException(409, str(e)) from e
            updated = await alert_store.update_alert(conn, alert_id, state=path[-1])
        await announce(alert_id, action, alert["asset_id"])
        return updated

    @router.post("/alerts/{alert_id}/activate", response_model=AlertOut)
    async def activate_alert(alert_id: AlertId, user: User) -> dict[str, Any]:
        """Start a draft (draft → active); 409 for any other state."""
        return await step(alert_id, user, "activate")

    @router.post("/alerts/{alert_id}/pause", response_model=AlertOut)
    async def pause_alert(alert_id: AlertId, user: User) -> dict[str, Any]:
        """Stop judging an active alert until resumed (active → paused)."""
        return await step(alert_id, user, "pause")

    @router.post("/alerts/{alert_id}/resume", response_model=AlertOut)
    async def resume_alert(alert_id: AlertId, user: User) -> dict[str, Any]:
        """Judge a paused alert again (paused → active), with the arming it had."""
        return await step(alert_id, user, "resume")

    @router.delete("/alerts/{alert_id}", status_code=204)
    async def delete_alert(alert_id: AlertId, user: User) -> Response:
        """Delete an alert in any state; it is gone from every route (its history is
        kept for the record, not served)."""
        await step(alert_id, user, "delete")
        return Response(status_code=204)

    @router.get("/alerts/{alert_id}/history")
    async def get_history(
        alert_id: AlertId, user: User,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Triggers, newest first: the trigger value, the channel, the delivery status
        (pending, sending, retrying, sent, failed), attempts, the last error, when it was
        sent, and every attempt's result (``attempt_log``)."""
        async with (await pool()).acquire() as conn:
            await alert_or_404(conn, user.user_id, alert_id)
            items = await alert_store.alert_history(conn, alert_id, limit=limit)
        return {"alert_id": alert_id, "items": items}

    return router
