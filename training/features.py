"""Daily model features per asset from gold: returns, volatility and drawdown from the
price, flows from on-chain metrics, the news mood from sentiment, and the short rate.

Every feature of day ``t`` uses only what was known at the end of day ``t``, so a model
that reads features up to ``t`` and predicts ``t + 1`` never peeks. Sources that report
less often than daily (macro quarters, a missed on-chain day) are carried forward from
their last value: that is what a trader would have known. What was never known is 0
after standardisation, i.e. "no information", not a made-up level.

The LSTM (:mod:`training.lstm`) reads these beside the standardised returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the database reads only; the LSTM's workers need numpy and pandas alone
    import asyncpg

#: Feature columns, in the order models see them. ``log_return`` is the target's own
#: history; the others are exogenous.
FEATURES: tuple[str, ...] = (
    "log_return", "volatility_7d", "volatility_30d", "drawdown_30d", "holders_growth_7d",
    "net_exchange_flow", "log_transfer_volume", "sentiment", "log_articles", "short_rate",
)
EXOGENOUS: tuple[str, ...] = FEATURES[1:]

#: The macro series read as the short rate (``ingestion/macro.py``).
RATE_SERIES = "US.TBILRATE"


def build_features(close: pd.Series, onchain: pd.DataFrame | None = None,
                   sentiment: pd.DataFrame | None = None,
                   rate: pd.Series | None = None) -> pd.DataFrame:
    """The feature frame of one asset, one row per day of ``close``.

    Args:
        close: Daily closes indexed by day (UTC midnight), oldest first.
        onchain: Columns ``holder_count``, ``exchange_inflow``, ``exchange_outflow``,
            ``transfer_volume`` indexed by day; any may be missing or NaN.
        sentiment: Columns ``sentiment`` (article-weighted mean score) and ``articles``
            indexed by day.
        rate: The short rate in % per year indexed by its observation time.

    Returns:
        A frame with :data:`FEATURES` columns, finite everywhere; ``log_return`` of the
        first day is 0.
    """
    close = close.sort_index().astype(float)
    days = close.index
    logp = np.log(close)
    ret = logp.diff().fillna(0.0)
    out = pd.DataFrame(index=days)
    out["log_return"] = ret
    out["volatility_7d"] = ret.rolling(7, min_periods=2).std().fillna(0.0)
    out["volatility_30d"] = ret.rolling(30, min_periods=2).std().fillna(0.0)
    out["drawdown_30d"] = (close / close.rolling(30, min_periods=1).max() - 1.0).fillna(0.0)

    chain = _on_days(onchain, days)
    holders = chain.get("holder_count")
    out["holders_growth_7d"] = (np.log(holders.where(holders > 0)).diff(7)
                                if holders is not None else np.nan)
    inflow, outflow = chain.get("exchange_inflow"), chain.get("exchange_outflow")
    volume = chain.get("transfer_volume")
    out["net_exchange_flow"] = ((outflow - inflow) / (outflow + inflow).where(lambda v: v > 0)
                                if inflow is not None and outflow is not None else np.nan)
    out["log_transfer_volume"] = np.log1p(volume.clip(lower=0)) if volume is not None else np.nan

    mood = _on_days(sentiment, days, carry=False)
    out["sentiment"] = mood.get("sentiment", np.nan)
    out["log_articles"] = np.log1p(mood["articles"].fillna(0.0)) if "articles" in mood else 0.0

    if rate is not None and len(rate):
        known = rate.sort_index()
        out["short_rate"] = known.reindex(days, method="ffill").to_numpy()
    else:
        out["short_rate"] = np.nan
    # Carry the last known value forward; before anything is known, 0 (no information).
    return out[list(FEATURES)].ffill().fillna(0.0).astype(float)


def _on_days(frame: pd.DataFrame | None, days: pd.Index, *, carry: bool = True) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame(index=days)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    if carry:
        return frame.reindex(days, method="ffill")
    # News is an event count: a day without stories has no mood and zero articles.
    return frame.reindex(days)


def standardise(matrix: np.ndarray, *, fit_rows: int | None = None) -> np.ndarray:
    """Columns to zero mean and unit variance, with statistics from the first
    ``fit_rows`` rows only (the training part); constant columns become 0."""
    fit = matrix[:fit_rows] if fit_rows else matrix
    mean = fit.mean(axis=0)
    std = fit.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return (matrix - mean) / std


async def daily_features(conn: asyncpg.Connection, asset_ids: Sequence[str], *,
                         days: int) -> dict[str, pd.DataFrame]:
    """:func:`build_features` for each asset over its last ``days`` days of gold.

    Each frame also has the day's ``close`` as its first column. Assets without price
    bars are left out.
    """
    ids = list(asset_ids)
    prices = await conn.fetch(
        """SELECT asset_id, day, close FROM (
               SELECT DISTINCT ON (asset_id, date_trunc('day', time)) asset_id,
                      date_trunc('day', time) AS day, close
               FROM price_data p
               WHERE asset_id = ANY($1::text[])
                 AND time >= (SELECT max(time) FROM price_data q WHERE q.asset_id = p.asset_id)
                             - make_interval(days => $2)
               ORDER BY asset_id, date_trunc('day', time), time DESC) d
           ORDER BY asset_id, day""", ids, days)
    onchain = await conn.fetch(
        """SELECT asset_id, date_trunc('day', time) AS day, holder_count, exchange_inflow,
                  exchange_outflow, transfer_volume
           FROM onchain_metrics WHERE asset_id = ANY($1::text[]) ORDER BY asset_id, time""", ids)
    mood = await conn.fetch(
        """SELECT asset_id, date_trunc('day', time) AS day,
                  sum(sentiment_score * article_count) FILTER (WHERE sentiment_score IS NOT NULL)
                  / nullif(sum(article_count) FILTER (WHERE sentiment_score IS NOT NULL), 0)
                      AS sentiment,
                  sum(article_count) AS articles
           FROM sentiment_scores WHERE asset_id = ANY($1::text[])
           GROUP BY 1, 2 ORDER BY 1, 2""", ids)
    rates = await conn.fetch(
        "SELECT time, value FROM macro_series WHERE series = $1 ORDER BY time", RATE_SERIES)
    rate = (pd.Series([r["value"] for r in rates],
                      index=pd.DatetimeIndex([r["time"] for r in rates])) if rates else None)

    def by_asset(rows: list, columns: Sequence[str]) -> dict[str, pd.DataFrame]:
        if not rows:
            return {}
        frame = pd.DataFrame([dict(r) for r in rows])
        frame["day"] = pd.DatetimeIndex(frame["day"])
        return {a: g.set_index("day")[list(columns)].astype(float)
                for a, g in frame.groupby("asset_id")}

    closes = by_asset(prices, ["close"])
    chains = by_asset(onchain, ["holder_count", "exchange_inflow", "exchange_outflow",
                                "transfer_volume"])
    moods = by_asset(mood, ["sentiment", "articles"])
    out = {}
    for a, c in closes.items():
        frame = build_features(c["close"], chains.get(a), moods.get(a), rate)
        frame.insert(0, "close", c["close"].sort_index().to_numpy())
        out[a] = frame
    return out


async def training_inputs(conn: asyncpg.Connection, *, days: int, min_points: int = 30,
                          ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Daily closes and the exogenous features (one row per close) of every asset in
    gold with at least ``min_points`` days, for :func:`training.lstm.make_windows`."""
    ids = [r["asset_id"] for r in await conn.fetch("SELECT DISTINCT asset_id FROM price_data")]
    frames = await daily_features(conn, ids, days=days)
    kept = {a: f for a, f in frames.items() if len(f) >= min_points}
    return ({a: f["close"].to_numpy() for a, f in kept.items()},
            {a: f[list(EXOGENOUS)].to_numpy() for a, f in kept.items()})
