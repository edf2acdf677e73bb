"""Read queries of the API over gold (PostgreSQL). Plain async functions of a pool, so
they are tested without Serve."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import asyncpg

SortKey = Literal["symbol", "-symbol", "name", "-name", "apy", "-apy", "asset_class"]
_SORT_SQL: dict[str, str] = {
    "symbol": "symbol ASC",
    "-symbol": "symbol DESC",
    "name": "name ASC",
    "-name": "name DESC",
    "apy": "apy ASC NULLS LAST, symbol",
    "-apy": "apy DESC NULLS LAST, symbol",
    "asset_class": "asset_class, symbol",
}

ASSET_COLUMNS = (
    "asset_id, symbol, name, issuer, asset_class, blockchain_network, chains, contract_address, "
    "reference_price, apy, description, underlying_asset_details"
)


def _asset(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    details = item.get("underlying_asset_details")
    if isinstance(details, str):
        item["underlying_asset_details"] = json.loads(details)
    return item


async def list_assets(pool: asyncpg.Pool, *, asset_class: str | None, blockchain: str | None,
                      min_apy: float | None, q: str | None, sort: SortKey, limit: int,
                      offset: int) -> tuple[list[dict[str, Any]], int]:
    where, args = [], []
    if asset_class:
        args.append(asset_class)
        where.append(f"asset_class = ${len(args)}")
    if blockchain:
        args.append(blockchain.lower())
        where.append(f"${len(args)} = ANY(chains)")
    if min_apy is not None:
        args.append(min_apy)
        where.append(f"apy >= ${len(args)}")
    if q:
        args.append(f"%{q}%")
        where.append(f"(symbol ILIKE ${len(args)} OR name ILIKE ${len(args)} OR issuer ILIKE ${len(args)})")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    async with pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM assets {clause}", *args)
        rows = await conn.fetch(
            f"SELECT {ASSET_COLUMNS} FROM assets {clause} ORDER BY {_SORT_SQL[sort]} "
            f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args, limit, offset)
    return [_asset(r) for r in rows], total


async def find_asset(pool: asyncpg.Pool, ref: str) -> dict[str, Any] | None:
    """An asset by id or (case-insensitive) symbol; None for a ``ref`` holding NUL, which
    no id or symbol does (PostgreSQL text cannot hold it, and would refuse the query)."""
    if "\x00" in ref:
        return None
    row = await pool.fetchrow(
        f"SELECT {ASSET_COLUMNS} FROM assets WHERE asset_id = $1 OR lower(symbol) = lower($1) "
        "ORDER BY asset_id = $1 DESC LIMIT 1", ref)
    return _asset(row) if row else None


async def price_bars(pool: asyncpg.Pool, asset_id: str, *, interval: Literal["1h", "1d"],
                     start: datetime | None, end: datetime | None, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` bars in [start, end), oldest first; daily bars roll up hourly ones."""
    bucket = "hour" if interval == "1h" else "day"
    rows = await pool.fetch(
        f"""SELECT * FROM (
                SELECT date_trunc('{bucket}', time) AS time,
                       (array_agg(open ORDER BY time))[1] AS open,
                       max(high) AS high, min(low) AS low,
                       (array_agg(close ORDER BY time DESC))[1] AS close,
                       sum(volume) AS volume
                FROM price_data
                WHERE asset_id = $1
                  AND ($2::timestamptz IS NULL OR time >= $2)
                  AND ($3::timestamptz IS NULL OR time < $3)
                GROUP BY 1 ORDER BY 1 DESC LIMIT $4) b
            ORDER BY time""",
        asset_id, start, end, limit)
    return [dict(r) for r in rows]


async def latest_prediction(pool: asyncpg.Pool, asset_id: str, horizon: int,
                            target: str = "price") -> dict[str, Any] | None:
    """The newest prediction of one target and horizon, its path and its scorecard."""
    from training.backtest_store import latest_scorecards

    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT prediction_id, asset_id, target, forecast_horizon, predicted_price,
                      confidence_lower, confidence_upper, lower_95, upper_95, target_time,
                      generated_at, model_version, path, weights
               FROM predictions WHERE asset_id = $1 AND target = $2 AND forecast_horizon = $3
               ORDER BY generated_at DESC LIMIT 1""",
            asset_id, target, horizon)
        if row is None:
            return None
        cards = await latest_scorecards(conn, [asset_id])
    out = dict(row)
    out["path"] = json.loads(out["path"]) if out["path"] else []
    out["weights"] = json.loads(out["weights"]) if out["weights"] else {}
    out["scorecard"] = cards.get((asset_id, target), {}).get(horizon)
    return out


async def sentiment_hours(pool: asyncpg.Pool, asset_id: str, *, start: datetime | None,
                          end: datetime | None, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` hourly sentiment rows in [start, end), oldest first. A row whose
    stories are counted but not scored yet has a null ``sentiment_score``."""
    rows = await pool.fetch(
        """SELECT * FROM (
                SELECT time, source, sentiment_score, article_count FROM sentiment_scores
                WHERE asset_id = $1
                  AND ($2::timestamptz IS NULL OR time >= $2)
                  AND ($3::timestamptz IS NULL OR time < $3)
                ORDER BY time DESC, source LIMIT $4) s
            ORDER BY time, source""",
        asset_id, start, end, limit)
    return [dict(r) for r in rows]


async def onchain_days(pool: asyncpg.Pool, asset_id: str, *, start: datetime | None,
                       end: datetime | None, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` daily on-chain rows in [start, end), oldest first."""
    rows = await pool.fetch(
        """SELECT * FROM (
                SELECT time, holder_count, transfer_count, transfer_volume, dex_liquidity,
                       exchange_inflow, exchange_outflow, nav, apy, tvl_usd, chain
                FROM onchain_metrics
                WHERE asset_id = $1
                  AND ($2::timestamptz IS NULL OR time >= $2)
                  AND ($3::timestamptz IS NULL OR time < $3)
                ORDER BY time DESC LIMIT $4) o
            ORDER BY time""",
        asset_id, start, end, limit)
    return [dict(r) for r in rows]
