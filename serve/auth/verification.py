"""Email verification: a signed token (typ ``email_verify``, bound to the address,
expiring) mailed to the user; ``POST /auth/verify-email`` spends it once."""

from __future__ import annotations

import logging

from core.errors import DeliveryError
from core.notify.email import send_email
from serve.auth.context import Auth

log = logging.getLogger(__name__)

SUBJECT = "Confirm your email address for RWA Prime"


def message_body(*, token: str, public_url: str, ttl_s: int) -> str:
    hours = max(1, ttl_s // 3600)
    return (
        "Welcome to RWA Prime.\n\n"
        f"Confirm your email address by opening this link within {hours} hours:\n"
        f"{public_url.rstrip('/')}/verify-email?token={token}\n\n"
        "or by sending this token to POST /auth/verify-email as {\"token\": \"…\"}:\n"
        f"{token}\n\n"
        "If you did not create an RWA Prime account, ignore this message.\n")


async def send_verification(auth: Auth, user_id: int, email: str) -> None:
    """Mail a fresh verification token to ``email``.

    Raises:
        DeliveryError: Email is not configured or the server did not take the message.
    """
    if auth.smtp is None or not auth.smtp.configured:
        raise DeliveryError("email delivery is not configured (no SMTP server)", permanent=True)
    ttl_s = auth.settings.email_token_ttl_s
    token = auth.tokens.issue(user_id, "email_verify", ttl_s=ttl_s, email=email)
    await send_email(auth.smtp, email, SUBJECT,
                     message_body(token=token, public_url=auth.settings.public_url, ttl_s=ttl_s))


async def send_verification_quietly(auth: Auth, user_id: int, email: str) -> None:
    """``send_verification`` after registration: a failure is logged, not raised (the
    account exists either way, and the user can ask for another email)."""
    try:
        await send_verification(auth, user_id, email)
    except DeliveryError as e:
        log.warning("verification email for user %s not sent: %s", user_id, e)
    except Exception:  # a background task has nobody else to report to
        log.exception("verification email for user %s failed", user_id)
