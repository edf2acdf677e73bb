"""Risk scores against the real embedded PostgreSQL (pgserver): the migration, inputs read
from gold, one appended row per asset and run, and the latest score with its explanation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from core import db
from core.catalog import load_catalog
from tests.databases import fresh_database
from training.risk import (
    FACTOR_NAMES,
    METHODOLOGY_VERSION,
    NewsItem,
    latest_risk,
    recompute_risk,
    risk_history,
)
from training.risk_store import DAILY_SOURCE, HOURLY_SOURCE, ONCHAIN_SOURCE

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture
async def conn(pg_uri: str) -> AsyncIterator[asyncpg.Connection]:
    """A new database, migrated, with the catalog loaded."""
    async with fresh_database(pg_uri, "risk") as uri:
        conn = await asyncpg.connect(uri)
        try:
            await db.migrate(conn)
            await db.upsert_assets(conn, load_catalog())
            yield conn
        finally:
            await conn.close()


async def _load_gold(conn: asyncpg.Connection) -> None:
    """PAXG: 120 daily bars (volatile); BUIDL: 40 days of hourly bars only, with NAV."""
    rng = np.random.default_rng(5)
    closes = 3000 * np.exp(np.cumsum(rng.normal(0, 0.02, 120)))
    days = [NOW.replace(hour=0) - timedelta(days=119 - i) for i in range(120)]
    await conn.copy_records_to_table(
        "price_bars_1d", columns=["time", "asset_id", "open", "high", "low", "close", "volume"],
        records=[(d, "paxg", c, c * 1.01, c * 0.99, c, 50.0) for d, c in zip(days, closes)])
    hours = [NOW - timedelta(hours=h) for h in range(40 * 24, 0, -1)]
    await conn.copy_records_to_table(
        "price_data", columns=["time", "asset_id", "open", "high", "low", "close", "volume"],
        records=[(t, "buidl", 1.0, 1.001, 0.999, 1.0 + (0.004 if t.hour == 23 else 0.0), 1000.0)
                 for t in hours])
    await conn.copy_records_to_table(
        "onchain_metrics", columns=["time", "asset_id", "dex_liquidity", "nav"],
        records=[(NOW.replace(hour=0) - timedelta(days=i), "buidl", 2e5, 1.0)
                 for i in range(30)])
    # A bar after the score time must not be read.
    await conn.execute(
        "INSERT INTO price_bars_1d VALUES ($1, 'paxg', 1, 1, 1, 1, 1)", NOW + timedelta(days=1))


async def test_the_migration_adds_the_explanation_columns(conn: asyncpg.Connection) -> None:
    columns = {r["column_name"]: r["data_type"] for r in await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'risk_scores'")}
    assert columns["explanation"] == "jsonb" and columns["methodology_version"] == "text"
    assert {"score_id", "asset_id", "composite_score", "market_risk", "credit_risk",
            "regulatory_risk", "technical_risk", "calculated_at"} <= set(columns)
    assert await db.migrate(conn) == []  # applied once; a second run changes nothing


async def test_recompute_appends_history_and_the_latest_explains_itself(
        conn: asyncpg.Connection) -> None:
    await _load_gold(conn)
    assets = load_catalog()
    news = [NewsItem(NOW - timedelta(days=2), "SEC charges Paxos over PAX Gold sales", ("paxg",))]

    assert await recompute_risk(conn, now=NOW - timedelta(hours=1)) == len(assets)
    assert await recompute_risk(conn, now=NOW, news=news) == len(assets)

    counts = await conn.fetch("SELECT asset_id, count(*) AS n FROM risk_scores GROUP BY asset_id")
    assert {r["asset_id"]: r["n"] for r in counts} == {a.asset_id: 2 for a in assets}

    latest = await latest_risk(conn, "paxg")
    assert latest is not None and latest["calculated_at"] == NOW
    assert latest["methodology_version"] == METHODOLOGY_VERSION
    explanation = latest["explanation"]
    assert explanation["composite"]["score"] == latest["composite_score"]
    factors = {f["name"]: f for s in explanation["sub_scores"].values() for f in s["factors"]}
    assert sorted(factors) == sorted(FACTOR_NAMES)  # jsonb keeps lists in order, not keys
    for column, sub in (("market_risk", "market"), ("credit_risk", "credit"),
                        ("regulatory_risk", "regulatory"), ("technical_risk", "technical")):
        assert latest[column] == explanation["sub_scores"][sub]["score"]
    # PAXG's closes came from the daily bars (120, not the future one), and the news counted.
    volatility = factors["volatility"]
    assert not volatility["assumed"] and volatility["source"] == DAILY_SOURCE
    assert "120 daily closes" in factors["max_drawdown"]["evidence"]
    assert factors["regulatory_news"]["points"] > 0
    assert "SEC charges Paxos" in factors["regulatory_news"]["evidence"]

    history = await risk_history(conn, "paxg")
    assert [h["calculated_at"] for h in history] == [NOW, NOW - timedelta(hours=1)]
    assert history[0]["regulatory_risk"] > history[1]["regulatory_risk"]

    # BUIDL has only hourly bars: the last close of each UTC day, and its NAV premium.
    buidl = await latest_risk(conn, "buidl")
    assert buidl is not None
    b = {f["name"]: f for s in buidl["explanation"]["sub_scores"].values() for f in s["factors"]}
    assert b["volatility"]["source"] == HOURLY_SOURCE and not b["volatility"]["assumed"]
    assert b["nav_premium"]["source"] == ONCHAIN_SOURCE and not b["nav_premium"]["assumed"]
    # Each full day closes at 1.004 (its 23:00 bar) against a NAV of 1; today's last bar
    # (11:00) closes at 1.0: 29 days of 0.4 % and one of 0 over the 30-day window.
    assert b["nav_premium"]["value"] == pytest.approx(0.004 * 29 / 30, abs=1e-6)
    # Secondary liquidity: the larger of DEX depth ($200k) and daily volume (24 × 1000 × ~$1).
    assert b["liquidity"]["value"] == pytest.approx(2e5)
    assert "median daily volume $24,0" in b["liquidity"]["evidence"]
    # An asset with no gold at all is still scored, from the catalog and stated defaults.
    kau = await latest_risk(conn, "kau")
    assert kau is not None and "volatility" in kau["explanation"]["assumed_factors"]

    assert await latest_risk(conn, "no-such-asset") is None


async def test_assets_missing_from_the_table_are_skipped(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM assets WHERE asset_id = 'kau'")
    assert await recompute_risk(conn, now=NOW) == len(load_catalog()) - 1
    assert await latest_risk(conn, "kau") is None
