"""Gold loads into PostgreSQL: COPY into a temporary staging table, then one idempotent
upsert, so loading the same rows twice leaves a table exactly as loading them once.

:func:`load_rows` is the one loader; the per-dataset functions name the table, its
columns and its natural key. Rows come from the Parquet folders Spark writes into the
lake's gold hand-off (:func:`read_records`).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import asyncpg
import pyarrow.parquet as pq

Interval = Literal["1m", "1h", "1d"]

PRICE_COLUMNS = ("time", "asset_id", "open", "high", "low", "close", "volume")
PRICE_KEY = ("asset_id", "time")
#: The bar table of each interval; ``price_data`` is the hourly one the API reads.
PRICE_TABLES: dict[Interval, str] = {"1m": "price_bars_1m", "1h": "price_data", "1d": "price_bars_1d"}

ONCHAIN_COLUMNS = (
    "time", "asset_id", "holder_count", "transfer_volume", "dex_liquidity", "exchange_inflow",
    "exchange_outflow", "transfer_count", "nav", "apy", "tvl_usd", "chain",
)
ONCHAIN_KEY = ("asset_id", "time")

MACRO_COLUMNS = ("time", "series", "value", "unit", "country", "frequency", "source")
MACRO_KEY = ("series", "time")

SENTIMENT_COLUMNS = ("time", "asset_id", "sentiment_score", "article_count", "source")
SENTIMENT_KEY = ("asset_id", "time", "source")

QUARANTINE_COLUMNS = ("stage", "rule", "record")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _ident(name: str) -> str:
    """``name`` quoted as an SQL identifier; table and column names are never user input,
    but a typo must fail loudly rather than build odd SQL."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


async def _stage(conn: asyncpg.Connection, table: str, columns: Sequence[str],
                 records: Sequence[Sequence]) -> str:
    """COPY ``records`` into this session's staging table for ``table`` and ``columns``.

    The staging table has the target's column types but none of its constraints (those
    are checked once, by the insert). It is emptied before the COPY, as a caller's own
    transaction may hold an earlier load's rows, and at commit. Must run inside a
    transaction.
    """
    tag = zlib.crc32(",".join(columns).encode())
    stage = f"_stage_{table}_{tag:08x}"
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_ident(stage)} ON COMMIT DELETE ROWS AS "
        f"SELECT {', '.join(map(_ident, columns))} FROM {_ident(table)} WITH NO DATA"
    )
    await conn.execute(f"TRUNCATE {_ident(stage)}")
    await conn.copy_records_to_table(stage, records=records, columns=list(columns))
    return stage


async def load_rows(conn: asyncpg.Connection, table: str, columns: Sequence[str],
                    key_columns: Sequence[str], records: Sequence[Sequence], *,
                    keep_stored: Sequence[str] = ()) -> int:
    """Upsert ``records`` (tuples in ``columns`` order) into ``table``, in one transaction.

    A row whose key is stored already overwrites the stored row's other columns; one
    that changes nothing is not written at all, so a re-run leaves no dead rows behind.
    Where the batch holds a key more than once, its last occurrence wins (COPY into the
    emptied staging table keeps input order, which ``ctid`` follows).

    Args:
        key_columns: The columns of ``table``'s primary key or a unique index over them.
        keep_stored: Columns whose stored value stays where the new row has null there
            (a value another writer fills in later).

    Returns:
        How many rows were inserted or changed.
    """
    if not records:
        return 0
    if not set(key_columns) <= set(columns):
        raise ValueError(f"key columns {key_columns} are not all among {columns}")
    cols = ", ".join(map(_ident, columns))
    keys = ", ".join(map(_ident, key_columns))
    new = {c: (f"coalesce(EXCLUDED.{_ident(c)}, t.{_ident(c)})" if c in keep_stored
               else f"EXCLUDED.{_ident(c)}")
           for c in columns if c not in key_columns}
    if new:
        sets = ", ".join(f"{_ident(c)} = {value}" for c, value in new.items())
        stored = ", ".join(f"t.{_ident(c)}" for c in new)
        # ROW(...) keeps a single value column a row comparison, not a scalar one.
        on_conflict = (f"DO UPDATE SET {sets} "
                       f"WHERE ROW({stored}) IS DISTINCT FROM ROW({', '.join(new.values())})")
    else:
        on_conflict = "DO NOTHING"
    async with conn.transaction():
        stage = await _stage(conn, table, columns, records)
        # Key order also suits the insert: the primary key's index is filled in order.
        status = await conn.execute(
            f"INSERT INTO {_ident(table)} AS t ({cols}) "
            f"SELECT DISTINCT ON ({keys}) {cols} FROM {_ident(stage)} "
            f"ORDER BY {keys}, ctid DESC "
            f"ON CONFLICT ({keys}) {on_conflict}"
        )
    return int(status.rsplit(" ", 1)[-1])


