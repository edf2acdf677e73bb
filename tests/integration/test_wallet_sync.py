"""Wallet sync against a real chain: an ERC-20 compiled by vyper, deployed to py-evm
(eth-tester), served over HTTP JSON-RPC as a node serves it, synced into embedded
PostgreSQL with the catalog loaded and the test tokens added as assets on ``ethereum``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from core import db
from core.catalog import load_catalog
from core.errors import ProviderUnavailable
from rwa.embedded import free_port
from serve.portfolio.chain import EvmReader
from serve.portfolio.config import WalletSyncArgs
from serve.portfolio.wallet_sync import prices_at, sync_wallet
from tests.databases import fresh_database
from tests.evm import Chain, JsonRpcServer

pytestmark = pytest.mark.integration

CHAIN = "ethereum"
GOLD, CREDIT = "test-gold", "test-credit"
#: Transfers happen in the chain's future (its genesis is the wall clock), on the hour grid.
BASE = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)


def hourly_close(k: int) -> float:
    """Close of the hourly bar starting at BASE + k hours."""
    return 2100.0 + 100.0 * k


@dataclass
class World:
    chain: Chain
    rpc: JsonRpcServer
    pool: asyncpg.Pool
    gold: object
    credit: object
    wallet: str
    other: str
    user: int
    user2: int

    def args(self, **overrides) -> WalletSyncArgs:
        return WalletSyncArgs(**{"rpc_urls": {CHAIN: self.rpc.url}, "confirmations": 0}
                              | overrides)

    async def sync(self, *, user: int | None = None, wallet: str | None = None, **overrides):
        reader = EvmReader.over_http(self.rpc.url, name=CHAIN, timeout_s=5)
        try:
            return await sync_wallet(self.pool, reader, user_id=user or self.user,
                                     wallet=wallet or self.wallet, chain=CHAIN,
                                     args=self.args(**overrides))
        finally:
            await reader.close()

    async def items(self, user: int | None = None) -> dict[str, asyncpg.Record]:
        rows = await self.pool.fetch(
            "SELECT * FROM portfolios WHERE user_id = $1", user or self.user)
        return {r["asset_id"]: r for r in rows}


@pytest.fixture
def chain() -> Iterator[Chain]:
    yield Chain()


@pytest.fixture
async def world(pg_uri: str, chain: Chain) -> AsyncIterator[World]:
    gold = chain.deploy_token("Test Gold", "TGLD", 6, 10**15)
    credit = chain.deploy_token("Test Credit", "TCRD", 18, 10**30)
    async with fresh_database(pg_uri, "wallet_sync") as uri:
        pool = await asyncpg.create_pool(uri, min_size=1, max_size=4)
        async with pool.acquire() as conn:
            await db.migrate(conn)
            await db.upsert_assets(conn, load_catalog())
            for asset_id, symbol, cls, token, ref in (
                    (GOLD, "TGLD", "gold", gold, 1900.0),
                    (CREDIT, "TCRD", "private_credit", credit, 1.0)):
                await conn.execute(
                    """INSERT INTO assets (asset_id, symbol, name, issuer, asset_class,
                           blockchain_network, chains, contract_address, reference_price)
                       VALUES ($1, $2, $2, 'tests', $3, 'ethereum', '{ethereum}', $4, $5)""",
                    asset_id, symbol, cls, token.address, ref)
            await conn.executemany(
                """INSERT INTO price_data (time, asset_id, open, high, low, close)
                   VALUES ($1, $2, $3, $3, $3, $3)""",
                [(BASE + timedelta(hours=k), GOLD, hourly_close(k)) for k in range(-3, 10)])
            users = [await conn.fetchval(
                "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING user_id",
                email) for email in ("one@example.com", "two@example.com")]
        with JsonRpcServer(chain) as rpc:
            yield World(chain, rpc, pool, gold, credit, wallet=chain.accounts[1],
                        other=chain.accounts[2], user=users[0], user2=users[1])
        await pool.close()


def at(hours: float) -> datetime:
    return BASE + timedelta(hours=hours)


def first_transfers(w: World) -> None:
    """10 TGLD in at 2000 (the 23:00 bar's close), 5 in at 2300, 6 out, a self-transfer,
    and 2.5 TCRD in (no price history: the catalog's reference price, 1.0)."""
    c, deployer = w.chain, w.chain.accounts[0]
    c.transfer(w.gold, deployer, w.wallet, 10 * 10**6, at=at(0.5))
    c.transfer(w.gold, deployer, w.wallet, 5 * 10**6, at=at(3.5))
    c.transfer(w.gold, w.wallet, w.other, 6 * 10**6, at=at(5.5))
    c.transfer(w.gold, w.wallet, w.wallet, 1 * 10**6, at=at(5.75))
    c.transfer(w.credit, deployer, w.wallet, 25 * 10**17, at=at(6.0))
    c.transfer(w.gold, deployer, w.other, 7 * 10**6, at=at(6.25))  # not the wallet's


async def test_sync_computes_quantities_and_average_cost_and_a_second_sync_adds_nothing(
        world: World) -> None:
    w = world
    first_transfers(w)
    result = await w.sync()
    assert (result.synced_assets, result.new_transactions) == (2, 5)
    assert result.complete and result.to_block == w.chain.head
    items = await w.items()
    assert set(items) == {GOLD, CREDIT}
    gold = items[GOLD]
    # Weighted average cost: (10 x 2000 + 5 x 2300) / 15 = 2100; 6 out at that average.
    assert gold["quantity"] == Decimal(9)
    assert float(gold["avg_purchase_price"]) == pytest.approx(2100.0, rel=1e-12)
    assert gold["wallet_address"] == w.wallet and gold["blockchain"] == CHAIN
    assert items[CREDIT]["quantity"] == Decimal("2.5")  # 18 decimals read from the contract
    assert float(items[CREDIT]["avg_purchase_price"]) == pytest.approx(1.0)

    rows = await w.pool.fetch(
        """SELECT asset_id, block_time, amount_raw, decimals, price_usd, price_source,
                  from_address, to_address
           FROM portfolio_transactions ORDER BY block_number, log_index""")
    assert [(r["asset_id"], r["price_usd"], r["price_source"]) for r in rows] == [
        (GOLD, 2000.0, "price_data"), (GOLD, 2300.0, "price_data"),
        (GOLD, 2500.0, "price_data"), (GOLD, 2500.0, "price_data"),
        (CREDIT, 1.0, "reference_price")]
    assert rows[0]["block_time"] == at(0.5) and rows[0]["decimals"] == 6
    assert rows[0]["to_address"] == w.wallet.lower() and rows[0]["amount_raw"] == 10**7
    assert rows[3]["from_address"] == rows[3]["to_address"] == w.wallet.lower()

    again = await w.sync()
    assert (again.synced_assets, again.new_transactions) == (2, 0)
    assert await w.pool.fetchval("SELECT count(*) FROM portfolio_transactions") == 5
    assert {k: (r["quantity"], r["avg_purchase_price"], r["portfolio_id"])
            for k, r in (await w.items()).items()} == {
        k: (r["quantity"], r["avg_purchase_price"], r["portfolio_id"]) for k, r in items.items()}


async def test_a_later_transfer_is_picked_up_incrementally(world: World) -> None:
    w = world
    first_transfers(w)
    first = await w.sync()
    cursors = await w.pool.fetch(
        "SELECT contract_address, last_block FROM wallet_sync_cursors WHERE wallet_address = $1",
        w.wallet.lower())
    assert len(cursors) == 2 + sum(1 for a in load_catalog()
                                   if a.blockchain_network == CHAIN and a.contract_address)
    assert {r["last_block"] for r in cursors} == {first.to_block}

    w.chain.transfer(w.gold, w.chain.accounts[0], w.wallet, 3 * 10**6, at=at(7.5))
    w.rpc.log_ranges.clear()
    later = await w.sync()
    assert (later.synced_assets, later.new_transactions) == (2, 1)
    assert later.from_block == first.to_block + 1
    assert w.rpc.log_ranges and min(low for low, _ in w.rpc.log_ranges) == first.to_block + 1
    gold = (await w.items())[GOLD]
    # 9 at 2100 plus 3 at 2700 (the 06:00 bar): 27000 / 12 = 2250.
    assert gold["quantity"] == Decimal(12)
    assert float(gold["avg_purchase_price"]) == pytest.approx(2250.0, rel=1e-12)


async def test_each_transfer_is_recorded_once_across_wallets_and_users(world: World) -> None:
    w = world
    first_transfers(w)
    await w.sync()
    # The other wallet received 6 from our wallet (recorded already) and 7 from the deployer.
    other = await w.sync(user=w.user2, wallet=w.other)
    assert (other.synced_assets, other.new_transactions) == (1, 1)
    theirs = await w.items(w.user2)
    assert set(theirs) == {GOLD} and theirs[GOLD]["quantity"] == Decimal(13)
    # Received 6 at 05:30 (the 04:00 bar's close, 2500) and 7 at 06:15 (05:00's, 2600).
    assert float(theirs[GOLD]["avg_purchase_price"]) == pytest.approx(
        (6 * 2500.0 + 7 * 2600.0) / 13, rel=1e-12)
    assert (await w.items())[GOLD]["quantity"] == Decimal(9)  # user one's item untouched
    assert await w.pool.fetchval("SELECT count(*) FROM portfolio_transactions") == 6


async def test_refused_wide_ranges_are_split_and_a_block_budget_resumes(world: World) -> None:
    w = world
    first_transfers(w)
    w.rpc.max_log_range = 3
    results = []
    for _ in range(20):
        results.append(await w.sync(log_chunk_blocks=1000, max_blocks_per_sync=4))
        if results[-1].complete:
            break
    assert [r.complete for r in results] == [False] * (len(results) - 1) + [True]
    assert len(results) == -(-(w.chain.head + 1) // 4)  # ceil(blocks / 4)
    assert sum(r.new_transactions for r in results) == 5
    refused = [(lo, hi) for lo, hi in w.rpc.log_ranges if hi - lo + 1 > 3]
    assert refused, "the endpoint's range limit was never hit"
    items = await w.items()
    assert items[GOLD]["quantity"] == Decimal(9)
    assert float(items[GOLD]["avg_purchase_price"]) == pytest.approx(2100.0, rel=1e-12)


async def test_confirmations_hold_back_the_newest_blocks(world: World) -> None:
    w = world
    w.chain.transfer(w.gold, w.chain.accounts[0], w.wallet, 10**6, at=at(0.5))
    held = await w.sync(confirmations=2)
    assert (held.synced_assets, held.new_transactions) == (0, 0)
    assert held.to_block == w.chain.head - 2
    w.chain.mine(2)
    now = await w.sync(confirmations=2)
    assert (now.synced_assets, now.new_transactions) == (1, 1)


async def test_an_emptied_position_removes_its_item(world: World) -> None:
    w = world
    c = w.chain
    c.transfer(w.gold, c.accounts[0], w.wallet, 4 * 10**6, at=at(0.5))
    await w.sync()
    assert (await w.items())[GOLD]["quantity"] == Decimal(4)
    c.transfer(w.gold, w.wallet, w.other, 4 * 10**6, at=at(1.5))
    emptied = await w.sync()
    assert (emptied.synced_assets, emptied.new_transactions) == (0, 1)
    assert await w.items() == {}


async def test_an_unreachable_endpoint_is_provider_unavailable(world: World) -> None:
    reader = EvmReader.over_http(f"http://127.0.0.1:{free_port()}/v3/SECRETKEY", name=CHAIN,
                                 timeout_s=2)
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await sync_wallet(world.pool, reader, user_id=world.user, wallet=world.wallet,
                              chain=CHAIN, args=world.args())
    finally:
        await reader.close()
    assert "SECRETKEY" not in str(caught.value)
    assert await world.pool.fetchval("SELECT count(*) FROM wallet_sync_cursors") == 0


async def test_prices_at_prefers_the_last_closed_bar_then_falls_back(world: World) -> None:
    async with world.pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO price_bars_1d (time, asset_id, open, high, low, close)
               VALUES ($1, $2, 1, 1, 1, 1234.0)""", BASE + timedelta(days=3), GOLD)
        got = await prices_at(conn, [
            (GOLD, at(0.5)),              # the 23:00 bar closed at 00:00: 2000
            (GOLD, at(1)),                # the 00:00 bar closed exactly then: 2100
            (GOLD, at(-10)),              # before any bar: the first to close after
            (GOLD, at(24 * 5)),           # the daily bar closed later than any hourly one
            (CREDIT, at(0)),              # no bars at all: the catalog's reference price
        ])
    assert [(p.price, p.source) for p in got] == [
        (2000.0, "price_data"), (2100.0, "price_data"),
        (hourly_close(-3), "price_data (first after)"), (1234.0, "price_bars_1d"),
        (1.0, "reference_price")]
