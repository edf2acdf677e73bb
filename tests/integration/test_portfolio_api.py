"""The portfolio and watchlist routes on a FastAPI app over embedded PostgreSQL and
Redis, driven through httpx's ASGI transport; wallet sync reads a real chain (py-evm
behind a local HTTP JSON-RPC server). Users come from a stand-in of the auth
dependency that reads an ``X-Test-User`` header."""

from __future__ import annotations

import json
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Annotated

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException

from core import cache, db
from core.catalog import by_id_or_symbol, load_catalog
from rwa.embedded import free_port
from serve.api import Services
from serve.args import AppArgs
from serve.portfolio.config import WalletSyncArgs
from serve.portfolio.routes import portfolio_router
from tests.databases import fresh_database
from tests.evm import Chain, JsonRpcServer

pytestmark = pytest.mark.integration

XAUT_REF = by_id_or_symbol("xaut").reference_price
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def current_user(x_test_user: Annotated[int | None, Header()] = None) -> SimpleNamespace:
    if x_test_user is None:
        raise HTTPException(401, "not authenticated")
    return SimpleNamespace(user_id=x_test_user)


@dataclass
class Api:
    services: Services
    chain: Chain
    rpc: JsonRpcServer
    token: object
    users: list[int]

    def app(self, *, rpc_url: str | None = None, services: Services | None = None) -> FastAPI:
        app = FastAPI()
        app.include_router(portfolio_router(
            services or self.services, current_user,
            wallet_sync=WalletSyncArgs(rpc_urls={"ethereum": rpc_url or self.rpc.url},
                                       confirmations=0, timeout_s=2)))
        return app

    def client(self, user: int | None, **app_options) -> httpx.AsyncClient:
        headers = {"X-Test-User": str(user)} if user is not None else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app(**app_options)),
                                 base_url="http://test", headers=headers)


# Daily closes for the VaR: paxg moves, buidl accrues; 31 days up to today.
PAXG_CLOSES = [2400.0 * (1 + 0.01 * ((i * 7) % 5 - 2)) for i in range(31)]
BUIDL_CLOSES = [1.0 + 0.0001 * i for i in range(31)]


@pytest.fixture
async def api(pg_uri: str, redis_url: str) -> AsyncIterator[Api]:
    chain = Chain()
    token = chain.deploy_token("Test Gold", "TGLD", 6, 10**15)
    async with fresh_database(pg_uri, "portfolio_api") as uri:
        conn = await asyncpg.connect(uri)
        try:
            await db.migrate(conn)
            await db.upsert_assets(conn, load_catalog())
            await conn.execute(
                """INSERT INTO assets (asset_id, symbol, name, issuer, asset_class,
                       blockchain_network, chains, contract_address, reference_price)
                   VALUES ('test-gold', 'TGLD', 'Test Gold', 'tests', 'gold', 'ethereum',
                           '{ethereum}', $1, 1900)""", token.address)
            days = [TODAY - timedelta(days=30 - i) for i in range(31)]
            await conn.executemany(
                """INSERT INTO price_bars_1d (time, asset_id, open, high, low, close)
                   VALUES ($1, $2, $3, $3, $3, $3)""",
                [(d, "paxg", c) for d, c in zip(days, PAXG_CLOSES)]
                + [(d, "buidl", c) for d, c in zip(days, BUIDL_CLOSES)])
            # buidl's newest hourly bar started after today's daily bar: its close is the price.
            await conn.execute(
                """INSERT INTO price_data (time, asset_id, open, high, low, close)
                   VALUES ($1, 'buidl', 1, 1, 1, 1.0)""", TODAY + timedelta(minutes=1))
            await conn.executemany(
                """INSERT INTO risk_scores (asset_id, composite_score, market_risk, credit_risk,
                       regulatory_risk, technical_risk, calculated_at)
                   VALUES ($1, $2, $3, 10, 10, 10, $4)""",
                [("paxg", 55.0, 50.0, TODAY - timedelta(days=1)),  # superseded
                 ("paxg", 40.0, 30.0, TODAY), ("buidl", 20.0, 5.0, TODAY)])
            users = [await conn.fetchval(
                "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING user_id",
                f"user{i}@example.com") for i in range(2)]
        finally:
            await conn.close()
        services = Services(AppArgs(database_url=uri, redis_url=redis_url, sentiment=None))
        await services.redis.flushdb()
        await services.redis.set(cache.latest_price_key("paxg"), json.dumps(
            {"asset_id": "paxg", "symbol": "PAXG", "time": TODAY.isoformat(), "price": 2500.0}))
        with JsonRpcServer(chain) as rpc:
            yield Api(services, chain, rpc, token, users)
        await services.stop()


