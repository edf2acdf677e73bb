"""Gold loads into PostgreSQL: COPY into a temporary staging table, then one idempotent
upsert, so loading the same rows twice leaves a table exactly as loading them once.

:func:`load_rows` is the one loader; the per-dataset functions name the table, its
columns and its natural key. Rows come from the Parquet folders Spark writes into the
lake's gold hand-off (:func:`read_table`).
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Literal

import asyncpg
import pyarrow as pa
import pyarrow.csv as pacsv
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


#: Rows per CSV chunk sent to COPY: PostgreSQL parses one chunk while the next is written.
_COPY_CHUNK_ROWS = 65_536

Rows = Sequence[Sequence] | pa.Table


def as_table(columns: Sequence[str], rows: Rows) -> pa.Table:
    """``rows`` as an Arrow table of ``columns``: tuples in ``columns`` order, or a table
    holding at least those columns (extra ones are dropped).

    Raises:
        ValueError: For a tuple of the wrong length, a missing column, or a column
            whose values Arrow cannot give one type.
    """
    if isinstance(rows, pa.Table):
        missing = [c for c in columns if c not in rows.column_names]
        if missing:
            raise ValueError(f"rows lack the columns {missing}")
        return rows.select(list(columns))
    if any(len(r) != len(columns) for r in rows):
        raise ValueError(f"every row must hold {len(columns)} values: {', '.join(columns)}")
    values = list(zip(*rows)) if rows else [() for _ in columns]
    try:
        return pa.table({c: pa.array(v) for c, v in zip(columns, values)})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"rows do not fit their columns: {exc}") from exc


def _csv_ready(table: pa.Table) -> pa.Table:
    """Timestamps as naive UTC wall times: Arrow formats zoned timestamps twenty times
    slower than naive ones, and the COPY's session reads them as UTC anyway."""
    fields = []
    arrays = []
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_timestamp(field.type):
            naive = pa.timestamp(field.type.unit)
            if field.type.tz is not None:
                column = column.cast(pa.timestamp(field.type.unit, "UTC")).cast(naive)
            field = field.with_type(naive)
        fields.append(field)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


async def _csv_chunks(table: pa.Table) -> AsyncIterator[bytes]:
    # Every valid value quoted: the only way CSV tells an empty string from a null.
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    for batch in _csv_ready(table).to_batches(max_chunksize=_COPY_CHUNK_ROWS):
        sink = io.BytesIO()
        pacsv.write_csv(batch, sink, options)
        yield sink.getvalue()


async def _stage(conn: asyncpg.Connection, table: str, columns: Sequence[str],
                 rows: pa.Table) -> str:
    """COPY ``rows`` into this session's staging table for ``table`` and ``columns``.

    The staging table has the target's column types but none of its constraints (those
    are checked once, by the write). It is emptied before the COPY, as a caller's own
    transaction may hold an earlier load's rows, and at commit. Rows travel as CSV
    written by Arrow, which is several times faster than encoding Python tuples.
    Must run inside a transaction.
    """
    tag = zlib.crc32(",".join(columns).encode())
    stage = f"_stage_{table}_{tag:08x}"
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_ident(stage)} ON COMMIT DELETE ROWS AS "
        f"SELECT {', '.join(map(_ident, columns))} FROM {_ident(table)} WITH NO DATA"
    )
    await conn.execute(f"TRUNCATE {_ident(stage)}")
    await conn.execute("SET LOCAL TimeZone = 'UTC'")
    await conn.copy_to_table(stage, source=_csv_chunks(rows), columns=list(columns),
                             format="csv")
    # The planner needs the batch's size to choose between probing the target's key
    # index (small batches) and joining whole (large ones).
    await conn.execute(f"ANALYZE {_ident(stage)}")
    return stage


async def load_rows(conn: asyncpg.Connection, table: str, columns: Sequence[str],
                    key_columns: Sequence[str], rows: Rows, *,
                    keep_stored: Sequence[str] = ()) -> int:
    """Upsert ``rows`` into ``table``, in one transaction.

    A row whose key is stored already overwrites the stored row's other columns; one
    that changes nothing is not written at all, so a re-run leaves no dead rows behind.
    Where the batch holds a key more than once, its last occurrence wins.

    The write is a MERGE from the staging table rather than INSERT … ON CONFLICT: new
    rows are then plain inserts, where ON CONFLICT makes each a speculative insertion,
    which took twice as long. Concurrent loads of the same new key are not expected
    (one stream, backfills of other ranges); should one happen, the loser fails with a
    unique violation and its caller re-runs the batch, which is idempotent.

    Args:
        rows: Tuples in ``columns`` order, or an Arrow table with those columns (the
            fast path: a Parquet hand-off read with :func:`read_table`).
        key_columns: The columns of ``table``'s primary key or a unique index over them.
        keep_stored: Columns whose stored value stays where the new row has null there
            (a value another writer fills in later).

    Returns:
        How many rows were inserted or changed.
    """
    if not set(key_columns) <= set(columns):
        raise ValueError(f"key columns {key_columns} are not all among {columns}")
    for name in (table, *columns):
        _ident(name)
    batch = as_table(columns, rows)
    if not batch.num_rows:
        return 0
    async with conn.transaction():
        stage = await _stage(conn, table, columns, batch)
        merge = _merge_sql(table, columns, key_columns, keep_stored, source=_ident(stage))
        try:
            async with conn.transaction():  # a savepoint: the fallback below reuses the stage
                status = await conn.execute(merge)
        except (asyncpg.CardinalityViolationError, asyncpg.UniqueViolationError):
            # The batch holds a key twice: keep each key's last row (COPY keeps input
            # order, which ctid follows) and merge again.
            keys = ", ".join(map(_ident, key_columns))
            last = (f"(SELECT DISTINCT ON ({keys}) * FROM {_ident(stage)} "
                    f"ORDER BY {keys}, ctid DESC)")
            status = await conn.execute(
                _merge_sql(table, columns, key_columns, keep_stored, source=last))
    return int(status.rsplit(" ", 1)[-1])


