"""Alerts and alert_history in PostgreSQL (migration 0010), shared by the API
(``serve.alerts``), the monitor (``actors.alerts``) and the dispatcher
(``core.notify.dispatch``).

The database is the arbiter of what fires and what is sent: :func:`fire` disarms an
armed active alert and records its trigger in one transaction (so two evaluators, a
tick and the sweep, or two monitors, never fire the same crossing twice), and
:func:`claim_delivery` hands a delivery to one sender at a time and never one recorded
as sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

#: Columns of an alert as the API shows it.
ALERT_COLUMNS = """a.alert_id, a.user_id, a.asset_id, s.symbol, a.condition_type,
    a.condition_value, a.notification_method, a.notification_target, a.state, a.is_active,
    a.armed, a.risk_baseline, a.trigger_count, a.last_triggered_at, a.created_at,
    a.updated_at"""

HISTORY_COLUMNS = """history_id, alert_id, triggered_at, trigger_value, idempotency_key,
    channel, delivery_status, attempts, error, sent_at, next_attempt_at, attempt_log"""


def _alert(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    out["condition_value"] = json.loads(out["condition_value"])
    return out


def _history(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["trigger_value"] = json.loads(out["trigger_value"]) if out["trigger_value"] else None
    out["attempt_log"] = json.loads(out["attempt_log"]) if out["attempt_log"] else []
    return out


# -- the API's side ---------------------------------------------------------------------


async def lock_user(conn: asyncpg.Connection, user_id: int) -> bool:
    """Lock the user's row for the transaction (serialises the alert cap check)."""
    return await conn.fetchval(
        "SELECT true FROM users WHERE user_id = $1 FOR UPDATE", user_id) is not None


async def count_alerts(conn: asyncpg.Connection, user_id: int) -> int:
    """Alerts the user holds against the tier cap: every state but deleted."""
    return await conn.fetchval(
        "SELECT count(*) FROM alerts WHERE user_id = $1 AND state <> 'deleted'", user_id)


async def create_alert(conn: asyncpg.Connection, *, user_id: int, asset_id: str,
                       condition_type: str, condition_value: dict[str, Any],
                       notification_method: str, notification_target: str | None,
                       state: str, risk_baseline: float | None) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""WITH a AS (
                INSERT INTO alerts (user_id, asset_id, condition_type, condition_value,
                                    notification_method, notification_target, state,
                                    is_active, risk_baseline)
                VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $7 = 'active', $8)
                RETURNING *)
            SELECT {ALERT_COLUMNS} FROM a JOIN assets s USING (asset_id)""",
        user_id, asset_id, condition_type, json.dumps(condition_value), notification_method,
        notification_target, state, risk_baseline)
    return _alert(row)  # type: ignore[return-value]


async def list_alerts(conn: asyncpg.Connection, user_id: int, *, state: str | None = None,
                      asset_id: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT {ALERT_COLUMNS} FROM alerts a JOIN assets s USING (asset_id)
            WHERE a.user_id = $1 AND a.state <> 'deleted'
              AND ($2::text IS NULL OR a.state = $2)
              AND ($3::text IS NULL OR a.asset_id = $3)
            ORDER BY a.alert_id""", user_id, state, asset_id)
    return [_alert(r) for r in rows]  # type: ignore[misc]


async def get_alert(conn: asyncpg.Connection, user_id: int, alert_id: int, *,
                    for_update: bool = False) -> dict[str, Any] | None:
    """The user's alert, or None when it does not exist, is deleted or is someone else's."""
    lock = "FOR UPDATE OF a" if for_update else ""
    return _alert(await conn.fetchrow(
        f"""SELECT {ALERT_COLUMNS} FROM alerts a JOIN assets s USING (asset_id)
            WHERE a.alert_id = $1 AND a.user_id = $2 AND a.state <> 'deleted' {lock}""",
        alert_id, user_id))