async def add(client: httpx.AsyncClient, asset: str, quantity: float,
              avg: float | None) -> int:
    r = await client.post("/portfolio/items", json={
        "asset_id": asset, "quantity": quantity, "avg_purchase_price": avg})
    assert r.status_code == 201, r.text
    return r.json()["portfolio_id"]


async def test_items_crud_and_owner_isolation(api: Api) -> None:
    one, two = api.users
    async with api.client(one) as me, api.client(two) as other:
        r = await me.post("/portfolio/items", json={
            "asset_id": "PAXG", "quantity": 2, "avg_purchase_price": 2000})
        assert r.status_code == 201, r.text
        item = r.json()
        pid = item["portfolio_id"]
        assert (item["asset_id"], item["quantity"], item["avg_purchase_price"]) == \
            ("paxg", 2.0, 2000.0)
        assert (item["price"], item["price_source"], item["market_value"]) == \
            (2500.0, "live", 5000.0)
        assert item["risk"]["composite_score"] == 40.0  # the latest score, not the older 55

        got = await me.get(f"/portfolio/items/{pid}")
        assert got.status_code == 200 and got.json()["portfolio_id"] == pid
        for response in (await other.get(f"/portfolio/items/{pid}"),
                         await other.patch(f"/portfolio/items/{pid}", json={"quantity": 9}),
                         await other.delete(f"/portfolio/items/{pid}")):
            assert response.status_code == 404, response.text
        assert (await other.get("/portfolio")).json()["items"] == []

        patched = await me.patch(f"/portfolio/items/{pid}", json={"quantity": 3})
        assert patched.status_code == 200
        assert (patched.json()["quantity"], patched.json()["avg_purchase_price"]) == (3.0, 2000.0)

        assert (await me.delete(f"/portfolio/items/{pid}")).status_code == 204
        assert (await me.get(f"/portfolio/items/{pid}")).status_code == 404
        assert (await me.delete(f"/portfolio/items/{pid}")).status_code == 404
        assert (await me.get("/portfolio")).json()["items"] == []


async def test_valuation_pnl_allocation_and_risk_by_hand(api: Api) -> None:
    async with api.client(api.users[0]) as me:
        await add(me, "paxg", 2, 2000)     # live 2500: value 5000, cost 4000, +1000 (+25 %)
        await add(me, "paxg", 1, 2600)     # value 2500, cost 2600, -100
        await add(me, "buidl", 1000, 1.0)  # hourly close 1.0: value 1000, cost 1000, 0
        await add(me, "xaut", 1, None)     # no bars: catalog reference price, cost unknown
        r = await me.get("/portfolio")
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"]
    assert [(i["asset_id"], i["price_source"]) for i in items] == [
        ("paxg", "live"), ("paxg", "live"), ("buidl", "price_data"),
        ("xaut", "reference_price")]
    first, second, buidl, xaut = items
    assert (first["market_value"], first["cost_basis"], first["unrealised_pnl"]) == \
        (5000.0, 4000.0, 1000.0)
    assert first["unrealised_pnl_pct"] == pytest.approx(25.0)
    assert second["unrealised_pnl"] == -100.0
    assert second["unrealised_pnl_pct"] == pytest.approx(-100 / 2600 * 100)
    assert (buidl["market_value"], buidl["unrealised_pnl"]) == (1000.0, 0.0)
    assert (xaut["market_value"], xaut["cost_basis"], xaut["unrealised_pnl"]) == \
        (XAUT_REF, None, None)

    total_value = 8500.0 + XAUT_REF
    totals = body["totals"]
    assert totals["market_value"] == pytest.approx(total_value)
    assert totals["cost_basis"] == pytest.approx(7600.0)
    assert totals["unrealised_pnl"] == pytest.approx(900.0)
    assert totals["unrealised_pnl_pct"] == pytest.approx(900 / 7600 * 100)
    assert totals["items_without_cost"] == 1 and totals["items"] == 4
    assert sum(i["weight"] for i in items) == pytest.approx(1.0)

    alloc = body["allocation"]
    by_asset = {a["asset_id"]: a for a in alloc["by_asset"]}
    assert by_asset["paxg"]["value"] == 7500.0
    assert by_asset["paxg"]["weight"] == pytest.approx(7500 / total_value)
    assert by_asset["xaut"]["weight"] == pytest.approx(XAUT_REF / total_value)
    assert sum(a["weight"] for a in alloc["by_asset"]) == pytest.approx(1.0)
    by_class = {a["asset_class"]: a for a in alloc["by_asset_class"]}
    assert set(by_class) == {"gold", "money_market"}
    assert by_class["gold"]["value"] == pytest.approx(7500.0 + XAUT_REF)
    assert sum(a["weight"] for a in alloc["by_asset_class"]) == pytest.approx(1.0)

    risk = body["risk"]
    assert risk["composite_score"] == pytest.approx((7500 * 40 + 1000 * 20) / 8500)
    assert risk["market_risk"] == pytest.approx((7500 * 30 + 1000 * 5) / 8500)
    assert risk["scored_weight"] == pytest.approx(8500 / total_value)
    assert risk["unscored_assets"] == ["xaut"]
    # Historical simulation, recomputed here independently: 3 paxg + 1000 buidl at each
    # day's close, daily returns, sample stdev and the 5th percentile (linear).
    values = [3 * p + 1000 * b for p, b in zip(PAXG_CLOSES, BUIDL_CLOSES)]
    returns = [values[i + 1] / values[i] - 1 for i in range(30)]
    ordered = sorted(returns)
    pos = 0.05 * (len(ordered) - 1)
    p5 = ordered[int(pos)] + (ordered[int(pos) + 1] - ordered[int(pos)]) * (pos - int(pos))
    assert risk["returns_used"] == 30 and risk["var_assets"] == ["buidl", "paxg"]
    assert risk["volatility_30d"] == pytest.approx(statistics.stdev(returns))
    assert risk["volatility_30d_annualised"] == pytest.approx(
        statistics.stdev(returns) * 365 ** 0.5)
    assert risk["var_95_1d_pct"] == pytest.approx(-p5)
    assert risk["var_95_1d"] == pytest.approx(-p5 * 8500.0)


