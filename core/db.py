"""PostgreSQL access: connection pools, versioned migrations, and the catalog loader.

Migrations are the numbered ``migrations/NNNN_name.sql`` files, applied in order,
each once, inside one transaction per file, under an advisory lock so that two
processes starting together never apply the same migration twice.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

from core.domain import Asset

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x52574150  # "RWAP": the advisory lock guarding migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("core.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply every migration not applied yet; return the versions applied now."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for m in migrations():
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    m.version,
                    m.name,
                )
            log.info("applied migration %04d_%s", m.version, m.name)
            applied_now.append(m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def upsert_assets(conn: asyncpg.Connection, assets: Sequence[Asset]) -> int:
    """Load the catalog into ``assets``; running it again changes nothing but updated_at."""
    await conn.executemany(
        """INSERT INTO assets (asset_id, symbol, name, issuer, asset_class, blockchain_network,
                               chains, contract_address, reference_price, apy, description,
                               underlying_asset_details)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
           ON CONFLICT (asset_id) DO UPDATE SET
               symbol = EXCLUDED.symbol, name = EXCLUDED.name, issuer = EXCLUDED.issuer,
               asset_class = EXCLUDED.asset_class,
               blockchain_network = EXCLUDED.blockchain_network, chains = EXCLUDED.chains,
               contract_address = EXCLUDED.contract_address,
               reference_price = EXCLUDED.reference_price, apy = EXCLUDED.apy,
               description = EXCLUDED.description,
               underlying_asset_details = EXCLUDED.underlying_asset_details,
               updated_at = now()""",
        [
            (
                a.asset_id,
                a.symbol,
                a.name,
                a.issuer,
                a.asset_class,
                a.blockchain_network,
                a.chains,
                a.contract_address,
                a.reference_price,
                a.apy,
                a.description,
                json.dumps(a.underlying_asset_details),
            )
            for a in assets
        ],
    )
    return len(assets)


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn)


class SyncDb:
    """One asyncpg connection driven from synchronous code (actor threads).

    Actors run their loops in plain threads; this gives them the same asyncpg code
    paths as the async API without a second driver. Calls are serialised by a lock.
    """

    def __init__(self, dsn: str) -> None:
        import asyncio
        import threading

        self._dsn = dsn
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._conn: asyncpg.Connection | None = None

    def run(self, fn):
        """Run ``await fn(conn)`` and return its result, reconnecting if the link dropped."""
        with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = self._loop.run_until_complete(asyncpg.connect(self._dsn))
            try:
                return self._loop.run_until_complete(fn(self._conn))
            except (OSError, asyncpg.exceptions.ConnectionDoesNotExistError,
                    asyncpg.exceptions.InterfaceError):
                self._conn = None
                raise

    def execute(self, query: str, *args) -> str:
        return self.run(lambda c: c.execute(query, *args))

    def fetch(self, query: str, *args) -> list:
        return self.run(lambda c: c.fetch(query, *args))

    def fetchval(self, query: str, *args):
        return self.run(lambda c: c.fetchval(query, *args))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                self._loop.run_until_complete(self._conn.close())
            self._loop.close()


async def load_cursor(conn: asyncpg.Connection, source: str) -> dict | None:
    raw = await conn.fetchval("SELECT cursor FROM ingest_cursors WHERE source = $1", source)
    return json.loads(raw) if raw else None


async def save_cursor(conn: asyncpg.Connection, source: str, cursor: dict) -> None:
    await conn.execute(
        """INSERT INTO ingest_cursors (source, cursor, updated_at) VALUES ($1, $2::jsonb, now())
           ON CONFLICT (source) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()""",
        source,
        json.dumps(cursor),
    )