async def update_alert(conn: asyncpg.Connection, alert_id: int, *, state: str,
                       changes: dict[str, Any] | None = None, rearm: bool = False,
                       risk_baseline: float | None = None) -> dict[str, Any]:
    """Set the state (and, for an edit, the changed fields; ``rearm`` resets the arming,
    the trigger clock and the risk baseline)."""
    changes = dict(changes or {})
    sets = ["state = $2", "is_active = ($2 = 'active')", "updated_at = now()"]
    args: list[Any] = [alert_id, state]
    for column in ("asset_id", "condition_type", "condition_value", "notification_method",
                   "notification_target"):
        if column in changes:
            value = changes[column]
            args.append(json.dumps(value) if column == "condition_value" else value)
            cast = "::jsonb" if column == "condition_value" else ""
            sets.append(f"{column} = ${len(args)}{cast}")
    if rearm:
        args.append(risk_baseline)
        sets += ["armed = true", "last_triggered_at = NULL", f"risk_baseline = ${len(args)}"]
    if state == "deleted":
        sets.append("deleted_at = now()")
    row = await conn.fetchrow(
        f"""WITH a AS (UPDATE alerts SET {', '.join(sets)} WHERE alert_id = $1 RETURNING *)
            SELECT {ALERT_COLUMNS} FROM a JOIN assets s USING (asset_id)""", *args)
    return _alert(row)  # type: ignore[return-value]


async def alert_history(conn: asyncpg.Connection, alert_id: int, *,
                        limit: int = 100) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT {HISTORY_COLUMNS} FROM alert_history WHERE alert_id = $1
            ORDER BY triggered_at DESC, history_id DESC LIMIT $2""", alert_id, limit)
    return [_history(r) for r in rows]


async def latest_risk_score(conn: asyncpg.Connection, asset_id: str) -> float | None:
    return await conn.fetchval(
        """SELECT composite_score FROM risk_scores WHERE asset_id = $1
           ORDER BY calculated_at DESC LIMIT 1""", asset_id)


async def latest_forecast(conn: asyncpg.Connection, asset_id: str,
                          horizon: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT confidence_lower, confidence_upper, lower_95, upper_95, generated_at
           FROM predictions
           WHERE asset_id = $1 AND forecast_horizon = $2 AND target = 'price'
           ORDER BY generated_at DESC LIMIT 1""", asset_id, horizon)
    return dict(row) if row else None


# -- the monitor's side -----------------------------------------------------------------


