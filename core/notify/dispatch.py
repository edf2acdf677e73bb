"""Delivering alert triggers: one alert_history row per trigger, sent through its
channel (email, Telegram, push) with retries and never twice once recorded as sent.

Each attempt is claim → send → record (``core.alert_store``): the claim is a
conditional UPDATE that only a pending or retrying row (or one whose sender's lease ran
out) passes, so a row recorded as sent is never sent again, and two senders never hold
one row at once. Retryable failures (5xx, timeouts, 429) are retried at once a few
times with exponential backoff (tenacity; a 429 waits its ``retry_after``), then left
``retrying`` with a due time for the monitor's sweep, which survives restarts; after
``max_attempts`` a delivery is ``failed``. Permanent failures (unknown chat, refused
recipient, channel not configured) fail at once. Every attempt's result is appended to
the row's ``attempt_log``.

What remains at-least-once: a sender that dies after the channel accepted a message but
before recording it leaves a claim whose lease runs out, and that delivery is sent
again. Webhooks carry ``X-RWA-Idempotency-Key`` for receivers to drop such repeats.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from core import alert_store
from core.errors import DeliveryError, DeliveryRateLimited
from core.notify.push import send_push
from core.notify.telegram import send_telegram
from core.settings import AlertSettings, PushSettings, SmtpSettings, TelegramSettings

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class _TryAgain(Exception):
    """Internal: the attempt failed in a retryable way; wait ``delay_s`` and try again."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s)
        self.delay_s = delay_s


class Dispatcher:
    """Sends the deliveries of alert_history rows.

    Args:
        alerts: Retry policy (attempts, backoff, lease).
        smtp, telegram, push: The channels' settings; an unconfigured channel fails its
            deliveries permanently with a message naming the variable to set.
        client: The HTTP client for Telegram and webhooks (one is made otherwise).
    """

    def __init__(self, *, alerts: AlertSettings, smtp: SmtpSettings | None = None,
                 telegram: TelegramSettings | None = None, push: PushSettings | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self.alerts = alerts
        self.smtp = smtp or SmtpSettings()
        self.telegram = telegram or TelegramSettings()
        self.push = push or PushSettings()
        self._own_client = client is None
        self.http = client or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self.sent = 0
        self.failed = 0
        self.retried = 0

    async def close(self) -> None:
        if self._own_client:
            await self.http.aclose()

    def backoff_s(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based): base × 2^(attempt-1)."""
        a = self.alerts
        return min(a.retry_max_s, a.retry_base_s * 2 ** max(0, attempt - 1))

    async def deliver(self, pool: asyncpg.Pool, history_id: int) -> str | None:
        """Try one delivery until it is sent or failed, or its inline attempts are spent.

        Returns:
            ``"sent"``, ``"failed"``, ``"retrying"`` (left for the sweep), or None when
            there was nothing to send (already sent or failed, held by another sender,
            not due yet).
        """
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.alerts.inline_attempts),
            wait=lambda state: state.outcome.exception().delay_s,  # type: ignore[union-attr]
            retry=retry_if_exception_type(_TryAgain),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(pool, history_id)
        except _TryAgain:
            return "retrying"
        return None  # pragma: no cover - tenacity either returns or raises

    async def _attempt(self, pool: asyncpg.Pool, history_id: int) -> str | None:
        async with pool.acquire() as conn:
            row = await alert_store.claim_delivery(conn, history_id, lease_s=self.alerts.lease_s)
        if row is None:
            return None
        n = row["attempts"]
        try:
            await self.send(row)
        except DeliveryError as e:
            return await self._failed(pool, row, e)
        except Exception as e:  # a bug or an unforeseen client error: retry, don't lose it
            log.exception("delivery %s crashed", history_id)
            return await self._failed(pool, row, DeliveryError(
                f"unexpected {type(e).__name__}", permanent=False))
        async with pool.acquire() as conn:
            recorded = await alert_store.record_attempt(conn, history_id, attempt=n,
                                                        status="sent")
        if not recorded:  # our lease ran out mid-send and another sender took over
            log.warning("delivery %s sent but its claim was taken over", history_id)
        self.sent += 1
        return "sent"

    async def _failed(self, pool: asyncpg.Pool, row: dict[str, Any], e: DeliveryError) -> str:
        n = row["attempts"]
        retry_after = e.retry_after_s if isinstance(e, DeliveryRateLimited) else None
        final = e.permanent or n >= self.alerts.max_attempts
        delay = None if final else min(self.alerts.retry_max_s,
                                       retry_after if retry_after is not None
                                       else self.backoff_s(n))
        async with pool.acquire() as conn:
            await alert_store.record_attempt(
                conn, row["history_id"], attempt=n, status="failed" if final else "retrying",
                error=str(e), retry_after_s=retry_after, retry_in_s=delay)
        log.warning("delivery %s (%s) attempt %d failed: %s%s", row["history_id"],
                    row["channel"], n, e, "" if final else f"; again in {delay:.1f} s")
        if final:
            self.failed += 1
            return "failed"
        self.retried += 1
        raise _TryAgain(delay or 0.0)

    async def send(self, row: dict[str, Any]) -> None:
        """Send one delivery through its channel; raises :class:`DeliveryError`."""
        channel, target, message = row["channel"], row["target"], row["message"] or ""
        trigger = row["trigger_value"] or {}
        if not target:
            raise DeliveryError(f"{channel} delivery has no target", permanent=True)
        if channel == "telegram":
            await send_telegram(self.telegram, target, message, client=self.http)
        elif channel == "push":
            payload = {
                "type": "alert.triggered",
                "alert_id": row["alert_id"],
                "history_id": row["history_id"],
                "idempotency_key": row["idempotency_key"],
                "triggered_at": row["triggered_at"].isoformat(),
                "message": message,
                "trigger": trigger,
            }
            await send_push(self.push, target, payload,
                            idempotency_key=row["idempotency_key"], client=self.http)
        elif channel == "email":
            from core.notify.email import send_email

            subject = f"RWA Prime alert: {trigger.get('symbol') or trigger.get('asset_id', '')}"
            await send_email(self.smtp, target, subject.strip(), message)
        else:
            raise DeliveryError(f"unknown channel {channel!r}", permanent=True)
