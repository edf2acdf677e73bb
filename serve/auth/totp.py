"""TOTP second factor (RFC 6238: 6 digits, 30 s steps, SHA-1, as authenticator apps
expect), accepting the previous and next step for clock drift, each code only once.

A code is tied to its time step; the step a code matched is claimed in Redis for as
long as the code could still be accepted, so replaying it fails.

Secrets are stored sealed (:class:`SecretBox`): AES-256-GCM under a key of the
deployment's, bound to the account, so that a copy of the database reveals no secret
and a sealed secret moved to another account's row does not open.
"""

from __future__ import annotations

import base64
import hmac
import os
import time

import pyotp
import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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


#: Prefix of a sealed secret; a stored value without it is a plain secret from before
#: secrets were sealed, read as it is.
SEALED_PREFIX = "v1:"
_NONCE_BYTES = 12


class SealedSecretError(Exception):
    """A sealed secret that this key cannot open: another key, or altered."""


class SecretBox:
    """Seals and opens TOTP secrets with a key derived (HKDF-SHA256) from ``key``.

    ``purpose`` goes into the derivation, so that a key shared with something else (the
    JWT secret when no key of its own is set) yields a different AES key here.
    """

    def __init__(self, key: str, *, purpose: str = "totp-secrets") -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=f"rwa-prime {purpose}".encode()).derive(key.encode())
        self._aead = AESGCM(derived)

    @staticmethod
    def _account(user_id: int) -> bytes:
        return f"user:{user_id}".encode()

    def seal(self, secret: str, *, user_id: int) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), self._account(user_id))
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str, *, user_id: int) -> str:
        """The secret of ``stored``; a value stored before sealing is returned as it is.

        Raises:
            SealedSecretError: Sealed under another key or for another account, or altered.
        """
        if not stored.startswith(SEALED_PREFIX):
            return stored
        try:
            raw = base64.urlsafe_b64decode(stored[len(SEALED_PREFIX):])
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                       self._account(user_id))
        except (InvalidTag, ValueError) as e:
            raise SealedSecretError("the stored TOTP secret does not open with this key") from e
        return plain.decode()