async def active_alerts(conn: asyncpg.Connection,
                        asset_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Active alerts (all, or those of ``asset_ids``) with what evaluating and notifying
    them needs: the asset's symbol and the owner's email."""
    rows = await conn.fetch(
        """SELECT a.alert_id, a.user_id, a.asset_id, s.symbol, a.condition_type,
                  a.condition_value, a.notification_method, a.notification_target, a.armed,
                  a.risk_baseline, a.last_triggered_at, u.email
           FROM alerts a JOIN assets s USING (asset_id) JOIN users u USING (user_id)
           WHERE a.state = 'active' AND ($1::text[] IS NULL OR a.asset_id = ANY($1))
           ORDER BY a.alert_id""", list(asset_ids) if asset_ids is not None else None)
    return [_alert(r) for r in rows]  # type: ignore[misc]


async def set_risk_baseline(conn: asyncpg.Connection, alert_id: int, score: float) -> bool:
    """Give a risk_change alert made before any risk score existed its baseline."""
    return await conn.fetchval(
        """UPDATE alerts SET risk_baseline = $2 WHERE alert_id = $1 AND risk_baseline IS NULL
           RETURNING true""", alert_id, score) is not None


async def fire(conn: asyncpg.Connection, alert_id: int, *, trigger_value: dict[str, Any],
               message: str, fallback_target: str | None,
               new_risk_baseline: float | None = None) -> dict[str, Any] | None:
    """Disarm an armed active alert and record the trigger with its pending delivery.

    Returns:
        The history row, or None when the alert was not armed and active any more (it
        fired elsewhere, was paused, edited or deleted): nothing is recorded then.
    """
    async with conn.transaction():
        alert = await conn.fetchrow(
            """UPDATE alerts SET armed = false, trigger_count = trigger_count + 1,
                   last_triggered_at = now(),
                   risk_baseline = coalesce($2, risk_baseline)
               WHERE alert_id = $1 AND armed AND state = 'active'
               RETURNING alert_id, trigger_count, notification_method, notification_target,
                         last_triggered_at""", alert_id, new_risk_baseline)
        if alert is None:
            return None
        row = await conn.fetchrow(
            f"""INSERT INTO alert_history (alert_id, triggered_at, trigger_value,
                    idempotency_key, channel, target, message, delivery_status,
                    next_attempt_at)
                VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, 'pending', $2)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING {HISTORY_COLUMNS}""",
            alert_id, alert["last_triggered_at"], json.dumps(trigger_value),
            f"alert:{alert_id}:{alert['trigger_count']}", alert["notification_method"],
            alert["notification_target"] or fallback_target, message)
        return _history(row) if row else None


async def rearm(conn: asyncpg.Connection, alert_id: int) -> bool:
    return await conn.fetchval(
        """UPDATE alerts SET armed = true WHERE alert_id = $1 AND NOT armed AND state = 'active'
           RETURNING true""", alert_id) is not None


async def claim_delivery(conn: asyncpg.Connection, history_id: int, *,
                         lease_s: float) -> dict[str, Any] | None:
    """Take one delivery attempt: only a pending or retrying delivery, or one whose
    sender's lease ran out (it crashed), and never one recorded as sent.

    Returns:
        The row with ``attempts`` counting this attempt, or None when there is nothing
        to send (sent, failed, held by another sender, or not due yet).
    """
    row = await conn.fetchrow(
        f"""UPDATE alert_history
            SET delivery_status = 'sending', attempts = attempts + 1,
                claimed_until = now() + make_interval(secs => $2)
            WHERE history_id = $1
              AND (delivery_status IN ('pending', 'retrying')
                   OR (delivery_status = 'sending' AND claimed_until < now()))
              AND (next_attempt_at IS NULL OR next_attempt_at <= now())
            RETURNING {HISTORY_COLUMNS}, target, message""", history_id, lease_s)
    return _history(row) if row else None


async def record_attempt(conn: asyncpg.Connection, history_id: int, *, attempt: int,
                         status: str, error: str | None = None,
                         retry_after_s: float | None = None,
                         retry_in_s: float | None = None) -> bool:
    """Record the result of the claimed attempt number ``attempt``: ``sent``,
    ``retrying`` (due again in ``retry_in_s``, by the database's clock) or ``failed``.
    Only the claim's holder can record: the row must be 'sending' at that attempt."""
    entry = {"attempt": attempt, "at": datetime.now(UTC).isoformat(), "status": status,
             "error": error, "retry_after_s": retry_after_s}
    return await conn.fetchval(
        """UPDATE alert_history
           SET delivery_status = $3, error = $4, claimed_until = NULL,
               next_attempt_at = CASE WHEN $5::float8 IS NULL THEN NULL
                                      ELSE now() + make_interval(secs => $5) END,
               sent_at = CASE WHEN $3 = 'sent' THEN now() END,
               attempt_log = attempt_log || jsonb_build_array($6::jsonb)
           WHERE history_id = $1 AND delivery_status = 'sending' AND attempts = $2
           RETURNING true""",
        history_id, attempt, status, error, retry_in_s, json.dumps(entry)) is not None


async def due_deliveries(conn: asyncpg.Connection, *, limit: int = 100) -> list[int]:
    """Deliveries to (re)try now: due pending or retrying ones, and claims whose lease
    ran out."""
    rows = await conn.fetch(
        """SELECT history_id FROM alert_history
           WHERE (delivery_status IN ('pending', 'retrying')
                  AND (next_attempt_at IS NULL OR next_attempt_at <= now()))
              OR (delivery_status = 'sending' AND claimed_until < now())
           ORDER BY next_attempt_at NULLS FIRST LIMIT $1""", limit)
    return [r["history_id"] for r in rows]