async def load_price_bars(conn: asyncpg.Connection, records: Sequence[Sequence], *,
                          interval: Interval = "1h") -> int:
    """Upsert ``(time, asset_id, open, high, low, close, volume)`` bars of ``interval``.

    Hourly bars go to ``price_data``, minute and daily bars to ``price_bars_1m`` and
    ``price_bars_1d``. Returns how many bars were inserted or changed.
    """
    return await load_rows(conn, PRICE_TABLES[interval], PRICE_COLUMNS, PRICE_KEY, records)


async def load_onchain_daily(conn: asyncpg.Connection, records: Sequence[Sequence]) -> int:
    """Upsert daily on-chain rows in :data:`ONCHAIN_COLUMNS` order into onchain_metrics.

    ``time`` is the day's start (UTC). A row replaces the stored day whole, unknown
    metrics included, since the day is recomputed from all of silver's observations.
    """
    return await load_rows(conn, "onchain_metrics", ONCHAIN_COLUMNS, ONCHAIN_KEY, records)


async def load_macro_series(conn: asyncpg.Connection, records: Sequence[Sequence]) -> int:
    """Upsert macro observations in :data:`MACRO_COLUMNS` order into macro_series."""
    return await load_rows(conn, "macro_series", MACRO_COLUMNS, MACRO_KEY, records)


async def load_sentiment_hourly(conn: asyncpg.Connection, records: Sequence[Sequence]) -> int:
    """Upsert hourly sentiment per asset and source, in :data:`SENTIMENT_COLUMNS` order.

    Article counts arrive before a model scores the hour: a row whose
    ``sentiment_score`` is null keeps the score stored for that hour, if any.
    """
    return await load_rows(conn, "sentiment_scores", SENTIMENT_COLUMNS, SENTIMENT_KEY, records,
                           keep_stored=("sentiment_score",))


def read_records(folder: Path, columns: Sequence[str]) -> list[tuple]:
    """The rows Spark wrote to the Parquet folder ``folder``, as tuples in ``columns``
    order ready for COPY; none when the folder holds no Parquet file."""
    if not any(folder.glob("*.parquet")):
        return []
    # Spark's _SUCCESS and .crc files are skipped by pyarrow's default ignore prefixes.
    table = pq.read_table(folder, columns=list(columns))
    return list(zip(*(table.column(c).to_pylist() for c in columns)))


def read_bar_records(folder: Path) -> list[tuple]:
    """The bars Spark wrote to ``folder`` as rows ready for :func:`load_price_bars`."""
    return read_records(folder, PRICE_COLUMNS)


async def record_quarantine(conn: asyncpg.Connection, stage: str,
                            rows: Sequence[tuple[str, str]]) -> int:
    """Keep rejected ``(rule, record)`` rows of ``stage``; a row kept before is skipped,
    so a re-run batch adds nothing. Returns how many rows were new."""
    if not rows:
        return 0
    async with conn.transaction():
        staged = await _stage(conn, "quarantine", QUARANTINE_COLUMNS,
                              [(stage, rule, record) for rule, record in rows])
        status = await conn.execute(
            f"INSERT INTO quarantine (stage, rule, record) "
            f"SELECT stage, rule, record FROM {_ident(staged)} "
            f"ON CONFLICT (stage, rule, md5(record)) DO NOTHING"
        )
    return int(status.rsplit(" ", 1)[-1])