async def test_empty_portfolio_and_a_redis_outage_degrade_cleanly(api: Api) -> None:
    async with api.client(api.users[1]) as me:
        r = await me.get("/portfolio")
        assert r.status_code == 200
        body = r.json()
        assert body["items"] == [] and body["totals"]["market_value"] == 0
        assert body["allocation"] == {"by_asset": [], "by_asset_class": []}
        assert body["risk"]["composite_score"] is None and body["risk"]["var_95_1d"] is None
        await add(me, "paxg", 1, 2000)
    down = Services(AppArgs(database_url=api.services.args.database_url,
                            redis_url=f"redis://127.0.0.1:{free_port()}/0", sentiment=None))
    try:
        async with api.client(api.users[1], services=down) as me:
            r = await me.get("/portfolio")
        assert r.status_code == 200, r.text
        (item,) = r.json()["items"]
        # No live price without Redis: today's daily close from gold instead.
        assert (item["price_source"], item["price"]) == ("price_bars_1d", PAXG_CLOSES[-1])
    finally:
        await down.stop()


async def test_watchlist(api: Api) -> None:
    one, two = api.users
    async with api.client(one) as me, api.client(two) as other:
        r = await me.post("/watchlist", json={"asset_id": "BUIDL"})
        assert (r.status_code, r.json()) == (201, {"asset_id": "buidl", "added": True})
        again = await me.post("/watchlist", json={"asset_id": "buidl"})
        assert (again.status_code, again.json()["added"]) == (200, False)
        assert (await me.post("/watchlist", json={"asset_id": "paxg"})).status_code == 201
        listed = (await me.get("/watchlist")).json()["items"]
        assert [(i["asset_id"], i["price"], i["price_source"]) for i in listed] == [
            ("buidl", 1.0, "price_data"), ("paxg", 2500.0, "live")]
        assert (await other.get("/watchlist")).json()["items"] == []
        assert (await other.delete("/watchlist/buidl")).status_code == 404
        assert (await me.delete("/watchlist/buidl")).status_code == 204
        assert (await me.delete("/watchlist/buidl")).status_code == 404
        assert [i["asset_id"] for i in (await me.get("/watchlist")).json()["items"]] == ["paxg"]
        assert (await me.post("/watchlist", json={"asset_id": "nope"})).status_code == 422
        assert (await me.delete("/watchlist/nope")).status_code == 404


