"""Risk scores in PostgreSQL: read each asset's inputs from gold, score every catalog
asset, and append one ``risk_scores`` row per asset and run (history is kept; the
latest score of an asset is its row with the greatest ``calculated_at``).

Gold read per run, for the year before ``now``: daily closes and volumes from
``price_bars_1d`` (or, where that holds fewer than :data:`MIN_DAILY_BARS` days, the
last hourly close of each UTC day from ``price_data``), and DEX liquidity and NAV from
``onchain_metrics``. News is not in gold (only its counts are); callers pass the
stories they have, e.g. silver news rows through :func:`news_from_records`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from core.catalog import load_catalog
from core.domain import Asset
from training.risk_factors import MIN_CLOSES
from training.risk_news import NewsItem
from training.risk_scoring import AssetRiskInputs, score_asset

log = logging.getLogger(__name__)

#: Days of gold history each score reads.
WINDOW_DAYS = 365
#: Fewer daily bars than this in ``price_bars_1d`` → try the hourly table.
MIN_DAILY_BARS = MIN_CLOSES

DAILY_SOURCE = "gold price_bars_1d"
HOURLY_SOURCE = "gold price_data (last hourly close per UTC day)"
ONCHAIN_SOURCE = "gold onchain_metrics"

_SCORE_COLUMNS = ("score_id, asset_id, composite_score, market_risk, credit_risk, "
                  "regulatory_risk, technical_risk, calculated_at, methodology_version")


@dataclass
class _Series:
    days: list[date] = field(default_factory=list)
    closes: list[float] = field(default_factory=list)
    dollar_volume: list[float] = field(default_factory=list)
    source: str = DAILY_SOURCE


def _as_utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _series(rows: Sequence[asyncpg.Record], source: str) -> dict[str, _Series]:
    out: dict[str, _Series] = defaultdict(lambda: _Series(source=source))
    for r in rows:
        s = out[r["asset_id"]]
        close, volume = r["close"], r["volume"]
        s.days.append(r["day"].astimezone(UTC).date())
        s.closes.append(close)
        s.dollar_volume.append((volume or 0.0) * close)
    return dict(out)


async def _price_series(conn: asyncpg.Connection, asset_ids: list[str], start: datetime,
                        end: datetime) -> dict[str, _Series]:
    daily = _series(await conn.fetch(
        """SELECT asset_id, time AS day, close, volume FROM price_bars_1d
           WHERE asset_id = ANY($1::text[]) AND time > $2 AND time <= $3
           ORDER BY asset_id, time""",
        asset_ids, start, end), DAILY_SOURCE)
    short = [a for a in asset_ids if len(daily.get(a, _Series()).closes) < MIN_DAILY_BARS]
    if short:
        hourly = _series(await conn.fetch(
            """SELECT asset_id, day, close, volume FROM (
                   SELECT asset_id, date_trunc('day', time, 'UTC') AS day, close,
                          sum(volume) OVER d AS volume,
                          row_number() OVER (d ORDER BY time DESC) AS rn
                   FROM price_data
                   WHERE asset_id = ANY($1::text[]) AND time > $2 AND time <= $3
                   WINDOW d AS (PARTITION BY asset_id, date_trunc('day', time, 'UTC'))) b
               WHERE rn = 1
               ORDER BY asset_id, day""",
            short, start, end), HOURLY_SOURCE)
        for asset_id, series in hourly.items():
            if len(series.closes) > len(daily.get(asset_id, _Series()).closes):
                daily[asset_id] = series
    return daily


async def _onchain(conn: asyncpg.Connection, asset_ids: list[str], start: datetime,
                   end: datetime) -> dict[str, list[asyncpg.Record]]:
    rows = await conn.fetch(
        """SELECT asset_id, time, dex_liquidity, nav FROM onchain_metrics
           WHERE asset_id = ANY($1::text[]) AND time > $2 AND time <= $3
           ORDER BY asset_id, time""",
        asset_ids, start, end)
    out: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        out[r["asset_id"]].append(r)
    return out


def _inputs(asset: Asset, as_of: datetime, prices: _Series | None,
            onchain: Sequence[asyncpg.Record], news: Sequence[NewsItem] | None) -> AssetRiskInputs:
    prices = prices or _Series(source=f"{DAILY_SOURCE} and {HOURLY_SOURCE}: none")
    dex = next((r["dex_liquidity"] for r in reversed(onchain) if r["dex_liquidity"] is not None),
               None)
    nav_by_day = {r["time"].astimezone(UTC).date(): r["nav"] for r in onchain
                  if r["nav"] is not None and r["nav"] > 0}
    premium = [close / nav_by_day[day] - 1.0 for day, close in zip(prices.days, prices.closes)
               if day in nav_by_day and close > 0]
    return AssetRiskInputs(
        asset=asset,
        as_of=as_of,
        daily_closes=prices.closes,
        daily_dollar_volume=prices.dollar_volume,
        dex_liquidity_usd=dex,
        nav_premium=premium,
        nav=[nav_by_day[d] for d in sorted(nav_by_day)],
        news=news,
        price_source=prices.source,
        onchain_source=ONCHAIN_SOURCE,
    )


async def recompute_risk(conn: asyncpg.Connection, *, now: datetime | None = None,
                         news: Sequence[NewsItem] | None = None,
                         assets: Sequence[Asset] | None = None) -> int:
    """Score every asset and append one ``risk_scores`` row each, in one transaction.

    Args:
        conn: A connection to the migrated database (migration 0004 or later).
        now: The score time, stored as ``calculated_at`` (default: the current time;
            a naive time is taken as UTC). Gold rows after it are not read.
        news: Stories to read for credit, regulatory, security and redemption events;
            ``None`` scores without news and says so in every explanation.
        assets: The assets to score (default: the catalog). Assets missing from the
            ``assets`` table are skipped with a warning.

    Returns:
        How many rows were written.
    """
    started = time.perf_counter()
    as_of = _as_utc(now)
    wanted = list(assets) if assets is not None else load_catalog()
    present = {r["asset_id"] for r in await conn.fetch("SELECT asset_id FROM assets")}
    missing = [a.asset_id for a in wanted if a.asset_id not in present]
    if missing:
        log.warning("risk: %d assets not in the assets table, not scored: %s",
                    len(missing), ", ".join(missing))
    scored_assets = [a for a in wanted if a.asset_id in present]
    if not scored_assets:
        return 0
    ids = [a.asset_id for a in scored_assets]
    start = as_of - timedelta(days=WINDOW_DAYS)
    prices = await _price_series(conn, ids, start, as_of)
    onchain = await _onchain(conn, ids, start, as_of)
    by_asset: dict[str, list[NewsItem]] = defaultdict(list)
    for item in news or ():
        for asset_id in item.asset_ids:
            by_asset[asset_id].append(item)
    rows = []
    for asset in scored_assets:
        asset_news = None if news is None else by_asset.get(asset.asset_id, [])
        score = score_asset(_inputs(asset, as_of, prices.get(asset.asset_id),
                                    onchain.get(asset.asset_id, []), asset_news))
        d = score.to_dict()
        rows.append((d["asset_id"], d["composite_score"], d["market_risk"], d["credit_risk"],
                     d["regulatory_risk"], d["technical_risk"], d["calculated_at"],
                     d["methodology_version"], json.dumps(d["explanation"], ensure_ascii=False)))
    async with conn.transaction():
        await conn.executemany(
            """INSERT INTO risk_scores (asset_id, composite_score, market_risk, credit_risk,
                   regulatory_risk, technical_risk, calculated_at, methodology_version,
                   explanation)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)""",
            rows)
    log.info("risk: scored %d assets as of %s in %.2f s", len(rows), as_of.isoformat(),
             time.perf_counter() - started)
    return len(rows)


def _row(record: asyncpg.Record) -> dict[str, Any]:
    out = dict(record)
    if isinstance(out.get("explanation"), str):
        out["explanation"] = json.loads(out["explanation"])
    return out


async def latest_risks(conn: asyncpg.Connection,
                       asset_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The latest score of each of ``asset_ids`` that was ever scored, in one query;
    rows as :func:`latest_risk` returns them."""
    records = await conn.fetch(
        f"""SELECT DISTINCT ON (asset_id) {_SCORE_COLUMNS}, explanation FROM risk_scores
            WHERE asset_id = ANY($1::text[])
            ORDER BY asset_id, calculated_at DESC, score_id DESC""",
        list(asset_ids))
    return {r["asset_id"]: _row(r) for r in records}


async def latest_risk(conn: asyncpg.Connection, asset_id: str) -> dict[str, Any] | None:
    """The latest score of ``asset_id`` with its explanation, or ``None`` if never scored.

    Returns:
        ``{score_id, asset_id, composite_score, market_risk, credit_risk,
        regulatory_risk, technical_risk, calculated_at, methodology_version,
        explanation}``; ``explanation`` is the parsed JSON (``None`` on rows written
        before migration 0004).
    """
    return (await latest_risks(conn, [asset_id])).get(asset_id)


async def risk_history(conn: asyncpg.Connection, asset_id: str, *,
                       limit: int = 100) -> list[dict[str, Any]]:
    """Past scores of ``asset_id``, newest first, without explanations."""
    records = await conn.fetch(
        f"""SELECT {_SCORE_COLUMNS} FROM risk_scores WHERE asset_id = $1
            ORDER BY calculated_at DESC, score_id DESC LIMIT $2""",
        asset_id, limit)
    return [dict(r) for r in records]
