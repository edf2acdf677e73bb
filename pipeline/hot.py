"""Hot data in Redis computed from gold: each asset's latest price and its 24 h figures.

Per asset, the latest bar is taken from the finest bar table that is current: the bar
with the latest start time among ``price_bars_1m``, ``price_data`` (1 h) and
``price_bars_1d``, the finer one on a tie (so minute bars win while they flow, and an
hourly bar still counts when minute bars stopped). The 24 h figures come from the same
table, over the bars of the 24 hours that end where the latest bar ends: the open of the
first of them, the highest high, the lowest low, the summed volume, and the change of
the latest close against that open. They are anchored on the data, not on the clock, so
a replay of history gets figures too; ``time`` says how current they are.

Keys (see :mod:`core.cache`):

* :func:`core.cache.stats_24h_key` is written on every refresh; gold is its only writer.
* :func:`core.cache.latest_price_key` is shared with the live fan-out, which writes
  every tick the moment it arrives. Gold writes it only when the stored price is older
  than the gold bar (or missing or unreadable), checked and set atomically with
  WATCH/MULTI, so a refresh never replaces a newer live price. The bar's start time is
  the one compared: a bar's close may be as late as its end, but an unfinished bar's end
  lies in the future and would beat every live tick.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import redis

from core import cache
from pipeline.gold import PRICE_TABLES, Interval

log = logging.getLogger(__name__)

#: Bar length of each interval, finest first (the tie-break order).
STEPS: dict[Interval, timedelta] = {
    "1m": timedelta(minutes=1),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
WINDOW = timedelta(hours=24)
#: Attempts at the compare-and-set of one latest price before leaving it to the live path.
CAS_ATTEMPTS = 3


@dataclass
class HotResult:
    stats: int = 0
    latest: int = 0
    #: Assets without any gold bar.
    missing: list[str] = field(default_factory=list)


def _query(table: str) -> str:
    return f"""
        SELECT a.asset_id, s.symbol, l.time, l.close,
               w.open, w.high, w.low, w.volume, w.bars, w.window_start
        FROM unnest($1::text[]) AS a(asset_id)
        LEFT JOIN assets s ON s.asset_id = a.asset_id
        CROSS JOIN LATERAL (
            SELECT b.time, b.close FROM {table} b
            WHERE b.asset_id = a.asset_id ORDER BY b.time DESC LIMIT 1) l
        CROSS JOIN LATERAL (
            SELECT (array_agg(b.open ORDER BY b.time))[1] AS open,
                   max(b.high) AS high, min(b.low) AS low, sum(b.volume) AS volume,
                   count(*) AS bars, l.time + $2::interval - $3::interval AS window_start
            FROM {table} b
            WHERE b.asset_id = a.asset_id
              AND b.time >= l.time + $2::interval - $3::interval AND b.time <= l.time) w"""


async def hot_rows(conn: asyncpg.Connection, asset_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per asset with any gold bar: its latest bar and 24 h figures (see the module doc)."""
    best: dict[str, tuple[tuple[datetime, int], dict[str, Any]]] = {}
    for rank, (interval, step) in enumerate(STEPS.items()):
        rows = await conn.fetch(_query(PRICE_TABLES[interval]), list(asset_ids), step, WINDOW)
        for r in rows:
            order = (r["time"], -rank)
            if r["asset_id"] not in best or order > best[r["asset_id"]][0]:
                best[r["asset_id"]] = (order, dict(r) | {"interval": interval})
    return {asset_id: row for asset_id, (_, row) in best.items()}


def stats_body(row: dict[str, Any], *, refreshed_at: datetime) -> dict[str, Any]:
    """The JSON stored under :func:`core.cache.stats_24h_key`."""
    open_, close = row["open"], row["close"]
    return {
        "asset_id": row["asset_id"],
        "symbol": row["symbol"],
        "interval": row["interval"],
        "time": row["time"].isoformat(),
        "window_start": row["window_start"].isoformat(),
        "open": open_,
        "high": row["high"],
        "low": row["low"],
        "close": close,
        "volume": row["volume"],
        "change": close - open_,
        "change_pct": (close / open_ - 1.0) * 100.0 if open_ else None,
        "bars": row["bars"],
        "source": "gold",
        "refreshed_at": refreshed_at.isoformat(),
    }


def latest_body(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON stored under :func:`core.cache.latest_price_key`, in the live tick's shape."""
    return {
        "asset_id": row["asset_id"],
        "symbol": row["symbol"],
        "time": row["time"].isoformat(),
        "price": row["close"],
        "interval": row["interval"],
        "source": "gold",
    }


def _stored_time(raw: str | bytes | None) -> datetime | None:
    """The time of a stored latest price, or None when there is none or it is unreadable."""
    if raw is None:
        return None
    try:
        stored = datetime.fromisoformat(json.loads(raw)["time"])
    except (ValueError, TypeError, KeyError):
        return None
    return stored if stored.tzinfo else stored.replace(tzinfo=UTC)


def set_latest_if_newer(client: redis.Redis, key: str, body: dict[str, Any],
                        time: datetime) -> bool:
    """Store ``body`` under ``key`` unless the price stored there is as new or newer.

    Returns:
        Whether ``body`` was stored.
    """
    with client.pipeline() as pipe:
        for _ in range(CAS_ATTEMPTS):
            try:
                pipe.watch(key)
                stored = _stored_time(pipe.get(key))
                if stored is not None and stored >= time:
                    return False
                pipe.multi()
                pipe.set(key, json.dumps(body))
                pipe.execute()
                return True
            except redis.WatchError:
                continue  # the live path wrote meanwhile: look again
    return False


async def refresh_hot(conn: asyncpg.Connection, client: redis.Redis,
                      asset_ids: Sequence[str], *, stats_ttl_s: int | None = None) -> HotResult:
    """Recompute the hot data of ``asset_ids`` from gold and write it to Redis.

    Args:
        client: A synchronous Redis client (as the actors hold).
        stats_ttl_s: Expiry of the 24 h figures; None keeps them until the next refresh.
    """
    rows = await hot_rows(conn, asset_ids)
    result = HotResult(missing=[a for a in asset_ids if a not in rows])
    now = datetime.now(UTC)
    pipe = client.pipeline(transaction=False)
    for asset_id, row in rows.items():
        pipe.set(cache.stats_24h_key(asset_id), json.dumps(stats_body(row, refreshed_at=now)),
                 ex=stats_ttl_s)
    pipe.execute()
    result.stats = len(rows)
    for asset_id, row in rows.items():
        if set_latest_if_newer(client, cache.latest_price_key(asset_id), latest_body(row),
                               row["time"]):
            result.latest += 1
    log.info("hot data: %d stats, %d latest prices from gold, %d assets without bars",
             result.stats, result.latest, len(result.missing))
    return result