async def test_sync_wallet_through_the_api(api: Api) -> None:
    c = api.chain
    wallet = c.accounts[3]
    c.transfer(api.token, c.accounts[0], wallet, 4 * 10**6)
    c.transfer(api.token, c.accounts[0], wallet, 1 * 10**6)
    async with api.client(api.users[0]) as me:
        r = await me.post("/portfolio/sync-wallet",
                          json={"wallet_address": wallet.lower(), "blockchain": "Ethereum"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["synced_assets"], body["new_transactions"]) == (1, 2)
        assert body["wallet_address"] == wallet and body["complete"] is True
        again = await me.post("/portfolio/sync-wallet",
                              json={"wallet_address": wallet, "blockchain": "ethereum"})
        assert (again.json()["synced_assets"], again.json()["new_transactions"]) == (1, 0)
        (item,) = (await me.get("/portfolio")).json()["items"]
        assert (item["asset_id"], item["quantity"], item["wallet_address"], item["blockchain"]) \
            == ("test-gold", 5.0, wallet, "ethereum")
        # No gold bars for the test token: both inbound transfers at the reference price.
        assert item["avg_purchase_price"] == pytest.approx(1900.0)
        assert item["market_value"] == pytest.approx(5 * 1900.0)

    async with api.client(api.users[0], rpc_url=f"http://127.0.0.1:{free_port()}") as me:
        down = await me.post("/portfolio/sync-wallet",
                             json={"wallet_address": wallet, "blockchain": "ethereum"})
    assert down.status_code == 503, down.text
    assert "unavailable" in down.json()["detail"]


async def test_bad_input_is_4xx_never_5xx(api: Api) -> None:
    wallet = api.chain.accounts[3]
    bad_checksum = wallet[:2] + (wallet[2].swapcase() if wallet[2].isalpha() else wallet[2]) \
        + wallet[3:]
    if bad_checksum == wallet:  # the first hex digit is a number: flip the first letter
        i = next(i for i, ch in enumerate(wallet) if i > 1 and ch.isalpha())
        bad_checksum = wallet[:i] + wallet[i].swapcase() + wallet[i + 1:]
    item = {"asset_id": "paxg", "quantity": 1, "avg_purchase_price": 1}
    async with api.client(api.users[0]) as me, api.client(None) as anonymous:
        cases = [
            (me.post("/portfolio/items", json=item | {"quantity": -1}), 422, "greater than 0"),
            (me.post("/portfolio/items", json=item | {"quantity": 0}), 422, "greater than 0"),
            (me.post("/portfolio/items", json=item | {"avg_purchase_price": -5}), 422,
             "greater than or equal to 0"),
            (me.post("/portfolio/items", content=b'{"asset_id": "paxg", "quantity": NaN}',
                     headers={"Content-Type": "application/json"}), 422, "finite"),
            (me.patch("/portfolio/items/1", content=b'{"avg_purchase_price": -Infinity}',
                      headers={"Content-Type": "application/json"}), 422, "finite"),
            (me.post("/portfolio/items", json=item | {"asset_id": "no-such-asset"}), 422,
             "unknown asset"),
            (me.post("/portfolio/items", json=item | {"user_id": 2}), 422, "Extra inputs"),
            (me.post("/portfolio/items", json={"asset_id": "paxg"}), 422, "Field required"),
            (me.get("/portfolio/items/abc"), 422, "integer"),
            (me.get("/portfolio/items/0"), 422, "greater than or equal to 1"),
            (me.get(f"/portfolio/items/{2**70}"), 422, "less than or equal"),
            (me.delete(f"/portfolio/items/{2**63 - 1}"), 404, "no portfolio item"),
            (me.patch("/portfolio/items/1", json={}), 422, "quantity"),
            (me.post("/portfolio/sync-wallet",
                     json={"wallet_address": bad_checksum, "blockchain": "ethereum"}),
             422, "checksum"),
            (me.post("/portfolio/sync-wallet",
                     json={"wallet_address": "0x1234", "blockchain": "ethereum"}),
             422, "40 hex digits"),
            (me.post("/portfolio/sync-wallet",
                     json={"wallet_address": wallet, "blockchain": "solana"}),
             422, "wallet sync reads: ethereum"),
            (me.post("/portfolio/sync-wallet", json={"wallet_address": wallet}), 422,
             "Field required"),
            (anonymous.get("/portfolio"), 401, "not authenticated"),
        ]
        for request, status, message in cases:
            r = await request
            assert r.status_code == status, (status, r.text)
            assert message in json.dumps(r.json()["detail"]), (message, r.text)


async def test_asset_references_holding_nul_are_unknown_not_a_500(api: Api) -> None:
    """PostgreSQL text cannot hold NUL: looking such a reference up failed (a 500)."""
    async with api.client(api.users[0]) as me:
        for r in (await me.post("/portfolio/items", json={"asset_id": "pa\x00xg",
                                                           "quantity": 1}),
                  await me.post("/watchlist", json={"asset_id": "pa\x00xg"})):
            assert r.status_code == 422 and "unknown asset" in r.json()["detail"], r.text
        r = await me.delete("/watchlist/pa%00xg")
        assert r.status_code == 404 and "unknown asset" in r.json()["detail"], r.text


async def test_sync_without_configured_chains_names_none(api: Api) -> None:
    app = FastAPI()
    app.include_router(portfolio_router(api.services, current_user))  # AppArgs: no chains
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test",
                                 headers={"X-Test-User": str(api.users[0])}) as me:
        r = await me.post("/portfolio/sync-wallet", json={
            "wallet_address": api.chain.accounts[1], "blockchain": "ethereum"})
    assert r.status_code == 422
    assert "no RPC endpoint is configured" in r.json()["detail"]
