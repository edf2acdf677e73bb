"""Telegram through the Bot API: ``POST {base_url}/bot{token}/sendMessage`` with
``chat_id`` and ``text``.

Every Bot API answer is ``{"ok": true, "result": …}`` or ``{"ok": false, "error_code",
"description", "parameters"?}``. A 429 carries ``parameters.retry_after`` (seconds) and
raises :class:`DeliveryRateLimited`; 5xx, timeouts and refused connections are retryable
:class:`DeliveryError`; other errors (400 chat not found, 401 bad token, 403 bot
blocked) are permanent. The token is part of the URL, so URLs are never logged::

    message_id = await send_telegram(settings.telegram, "123456", "BUIDL is above 1.01")
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from core.errors import DeliveryError, DeliveryRateLimited
from core.settings import TelegramSettings

log = logging.getLogger(__name__)

#: Telegram refuses longer messages.
MAX_TEXT_CHARS = 4096


async def send_telegram(settings: TelegramSettings, chat_id: str, text: str, *,
                        client: httpx.AsyncClient | None = None) -> int:
    """Send ``text`` to ``chat_id``; return the message id Telegram gave it.

    Args:
        settings: The bot token and API root.
        chat_id: A chat id (digits, negative for groups) or an ``@channel`` name.
        text: Plain text; cut to Telegram's 4096 characters.
        client: An HTTP client to reuse; one is made for the call otherwise.

    Raises:
        DeliveryRateLimited: 429 with ``retry_after``.
        DeliveryError: not delivered; ``permanent`` says whether retrying can help.
    """
    if settings.bot_token is None or not settings.bot_token.get_secret_value():
        raise DeliveryError("telegram is not configured: set RWA_TELEGRAM__BOT_TOKEN",
                            permanent=True)
    url = f"{settings.base_url.rstrip('/')}/bot{settings.bot_token.get_secret_value()}/sendMessage"
    body = {"chat_id": chat_id, "text": text[:MAX_TEXT_CHARS]}
    own = client is None
    http = client or httpx.AsyncClient(timeout=settings.timeout_s)
    try:
        response = await http.post(url, json=body, timeout=settings.timeout_s)
    except httpx.HTTPError as e:  # refused, reset, timed out: the message did not go out
        raise DeliveryError(f"telegram unreachable: {type(e).__name__}", permanent=False) from e
    finally:
        if own:
            await http.aclose()
    answer = _answer(response)
    if answer.get("ok") is True:
        result = answer.get("result") or {}
        message_id = result.get("message_id") if isinstance(result, dict) else None
        log.info("telegram message %s sent to chat %s", message_id, chat_id)
        return int(message_id) if isinstance(message_id, int) else 0
    code = answer.get("error_code", response.status_code)
    description = str(answer.get("description") or f"HTTP {response.status_code}")[:300]
    if code == 429 or response.status_code == 429:
        params = answer.get("parameters") or {}
        retry_after = params.get("retry_after") if isinstance(params, dict) else None
        if not isinstance(retry_after, (int, float)) or retry_after < 0:
            retry_after = _retry_after_header(response) or 1.0
        raise DeliveryRateLimited(f"telegram 429: {description}", retry_after_s=float(retry_after))
    retryable = response.status_code >= 500 or (isinstance(code, int) and code >= 500)
    raise DeliveryError(f"telegram {code}: {description}", permanent=not retryable)


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The Bot API's JSON answer; a proxy's HTML error page becomes one by its status."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "ok" in data:
        return data
    if response.is_success:
        # A 2xx without the Bot API's envelope: we cannot tell it was sent; a retry might
        # duplicate, but silence would lose the alert, and this is not a Telegram answer.
        return {"ok": False, "error_code": 502, "description": "answer without 'ok'"}
    return {"ok": False, "error_code": response.status_code,
            "description": f"HTTP {response.status_code}"}


def _retry_after_header(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
