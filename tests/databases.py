"""Throwaway PostgreSQL databases for tests on the embedded server (``pg_uri`` fixture in
tests/conftest.py): each test module gets one server; tests that need a clean schema make
their own database on it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import asyncpg


def with_db(uri: str, name: str) -> str:
    """``uri`` pointing at database ``name`` instead, its query (the socket) kept."""
    base, _, query = uri.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@asynccontextmanager
async def fresh_database(pg_uri: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty database on ``pg_uri``'s server for the block; its URI is yielded and
    the database dropped afterwards, open connections or not."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_uri)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_db(pg_uri, name)
    finally:
        admin = await asyncpg.connect(pg_uri)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def catalog_database(pg_uri: str, prefix: str) -> AsyncIterator[str]:
    """:func:`fresh_database`, migrated and holding the asset catalog; its URI is yielded."""
    from core import db
    from core.catalog import load_catalog

    async with fresh_database(pg_uri, prefix) as uri:
        conn = await asyncpg.connect(uri)
        try:
            await db.migrate(conn)
            await db.upsert_assets(conn, load_catalog())
        finally:
            await conn.close()
        yield uri


def hourly_bars(asset_id: str, closes: Sequence[float], *, end: datetime) -> list[tuple]:
    """Gold price rows (time, asset_id, open, high, low, close, volume), one an hour up to
    ``end``: each bar opens at the previous close."""
    start = end - timedelta(hours=len(closes))
    out, prev = [], closes[0]
    for i, c in enumerate(closes):
        out.append((start + timedelta(hours=i), asset_id, prev, max(prev, c), min(prev, c), c, 1.0))
        prev = c
    return out
