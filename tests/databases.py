"""Throwaway PostgreSQL databases for tests on the embedded server (``pg_uri`` fixture in
tests/conftest.py): each test module gets one server; tests that need a clean schema make
their own database on it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
