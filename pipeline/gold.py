"""Gold loads into PostgreSQL: COPY into a temporary staging table, then one idempotent
upsert, so loading the same bars twice leaves the table exactly as loading them once."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pyarrow.parquet as pq

PRICE_COLUMNS = ("time", "asset_id", "open", "high", "low", "close", "volume")


async def load_price_bars(conn: asyncpg.Connection, records: list[tuple]) -> int:
    """Upsert ``(time, asset_id, open, high, low, close, volume)`` rows into price_data."""
    if not records:
        return 0
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS price_data_stage "
            "(LIKE price_data INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table("price_data_stage", records=records, columns=PRICE_COLUMNS)
        await conn.execute(
            """INSERT INTO price_data (time, asset_id, open, high, low, close, volume)
               SELECT time, asset_id, open, high, low, close, volume FROM price_data_stage
               ON CONFLICT (asset_id, time) DO UPDATE SET
                   open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
                   close = EXCLUDED.close, volume = EXCLUDED.volume"""
        )
    return len(records)


def read_bar_records(folder: Path) -> list[tuple]:
    """The bars Spark wrote to ``folder`` as rows ready for COPY."""
    if not any(folder.glob("*.parquet")):
        return []
    # Spark's _SUCCESS and .crc files are skipped by pyarrow's default ignore prefixes.
    table = pq.read_table(folder, columns=list(PRICE_COLUMNS))
    cols = [table.column(c).to_pylist() for c in PRICE_COLUMNS]
    return list(zip(*cols))


async def record_quarantine(conn: asyncpg.Connection, stage: str, rows: list[tuple[str, str]]) -> None:
    """Keep rejected records with the rule they broke."""
    if rows:
        await conn.copy_records_to_table(
            "quarantine", records=[(stage, rule, record) for rule, record in rows],
            columns=("stage", "rule", "record"),
        )
