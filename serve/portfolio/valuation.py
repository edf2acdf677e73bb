"""Valuation, P&L, allocation and risk of a portfolio.

Per item: ``market_value = quantity * price`` at the latest price (the hot cache's live
price when Redis has one, else the close of the gold bar that started last, hourly or
daily, else the catalog's reference price; ``price_source`` says which);
``cost_basis = quantity * avg_purchase_price``; ``unrealised_pnl = market_value -
cost_basis`` and ``unrealised_pnl_pct = unrealised_pnl / cost_basis * 100``. Totals add
items up (cost and P&L over the items whose purchase price is known).

Allocation: market value per asset (items of one asset added up) and per asset class,
each as a weight of the total; weights add up to 1.

Risk:

* ``composite_score`` and the four sub-scores: the latest ``risk_scores`` of each asset,
  averaged with market-value weights over the assets that have a score
  (``scored_weight`` is their share of the value);
* ``volatility_30d`` and ``var_95_1d``: historical simulation. The current quantities
  are valued at each of the last 31 daily closes (``price_bars_1d``, or the last hourly
  close of each UTC day where daily bars are short), on the days every included asset
  has a close; the day-on-day changes of that value are the portfolio's returns (up to
  30). Volatility is their sample standard deviation (daily, and times sqrt(365) as
  annualised: tokens trade every day); the one-day 95 % VaR is the loss at their 5th
  percentile (linear interpolation), as a fraction and in USD of the included value.
  Fewer than :data:`MIN_RETURNS` returns give ``None``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

import asyncpg
import numpy as np
import redis.asyncio as aioredis
import redis.exceptions

from core import cache
from training.risk_store import latest_risks

log = logging.getLogger(__name__)

#: Daily returns below which volatility and VaR are not reported.
MIN_RETURNS = 10
#: Returns in the window.
WINDOW_RETURNS = 30
SUB_SCORES = ("market_risk", "credit_risk", "regulatory_risk", "technical_risk")
VAR_METHOD = ("historical simulation: current quantities valued at the last 31 daily "
              "closes; volatility = sample std of daily returns (annualised x sqrt(365)); "
              "VaR = loss at the 5th percentile of daily returns")


@dataclass(frozen=True, slots=True)
class Quote:
    price: float | None
    time: datetime | str | None
    source: str


async def _cached_quotes(client: aioredis.Redis | None,
                         asset_ids: Sequence[str]) -> dict[str, Quote]:
    if client is None or not asset_ids:
        return {}
    try:
        raw = await client.mget([cache.latest_price_key(a) for a in asset_ids])
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        log.warning("hot cache unavailable, pricing from gold: %s", e)
        return {}
    out: dict[str, Quote] = {}
    for asset_id, body in zip(asset_ids, raw):
        if not body:
            continue
        try:
            tick = json.loads(body)
            price = float(tick["price"])
        except (ValueError, TypeError, KeyError):
            continue
        if math.isfinite(price) and price >= 0:
            out[asset_id] = Quote(price, tick.get("time"), "live")
    return out


async def latest_quotes(conn: asyncpg.Connection, client: aioredis.Redis | None,
                        asset_ids: Sequence[str]) -> dict[str, Quote]:
    """The latest price of each asset: live (Redis), else the last gold close, else the
    catalog's reference price."""
    ids = sorted(set(asset_ids))
    quotes = await _cached_quotes(client, ids)
    missing = [a for a in ids if a not in quotes]
    if missing:
        rows = await conn.fetch(
            """SELECT q.asset_id, a.reference_price, h.close AS h_close, h.time AS h_time,
                      d.close AS d_close, d.time AS d_time
               FROM unnest($1::text[]) AS q(asset_id)
               JOIN assets a USING (asset_id)
               LEFT JOIN LATERAL (SELECT close, time FROM price_data
                                  WHERE asset_id = q.asset_id ORDER BY time DESC LIMIT 1) h
                      ON true
               LEFT JOIN LATERAL (SELECT close, time FROM price_bars_1d
                                  WHERE asset_id = q.asset_id ORDER BY time DESC LIMIT 1) d
                      ON true""", missing)
        for r in rows:
            # The bar that started last carries the newest close (today's daily bar
            # started at midnight; this hour's bar after it).
            if r["h_time"] and (r["d_time"] is None or r["h_time"] >= r["d_time"]):
                quotes[r["asset_id"]] = Quote(r["h_close"], r["h_time"], "price_data")
            elif r["d_time"]:
                quotes[r["asset_id"]] = Quote(r["d_close"], r["d_time"], "price_bars_1d")
            else:
                quotes[r["asset_id"]] = Quote(r["reference_price"], None, "reference_price")
    return quotes


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def value_item(item: Mapping[str, Any], quote: Quote | None,
               risk: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One item with its price, market value, cost basis and unrealised P&L."""
    quantity = float(item["quantity"])
    avg = _num(item.get("avg_purchase_price"))
    price = quote.price if quote else None
    market_value = quantity * price if price is not None else None
    cost_basis = quantity * avg if avg is not None else None
    pnl = market_value - cost_basis if market_value is not None and cost_basis is not None \
        else None
    out = dict(item)
    out.update(
        quantity=quantity,
        avg_purchase_price=avg,
        price=price,
        price_time=quote.time if quote else None,
        price_source=quote.source if quote else None,
        market_value=market_value,
        cost_basis=cost_basis,
        unrealised_pnl=pnl,
        unrealised_pnl_pct=pnl / cost_basis * 100.0 if pnl is not None and cost_basis else None,
        risk_score=risk["composite_score"] if risk else None,
    )
    return out


def totals(valued: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    priced = [v for v in valued if v["market_value"] is not None]
    costed = [v for v in priced if v["cost_basis"] is not None]
    market_value = sum(v["market_value"] for v in priced)
    cost_basis = sum(v["cost_basis"] for v in costed)
    pnl = sum(v["market_value"] for v in costed) - cost_basis
    return {
        "items": len(valued),
        "market_value": market_value,
        "cost_basis": cost_basis,
        "unrealised_pnl": pnl,
        "unrealised_pnl_pct": pnl / cost_basis * 100.0 if cost_basis else None,
        "unpriced_items": len(valued) - len(priced),
        "items_without_cost": len(priced) - len(costed),
    }


def allocation(valued: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Market value and weight per asset and per asset class, largest first."""
    by_asset: dict[str, float] = defaultdict(float)
    by_class: dict[str, float] = defaultdict(float)
    symbols: dict[str, str] = {}
    for v in valued:
        if v["market_value"] is None:
            continue
        by_asset[v["asset_id"]] += v["market_value"]
        by_class[v["asset_class"]] += v["market_value"]
        symbols[v["asset_id"]] = v.get("symbol") or v["asset_id"]
    total = sum(by_asset.values())

    def rows(values: dict[str, float], key: str) -> list[dict[str, Any]]:
        if total <= 0:
            return []
        ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        return [{key: k, "value": value, "weight": value / total} for k, value in ordered]

    assets = rows(by_asset, "asset_id")
    for row in assets:
        row["symbol"] = symbols[row["asset_id"]]
    return {"by_asset": assets, "by_asset_class": rows(by_class, "asset_class")}


def composite_risk(values: Mapping[str, float],
                   risks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Value-weighted composite and sub-scores over the scored assets."""
    total = sum(v for v in values.values() if v > 0)
    scored = {a: v for a, v in values.items() if v > 0 and a in risks}
    scored_total = sum(scored.values())
    out: dict[str, Any] = {"composite_score": None, **dict.fromkeys(SUB_SCORES),
                           "scored_weight": scored_total / total if total > 0 else None,
                           "unscored_assets": sorted(a for a, v in values.items()
                                                     if v > 0 and a not in risks)}
    if scored_total <= 0:
        return out
    for column in ("composite_score", *SUB_SCORES):
        known = {a: v for a, v in scored.items() if risks[a].get(column) is not None}
        weight = sum(known.values())
        if weight > 0:
            out[column] = sum(v * risks[a][column] for a, v in known.items()) / weight
    return out


def historical_var(quantities: Mapping[str, float],
                   closes: Mapping[str, Mapping[date, float]],
                   values: Mapping[str, float]) -> dict[str, Any]:
    """Volatility and one-day 95 % VaR of the current quantities over past closes (the
    module docstring has the method); the USD VaR applies to the current ``values`` of
    the assets included."""
    assets = sorted(a for a, q in quantities.items() if q > 0 and len(closes.get(a, {})) >= 2)
    days = sorted(set.intersection(*(set(closes[a]) for a in assets))) if assets else []
    series = [sum(quantities[a] * closes[a][d] for a in assets) for d in days]
    returns = [b / a - 1.0 for a, b in pairwise(series) if a > 0][-WINDOW_RETURNS:]
    out: dict[str, Any] = {
        "volatility_30d": None, "volatility_30d_annualised": None, "var_95_1d": None,
        "var_95_1d_pct": None, "returns_used": len(returns), "var_assets": assets,
        "var_method": VAR_METHOD}
    if len(returns) < MIN_RETURNS:
        return out
    r = np.asarray(returns, dtype=float)
    daily = float(r.std(ddof=1))
    var_pct = max(0.0, -float(np.percentile(r, 5)))
    current = sum(values.get(a, 0.0) for a in assets)
    out.update(volatility_30d=daily, volatility_30d_annualised=daily * math.sqrt(365),
               var_95_1d_pct=var_pct, var_95_1d=var_pct * current)
    return out


async def daily_closes(conn: asyncpg.Connection, asset_ids: Sequence[str], *,
                       now: datetime | None = None,
                       days: int = WINDOW_RETURNS + 1) -> dict[str, dict[date, float]]:
    """UTC day → close of each asset over the last ``days`` days: ``price_bars_1d``, or
    the last hourly close per day from ``price_data`` where that gives more days."""
    if not asset_ids:
        return {}
    end = now or datetime.now(UTC)
    start = end - timedelta(days=days)
    out: dict[str, dict[date, float]] = defaultdict(dict)
    for r in await conn.fetch(
            """SELECT asset_id, time, close FROM price_bars_1d
               WHERE asset_id = ANY($1::text[]) AND time > $2 AND time <= $3""",
            list(asset_ids), start, end):
        out[r["asset_id"]][r["time"].astimezone(UTC).date()] = r["close"]
    short = [a for a in asset_ids if len(out.get(a, {})) <= MIN_RETURNS]
    if short:
        hourly: dict[str, dict[date, float]] = defaultdict(dict)
        for r in await conn.fetch(
                """SELECT DISTINCT ON (asset_id, date_trunc('day', time, 'UTC'))
                          asset_id, time, close
                   FROM price_data
                   WHERE asset_id = ANY($1::text[]) AND time > $2 AND time <= $3
                   ORDER BY asset_id, date_trunc('day', time, 'UTC'), time DESC""",
                short, start, end):
            hourly[r["asset_id"]][r["time"].astimezone(UTC).date()] = r["close"]
        for asset_id, series in hourly.items():
            if len(series) > len(out.get(asset_id, {})):
                out[asset_id] = series
    return dict(out)


async def portfolio_view(conn: asyncpg.Connection, client: aioredis.Redis | None,
                         items: Sequence[Mapping[str, Any]], *,
                         now: datetime | None = None) -> dict[str, Any]:
    """``{items, totals, allocation, risk}`` of one user's items."""
    ids = sorted({i["asset_id"] for i in items})
    quotes = await latest_quotes(conn, client, ids)
    risks = await latest_risks(conn, ids) if ids else {}
    valued = [value_item(i, quotes.get(i["asset_id"]), risks.get(i["asset_id"]))
              for i in items]
    values: dict[str, float] = defaultdict(float)
    quantities: dict[str, float] = defaultdict(float)
    for v in valued:
        if v["market_value"] is not None:
            values[v["asset_id"]] += v["market_value"]
            quantities[v["asset_id"]] += v["quantity"]
    total_value = sum(values.values())
    for v in valued:
        v["weight"] = v["market_value"] / total_value \
            if v["market_value"] is not None and total_value > 0 else None
    closes = await daily_closes(conn, list(quantities), now=now)
    risk = composite_risk(values, risks) | historical_var(quantities, closes, values)
    return {"items": valued, "totals": totals(valued), "allocation": allocation(valued),
            "risk": risk}


async def item_view(conn: asyncpg.Connection, client: aioredis.Redis | None,
                    item: Mapping[str, Any]) -> dict[str, Any]:
    """One item valued, with its asset's latest risk score (sub-scores, no explanation)."""
    quotes = await latest_quotes(conn, client, [item["asset_id"]])
    risk = (await latest_risks(conn, [item["asset_id"]])).get(item["asset_id"])
    out = value_item(item, quotes.get(item["asset_id"]), risk)
    out["risk"] = None if risk is None else {
        k: risk.get(k) for k in ("composite_score", *SUB_SCORES, "calculated_at",
                                 "methodology_version")}
    return out
