"""SQL of portfolio items and watchlists. Every statement is scoped to one user: an
item or a watchlist entry of another user is indistinguishable from a missing one."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

_ITEM_COLUMNS = """p.portfolio_id, p.asset_id, a.symbol, a.name, a.asset_class,
    p.quantity, p.avg_purchase_price, p.wallet_address, p.blockchain, p.created_at,
    p.updated_at"""


def _item(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row)


async def list_items(conn: asyncpg.Connection, user_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT {_ITEM_COLUMNS} FROM portfolios p JOIN assets a USING (asset_id)
            WHERE p.user_id = $1 ORDER BY p.portfolio_id""", user_id)
    return [_item(r) for r in rows]


async def get_item(conn: asyncpg.Connection, user_id: int,
                   portfolio_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""SELECT {_ITEM_COLUMNS} FROM portfolios p JOIN assets a USING (asset_id)
            WHERE p.user_id = $1 AND p.portfolio_id = $2""", user_id, portfolio_id)
    return _item(row) if row else None


async def add_item(conn: asyncpg.Connection, user_id: int, asset_id: str, *,
                   quantity: Decimal, avg_purchase_price: Decimal | None) -> int:
    """A hand-entered item (no wallet); returns its ``portfolio_id``."""
    return await conn.fetchval(
        """INSERT INTO portfolios (user_id, asset_id, quantity, avg_purchase_price)
           VALUES ($1, $2, $3, $4) RETURNING portfolio_id""",
        user_id, asset_id, quantity, avg_purchase_price)


async def update_item(conn: asyncpg.Connection, user_id: int, portfolio_id: int, *,
                      changes: dict[str, Decimal | None]) -> bool:
    """Set ``quantity`` and/or ``avg_purchase_price``; False when no such item."""
    allowed = {k: v for k, v in changes.items() if k in ("quantity", "avg_purchase_price")}
    if not allowed:
        return await get_item(conn, user_id, portfolio_id) is not None
    sets = ", ".join(f"{column} = ${i + 3}" for i, column in enumerate(allowed))
    status = await conn.execute(
        f"""UPDATE portfolios SET {sets}, updated_at = now()
            WHERE user_id = $1 AND portfolio_id = $2""",
        user_id, portfolio_id, *allowed.values())
    return status.endswith(" 1")


async def delete_item(conn: asyncpg.Connection, user_id: int, portfolio_id: int) -> bool:
    status = await conn.execute(
        "DELETE FROM portfolios WHERE user_id = $1 AND portfolio_id = $2", user_id, portfolio_id)
    return status.endswith(" 1")


async def watchlist(conn: asyncpg.Connection, user_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT w.asset_id, a.symbol, a.name, a.asset_class, a.blockchain_network,
                  w.added_at
           FROM watchlists w JOIN assets a USING (asset_id)
           WHERE w.user_id = $1 ORDER BY w.added_at, w.asset_id""", user_id)
    return [dict(r) for r in rows]


async def watch(conn: asyncpg.Connection, user_id: int, asset_id: str) -> bool:
    """Add ``asset_id`` to the watchlist; False when it was there already."""
    added = await conn.fetchval(
        """INSERT INTO watchlists (user_id, asset_id) VALUES ($1, $2)
           ON CONFLICT (user_id, asset_id) DO NOTHING RETURNING true""", user_id, asset_id)
    return bool(added)


async def unwatch(conn: asyncpg.Connection, user_id: int, asset_id: str) -> bool:
    status = await conn.execute(
        "DELETE FROM watchlists WHERE user_id = $1 AND asset_id = $2", user_id, asset_id)
    return status.endswith(" 1")
