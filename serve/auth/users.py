"""The ``users`` table as accounts need it, the ``User`` other routers receive, and
email address checks.

Emails are stored trimmed and lower-case, so one address is one account whatever
case it is typed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg

MAX_EMAIL_CHARS = 254

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

#: Columns an account's owner and admins may see (never the hash or the TOTP secret).
PUBLIC_COLUMNS = ("user_id, email, tier, is_admin, email_verified, totp_enabled, created_at, "
                  "last_login_at")


@dataclass(frozen=True, slots=True)
class User:
    """The authenticated caller, as ``current_user`` hands it to a route."""

    user_id: int
    email: str
    tier: str
    is_admin: bool


class EmailTaken(Exception):
    """An account with this email exists."""


def normalize_email(raw: str) -> str:
    """``raw`` trimmed and lower-cased if it is a plausible address, else ValueError
    saying what is wrong with it."""
    email = raw.strip()
    example = "an address like name@example.com"
    if not email:
        raise ValueError(f"email is empty; expected {example}")
    if len(email) > MAX_EMAIL_CHARS:
        raise ValueError(f"email is longer than {MAX_EMAIL_CHARS} characters")
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"email must contain one @; expected {example}")
    if len(local) > 64 or not _LOCAL.match(local):
        raise ValueError(f"the part before @ is not valid; expected {example}")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) \
            or labels[-1].isdigit():
        raise ValueError(f"the domain {domain!r} is not valid; expected {example}")
    return email.lower()


def user_of(row: asyncpg.Record | dict[str, Any]) -> User:
    return User(user_id=row["user_id"], email=row["email"], tier=row["tier"],
                is_admin=row["is_admin"])


def public(row: asyncpg.Record) -> dict[str, Any]:
    return {k: row[k] for k in PUBLIC_COLUMNS.split(", ")}


async def create(pool: asyncpg.Pool, email: str, password_hash: str) -> asyncpg.Record:
    try:
        return await pool.fetchrow(
            f"""INSERT INTO users (email, password_hash) VALUES ($1, $2)
                RETURNING {PUBLIC_COLUMNS}""", email, password_hash)
    except asyncpg.UniqueViolationError as e:
        raise EmailTaken(email) from e


async def by_email(pool: asyncpg.Pool, email: str) -> asyncpg.Record | None:
    """The account with ``email`` including its password hash and TOTP state."""
    return await pool.fetchrow(
        f"SELECT {PUBLIC_COLUMNS}, password_hash, totp_secret FROM users WHERE email = $1",
        email)


async def by_id(pool: asyncpg.Pool, user_id: int) -> asyncpg.Record | None:
    """The account ``user_id`` including its TOTP state."""
    return await pool.fetchrow(
        f"SELECT {PUBLIC_COLUMNS}, totp_secret FROM users WHERE user_id = $1", user_id)


async def logged_in(pool: asyncpg.Pool, user_id: int, *, new_hash: str | None) -> None:
    """Stamp a successful login, replacing the password hash when it was upgraded."""
    await pool.execute(
        """UPDATE users SET last_login_at = now(),
                            password_hash = coalesce($2, password_hash),
                            updated_at = CASE WHEN $2::text IS NULL THEN updated_at
                                              ELSE now() END
           WHERE user_id = $1""", user_id, new_hash)


async def set_pending_totp(pool: asyncpg.Pool, user_id: int, secret: str) -> bool:
    """Store a TOTP secret awaiting confirmation; False if 2FA is already on."""
    result = await pool.execute(
        """UPDATE users SET totp_secret = $2, updated_at = now()
           WHERE user_id = $1 AND NOT totp_enabled""", user_id, secret)
    return result.endswith(" 1")


async def enable_totp(pool: asyncpg.Pool, user_id: int) -> None:
    await pool.execute(
        "UPDATE users SET totp_enabled = true, updated_at = now() WHERE user_id = $1", user_id)


async def mark_email_verified(pool: asyncpg.Pool, user_id: int, email: str) -> bool:
    """Mark the address verified if the account still has it; False otherwise."""
    result = await pool.execute(
        """UPDATE users SET email_verified = true, updated_at = now()
           WHERE user_id = $1 AND email = $2""", user_id, email)
    return result.endswith(" 1")


async def search(pool: asyncpg.Pool, *, q: str | None, tier: str | None, limit: int,
                 offset: int) -> tuple[list[dict[str, Any]], int]:
    """Accounts matching an email substring and/or tier, oldest first, and their total."""
    where = "WHERE ($1::text IS NULL OR strpos(email, lower($1)) > 0) " \
            "AND ($2::text IS NULL OR tier = $2)"
    async with pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM users {where}", q, tier)
        rows = await conn.fetch(
            f"SELECT {PUBLIC_COLUMNS} FROM users {where} ORDER BY user_id LIMIT $3 OFFSET $4",
            q, tier, limit, offset)
    return [public(r) for r in rows], total


async def set_tier(pool: asyncpg.Pool, user_id: int, tier: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        f"""UPDATE users SET tier = $2, updated_at = now() WHERE user_id = $1
            RETURNING {PUBLIC_COLUMNS}""", user_id, tier)


async def set_admin(conn: asyncpg.Connection | asyncpg.Pool, email: str, *,
                    is_admin: bool) -> asyncpg.Record | None:
    """Grant or take the admin role (the ``rwa user admin`` command); None if no such
    account."""
    return await conn.fetchrow(
        f"""UPDATE users SET is_admin = $2, updated_at = now() WHERE email = $1
            RETURNING {PUBLIC_COLUMNS}""", normalize_email(email), is_admin)