def _merge_sql(table: str, columns: Sequence[str], key_columns: Sequence[str],
               keep_stored: Sequence[str], *, source: str) -> str:
    """MERGE of ``source`` into ``table`` on ``key_columns``: insert new keys, update a
    stored key only where a value differs."""
    on = " AND ".join(f"t.{_ident(c)} = s.{_ident(c)}" for c in key_columns)
    new = {c: (f"coalesce(s.{_ident(c)}, t.{_ident(c)})" if c in keep_stored
               else f"s.{_ident(c)}")
           for c in columns if c not in key_columns}
    insert = (f"WHEN NOT MATCHED THEN INSERT ({', '.join(map(_ident, columns))}) "
              f"VALUES ({', '.join(f's.{_ident(c)}' for c in columns)})")
    if not new:
        return f"MERGE INTO {_ident(table)} AS t USING {source} AS s ON {on} {insert}"
    stored = ", ".join(f"t.{_ident(c)}" for c in new)
    sets = ", ".join(f"{_ident(c)} = {value}" for c, value in new.items())
    # ROW(...) keeps a single value column a row comparison, not a scalar one.
    return (f"MERGE INTO {_ident(table)} AS t USING {source} AS s ON {on} "
            f"WHEN MATCHED AND ROW({stored}) IS DISTINCT FROM ROW({', '.join(new.values())}) "
            f"THEN UPDATE SET {sets} {insert}")


async def load_price_bars(conn: asyncpg.Connection, records: Rows, *,
                          interval: Interval = "1h") -> int:
    """Upsert ``(time, asset_id, open, high, low, close, volume)`` bars of ``interval``.

    Hourly bars go to ``price_data``, minute and daily bars to ``price_bars_1m`` and
    ``price_bars_1d``. Returns how many bars were inserted or changed.
    """
    return await load_rows(conn, PRICE_TABLES[interval], PRICE_COLUMNS, PRICE_KEY, records)


async def load_onchain_daily(conn: asyncpg.Connection, records: Rows) -> int:
    """Upsert daily on-chain rows in :data:`ONCHAIN_COLUMNS` order into onchain_metrics.

    ``time`` is the day's start (UTC). A row replaces the stored day whole, unknown
    metrics included, since the day is recomputed from all of silver's observations.
    """
    return await load_rows(conn, "onchain_metrics", ONCHAIN_COLUMNS, ONCHAIN_KEY, records)


async def load_macro_series(conn: asyncpg.Connection, records: Rows) -> int:
    """Upsert macro observations in :data:`MACRO_COLUMNS` order into macro_series."""
    return await load_rows(conn, "macro_series", MACRO_COLUMNS, MACRO_KEY, records)


async def load_sentiment_hourly(conn: asyncpg.Connection, records: Rows) -> int:
    """Upsert hourly sentiment per asset and source, in :data:`SENTIMENT_COLUMNS` order.

    Article counts arrive before a model scores the hour: a row whose
    ``sentiment_score`` is null keeps the score stored for that hour, if any.
    """
    return await load_rows(conn, "sentiment_scores", SENTIMENT_COLUMNS, SENTIMENT_KEY, records,
                           keep_stored=("sentiment_score",))


def read_table(folder: Path, columns: Sequence[str]) -> pa.Table | None:
    """The rows Spark wrote to the Parquet folder ``folder`` as an Arrow table of
    ``columns``, ready for :func:`load_rows`; None when the folder holds no Parquet file."""
    if not any(folder.glob("*.parquet")):
        return None
    # Spark's _SUCCESS and .crc files are skipped by pyarrow's default ignore prefixes.
    return pq.read_table(folder, columns=list(columns))


async def record_quarantine(conn: asyncpg.Connection, stage: str,
                            rows: Sequence[tuple[str, str]]) -> int:
    """Keep rejected ``(rule, record)`` rows of ``stage``; a row kept before is skipped,
    so a re-run batch adds nothing. Returns how many rows were new."""
    if not rows:
        return 0
    async with conn.transaction():
        staged = await _stage(conn, "quarantine", QUARANTINE_COLUMNS, as_table(
            QUARANTINE_COLUMNS, [(stage, rule, record) for rule, record in rows]))
        status = await conn.execute(
            f"INSERT INTO quarantine (stage, rule, record) "
            f"SELECT stage, rule, record FROM {_ident(staged)} "
            f"ON CONFLICT (stage, rule, md5(record)) DO NOTHING"
        )
    return int(status.rsplit(" ", 1)[-1])
