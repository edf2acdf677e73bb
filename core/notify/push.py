"""Push notifications as signed webhooks: one JSON ``POST`` to the URL the alert names.

Headers a receiver checks:

* ``X-RWA-Timestamp``: Unix seconds when it was signed;
* ``X-RWA-Signature``: ``sha256=<hex>``, HMAC-SHA256 with the shared signing secret over
  ``<timestamp>.<raw body>`` (reject stale timestamps to stop replays);
* ``X-RWA-Idempotency-Key``: the same for every attempt at one trigger, so a receiver
  drops a retry it has already seen.

2xx is delivered; 429 (``Retry-After``) raises :class:`DeliveryRateLimited`; 408, 5xx and
network errors are retryable; other 4xx are permanent.

The URL is a user's, so it is resolved at send time and refused (permanently) when any of
its addresses is not a public one, unless ``PushSettings.allow_private_targets``: an alert
must not become a way to reach the platform's own network. (A name that resolves
differently between this check and the connection is not covered; redirects are never
followed.)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.errors import DeliveryError, DeliveryRateLimited
from core.settings import PushSettings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-RWA-Signature"
TIMESTAMP_HEADER = "X-RWA-Timestamp"
IDEMPOTENCY_HEADER = "X-RWA-Idempotency-Key"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-RWA-Signature`` value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *,
           tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """What a receiver does: a matching signature on a fresh timestamp."""
    try:
        age = abs((now if now is not None else time.time()) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


async def check_public(url: str) -> None:
    """Raise a permanent DeliveryError unless every address of ``url``'s host is public."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise DeliveryError("webhook URL has no host", permanent=True)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except (OSError, ValueError) as e:  # unknown name (maybe for now), bad port
        raise DeliveryError(f"webhook host does not resolve: {type(e).__name__}",
                            permanent=False) from e
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not address.is_global:
            raise DeliveryError(f"webhook host {host} resolves to a non-public address "
                                f"({address}); refused", permanent=True)


async def send_push(settings: PushSettings, url: str, payload: dict[str, Any], *,
                    idempotency_key: str, client: httpx.AsyncClient | None = None) -> int:
    """POST ``payload`` to ``url``, signed; return the receiver's status code.

    Raises:
        DeliveryRateLimited: 429 (``Retry-After``, default 1 s).
        DeliveryError: not delivered; ``permanent`` says whether retrying can help (a
            non-public address is permanent).
    """
    if settings.signing_secret is None or not settings.signing_secret.get_secret_value():
        raise DeliveryError("push is not configured: set RWA_PUSH__SIGNING_SECRET",
                            permanent=True)
    if not settings.allow_private_targets:
        await check_public(url)
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "rwa-prime-alerts/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(settings.signing_secret.get_secret_value(), timestamp, body),
        IDEMPOTENCY_HEADER: idempotency_key,
    }
    own = client is None
    http = client or httpx.AsyncClient(timeout=settings.timeout_s)
    try:
        # No redirects: a signed alert goes where the user said, nowhere else.
        response = await http.post(url, content=body, headers=headers,
                                   timeout=settings.timeout_s, follow_redirects=False)
    except httpx.HTTPError as e:
        raise DeliveryError(f"webhook unreachable: {type(e).__name__}", permanent=False) from e
    finally:
        if own:
            await http.aclose()
    status = response.status_code
    if 200 <= status < 300:
        log.info("webhook delivered (%s), key %s", status, idempotency_key)
        return status
    if status == 429:
        try:
            retry_after = max(0.0, float(response.headers.get("Retry-After", "1")))
        except ValueError:
            retry_after = 1.0
        raise DeliveryRateLimited("webhook answered 429", retry_after_s=retry_after)
    raise DeliveryError(f"webhook answered {status}",
                        permanent=not (status >= 500 or status == 408))
