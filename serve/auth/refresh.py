"""Refresh tokens: opaque, random, stored only as their SHA-256, rotated on every use.

A login starts a *family*. ``rotate`` marks the presented token used and issues the
next one of its family; presenting a token that was already used (or revoked) means
two parties hold it, so the whole family is revoked and both must log in again.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

#: Refresh tokens are 256 random bits, URL-safe base64 (43 characters).
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 100


@dataclass(frozen=True)
class IssuedRefresh:
    token: str
    family_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token: ``issued`` on success, else
    ``rejected`` says why, and ``revoked_family`` is set when reuse revoked a family."""

    user_id: int | None = None
    issued: IssuedRefresh | None = None
    rejected: str | None = None
    revoked_family: str | None = None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(conn: asyncpg.Connection | asyncpg.Pool, user_id: int, *, ttl_s: int,
                family_id: str | None = None) -> IssuedRefresh:
    """A new refresh token for ``user_id``, in ``family_id`` or a new family."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    family = family_id or str(uuid.uuid4())
    expires_at = await conn.fetchval(
        """INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at)
           VALUES ($1, $2, $3, now() + $4::interval) RETURNING expires_at""",
        token_hash(token), uuid.UUID(family), user_id, timedelta(seconds=ttl_s))
    return IssuedRefresh(token=token, family_id=family, expires_at=expires_at)


async def rotate(pool: asyncpg.Pool, token: str, *, ttl_s: int) -> Rotation:
    """Spend ``token`` and issue its successor, or say why not (revoking on reuse)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return Rotation(rejected="unknown refresh token")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT family_id, user_id, used_at, revoked_at, expires_at <= now() AS expired
               FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE""", token_hash(token))
        if row is None:
            return Rotation(rejected="unknown refresh token")
        family = str(row["family_id"])
        if row["used_at"] is not None or row["revoked_at"] is not None:
            await _revoke(conn, family)
            what = "was already used" if row["used_at"] is not None else "was revoked"
            return Rotation(rejected=f"refresh token {what}; every session of that login is "
                                     "now revoked, log in again", revoked_family=family)
        if row["expired"]:
            return Rotation(rejected="refresh token expired; log in again")
        await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1",
                           token_hash(token))
        issued = await issue(conn, row["user_id"], ttl_s=ttl_s, family_id=family)
        return Rotation(user_id=row["user_id"], issued=issued)


async def family_of(pool: asyncpg.Pool, token: str) -> tuple[str, int] | None:
    """``(family_id, user_id)`` of a refresh token, or None if unknown."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    row = await pool.fetchrow(
        "SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1", token_hash(token))
    return (str(row["family_id"]), row["user_id"]) if row else None


async def revoke_family(pool: asyncpg.Pool, family_id: str) -> int:
    """Revoke every live token of a family; how many were live."""
    async with pool.acquire() as conn:
        return await _revoke(conn, family_id)


async def purge_expired(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> None:
    """Forget a user's expired tokens (reuse of an expired token proves nothing)."""
    await conn.execute(
        "DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < now()", user_id)


async def _revoke(conn: asyncpg.Connection, family_id: str) -> int:
    result = await conn.execute(
        """UPDATE refresh_tokens SET revoked_at = now()
           WHERE family_id = $1 AND revoked_at IS NULL AND used_at IS NULL""",
        uuid.UUID(family_id))
    return int(result.split()[-1])
