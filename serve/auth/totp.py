"""TOTP second factor (RFC 6238: 6 digits, 30 s steps, SHA-1, as authenticator apps
expect), accepting the previous and next step for clock drift, each code only once.

A code is tied to its time step; the step a code matched is claimed in Redis for as
long as the code could still be accepted, so replaying it fails.
"""

from __future__ import annotations

import hmac
import time

import pyotp
import redis.asyncio as aioredis

STEP_S = 30
VALID_WINDOW = 1
DIGITS = 6


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, email: str, issuer: str) -> str:
    """The ``otpauth://`` URI authenticator apps read (usually from a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to within the accepted window, or None."""
    code = code.replace(" ", "")
    if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    step = totp.timecode(time.time() if now is None else now)
    for candidate in (step, step - VALID_WINDOW, step + VALID_WINDOW):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


async def claim_step(redis: aioredis.Redis, user_id: int, step: int) -> bool:
    """Record that ``user_id`` used the code of ``step``; False if it was used before."""
    ttl_s = (2 * VALID_WINDOW + 2) * STEP_S  # longer than any clock that could accept it
    return bool(await redis.set(f"rwa:auth:totp-used:{user_id}:{step}", "1", nx=True,
                                ex=ttl_s))
