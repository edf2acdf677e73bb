"""Accounts the platform itself uses, not people: the ``rwa up`` first-tick probe, which
follows every catalog asset over the public WebSocket as any client does.

A service account is a ``users`` row that nobody can sign in as: its email's domain is a
single label (``@localhost``), which :func:`serve.auth.users.normalize_email` refuses,
so ``/auth/register`` cannot claim it and ``/auth/login`` never looks it up; its
password hash is no Argon2 hash, so nothing would verify against it anyway. The
launcher, which holds the signing secret, mints it short-lived access tokens directly;
they pass :meth:`serve.auth.context.Auth.authenticate` like any user's, so the
WebSocket needs no back door.
"""

from __future__ import annotations

import secrets
import uuid

import asyncpg

from core.settings import TIER_NAMES, AuthSettings
from serve.auth import users
from serve.auth.tokens import TokenCodec

DOMAIN = "localhost"
#: The probe ``rwa up`` runs to see a first live tick reach a WebSocket client.
FIRST_TICK_PROBE = "first-tick-probe"


def service_email(name: str) -> str:
    """The email of service account ``name``; one no one can register or log in with."""
    email = f"{name}@{DOMAIN}"
    try:
        users.normalize_email(email)
    except ValueError:
        return email
    raise AssertionError(f"{email} would be a valid login; service accounts must not be")


async def ensure(conn: asyncpg.Connection | asyncpg.Pool, name: str, *, tier: str) -> int:
    """The user id of service account ``name``, made or reset to ``tier``, no admin role
    and no 2FA; the same id on every call."""
    if tier not in TIER_NAMES:
        raise ValueError(f"tier must be one of {', '.join(TIER_NAMES)}, not {tier!r}")
    unusable = f"!service-account:{secrets.token_hex(16)}"
    return await conn.fetchval(
        """INSERT INTO users (email, password_hash, tier, email_verified)
           VALUES ($1, $2, $3, true)
           ON CONFLICT (email) DO UPDATE
               SET tier = EXCLUDED.tier, password_hash = EXCLUDED.password_hash,
                   is_admin = false, totp_secret = NULL, totp_enabled = false,
                   updated_at = now()
           RETURNING user_id""", service_email(name), unusable, tier)


async def access_token(database_url: str, auth: AuthSettings, name: str, *, tier: str,
                       ttl_s: int = 300) -> str:
    """An access token for service account ``name`` (made if needed), signed with
    ``auth``'s secret, valid ``ttl_s`` seconds, in a session family of its own.

    Raises:
        ValueError: ``auth`` has no JWT secret.
    """
    if auth.jwt_secret is None:
        raise ValueError("no JWT secret to sign a service account's token with")
    conn = await asyncpg.connect(database_url)
    try:
        user_id = await ensure(conn, name, tier=tier)
    finally:
        await conn.close()
    codec = TokenCodec(auth.jwt_secret, issuer=auth.issuer, audience=auth.audience)
    return codec.issue(user_id, "access", ttl_s=ttl_s, family=str(uuid.uuid4()))
