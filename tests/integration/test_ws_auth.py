"""The live WebSocket's authentication and per-tier caps: ``serve.api.create_api`` under
uvicorn over the embedded PostgreSQL (holding the catalog) and Redis, driven by the
``websockets`` client as outside clients drive it; ticks published on the Redis
channel the fan-out actor uses.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import uvicorn
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core import cache
from core.catalog import load_catalog
from core.settings import AuthSettings, default_tier_table
from rwa.embedded import free_port
from serve import ws as ws_module
from serve.api import create_api
from serve.args import AppArgs
from serve.auth import service_accounts
from serve.auth.tokens import TokenCodec
from tests.databases import catalog_database

pytestmark = pytest.mark.integration

SECRET = "websocket-test-secret-" + "w" * 40
AUTH = AuthSettings(jwt_secret=SecretStr(SECRET), argon2_time_cost=1, argon2_memory_kib=8192,
                    argon2_parallelism=1)
CODEC = TokenCodec(AUTH.jwt_secret, issuer=AUTH.issuer, audience=AUTH.audience)
ORIGIN = "https://app.example"
PASSWORD = "Tangerine-Harbor-42"
CATALOG = [a.asset_id for a in load_catalog()]
FREE_CAP = default_tier_table()["free"].max_ws_subscriptions
PRO_CAP = default_tier_table()["pro"].max_ws_subscriptions


@dataclass
class Api:
    url: str
    database_url: str
    redis_url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws/prices"

    async def account(self, tier: str) -> tuple[int, str]:
        """A new account of ``tier`` and an access token for it."""
        conn = await asyncpg.connect(self.database_url)
        try:
            user_id = await conn.fetchval(
                "INSERT INTO users (email, password_hash, tier) VALUES ($1, 'x', $2) "
                "RETURNING user_id", f"ws-{uuid.uuid4().hex[:10]}@example.com", tier)
        finally:
            await conn.close()
        return user_id, CODEC.issue(user_id, "access", ttl_s=300, family=str(uuid.uuid4()))


@pytest.fixture(scope="module")
async def api(pg_uri: str, redis_url: str) -> AsyncIterator[Api]:
    async with catalog_database(pg_uri, "ws") as uri:
        tiers = {name: limits.model_copy(update={"requests_per_minute": 10_000})
                 for name, limits in default_tier_table().items()}
        app = create_api(AppArgs(database_url=uri, redis_url=redis_url, sentiment=None,
                                 auth=AUTH, tiers=tiers, allowed_origins=[ORIGIN]))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, name="ws-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.05)
        try:
            yield Api(f"http://127.0.0.1:{port}", uri, redis_url)
        finally:
            server.should_exit = True
            await asyncio.to_thread(thread.join, 30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def recv(ws: ClientConnection, timeout_s: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def ask(ws: ClientConnection, action: str, assets: list[str]) -> dict[str, Any]:
    await ws.send(json.dumps({"action": action, "assets": assets}))
    return await recv(ws)


async def closed_with(ws: ClientConnection, timeout_s: float = 10) -> tuple[int, str]:
    """The code and reason the server closes ``ws`` with (no message may come first)."""
    with pytest.raises(ConnectionClosed) as e:
        await recv(ws, timeout_s)
    assert e.value.rcvd is not None, "the server dropped the connection without a close frame"
    return e.value.rcvd.code, e.value.rcvd.reason


async def tick_reaches(ws: ClientConnection, api: Api, asset_id: str) -> dict[str, Any]:
    """Publish ticks of ``asset_id`` as the fan-out actor does until one arrives."""
    r = cache.async_client(api.redis_url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await r.publish(cache.TICKS_CHANNEL, json.dumps(
                {"asset_id": asset_id, "symbol": asset_id.upper(), "price": 1.5,
                 "time": "2026-01-01T00:00:00+00:00"}))
            try:
                msg = await recv(ws, 0.5)
            except TimeoutError:
                continue
            assert "price" in msg, msg
            return msg
        raise AssertionError(f"no tick of {asset_id} reached the socket")
    finally:
        await r.aclose()


# -- the two ways in -----------------------------------------------------------------------
async def test_a_bearer_header_opens_the_socket_and_ticks_flow(api: Api) -> None:
    _, token = await api.account("free")
    async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
        assert await recv(ws) == {"type": "authenticated", "tier": "free",
                                  "max_assets": FREE_CAP}
        assert await ask(ws, "subscribe", ["PAXG"]) == {"type": "subscribed", "assets": ["paxg"]}
        tick = await tick_reaches(ws, api, "paxg")
        assert tick["asset_id"] == "paxg" and tick["price"] == 1.5


async def test_a_browser_authenticates_with_its_first_message(api: Api) -> None:
    _, token = await api.account("pro")
    async with connect(api.ws_url, origin=ORIGIN) as ws:
        await ws.send(json.dumps({"action": "auth", "token": token}))
        assert await recv(ws) == {"type": "authenticated", "tier": "pro", "max_assets": PRO_CAP}
        assert await ask(ws, "subscribe", ["xaut"]) == {"type": "subscribed", "assets": ["xaut"]}
        await ws.send(json.dumps({"action": "auth", "token": token}))
        assert await recv(ws) == {"type": "error", "detail": "already authenticated"}
        assert (await tick_reaches(ws, api, "xaut"))["asset_id"] == "xaut"


async def test_a_logged_in_user_connects_and_a_logout_shuts_new_sockets(api: Api) -> None:
    email = f"ws-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        r = await http.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = await http.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
            assert (await recv(ws))["tier"] == "free"
        assert (await http.post("/auth/logout", headers=bearer(token))).status_code == 204
    async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
        code, reason = await closed_with(ws)
    assert code == 1008 and "session ended" in reason


# -- refusals -------------------------------------------------------------------------------
def _claims(user_id: int, **override: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": AUTH.issuer, "aud": AUTH.audience, "typ": "access", "sub": str(user_id),
            "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
            "fam": str(uuid.uuid4())} | override


def _refused_tokens(user_id: int, good: str) -> dict[str, tuple[str, str]]:
    """Tokens the socket must refuse, built now, and words their close reason holds."""
    head, _, sig = good.split(".")
    tampered_body = jwt.utils.base64url_encode(json.dumps(
        _claims(user_id + 1000)).encode()).decode()
    return {
        "garbage": ("not-a-token", "malformed"),
        "expired": (jwt.encode(_claims(user_id, exp=int(time.time()) - 60), SECRET), "expired"),
        "tampered": (f"{head}.{tampered_body}.{sig}", "signature"),
        "other key": (jwt.encode(_claims(user_id), "another-secret-" + "k" * 40), "signature"),
        "alg none": (jwt.encode(_claims(user_id), None, algorithm="none"), "algorithm"),
        "2fa temp": (CODEC.issue(user_id, "2fa", ttl_s=60), "verify-2fa"),
        "email token": (CODEC.issue(user_id, "email_verify", ttl_s=60, email="a@b.example"),
                        "not an access token"),
        "unknown user": (CODEC.issue(10**9, "access", ttl_s=60, family=str(uuid.uuid4())),
                         "no longer exists"),
    }


async def test_bad_tokens_are_refused_with_1008_on_both_paths(api: Api) -> None:
    user_id, good = await api.account("enterprise")
    for name, (token, words) in _refused_tokens(user_id, good).items():
        async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
            code, reason = await closed_with(ws)
        assert (code, words in reason) == (1008, True), (name, "header", code, reason)
        async with connect(api.ws_url, origin=ORIGIN) as ws:
            await ws.send(json.dumps({"action": "auth", "token": token}))
            code, reason = await closed_with(ws)
        assert (code, words in reason) == (1008, True), (name, "message", code, reason)


@pytest.mark.parametrize("first", [
    {"action": "subscribe", "assets": ["paxg"]}, {"action": "auth"}, "hello", b"\x00\xff"])
async def test_anything_but_a_token_first_is_refused(api: Api, first: Any) -> None:
    async with connect(api.ws_url) as ws:
        await ws.send(json.dumps(first) if isinstance(first, dict) else first)
        assert await closed_with(ws) == (1008, "authentication required")


async def test_a_silent_socket_is_closed(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_module, "AUTH_TIMEOUT_S", 0.5)
    async with connect(api.ws_url) as ws:
        assert await closed_with(ws) == (1008, "authentication required")


async def test_a_token_in_the_query_string_is_ignored(api: Api) -> None:
    _, token = await api.account("free")
    async with connect(f"{api.ws_url}?token={token}&access_token={token}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "assets": ["paxg"]}))
        assert await closed_with(ws) == (1008, "authentication required")


async def test_other_schemes_are_refused(api: Api) -> None:
    _, token = await api.account("free")
    async with connect(api.ws_url, additional_headers={"Authorization": f"Basic {token}"}) as ws:
        code, reason = await closed_with(ws)
    assert code == 1008 and "Bearer" in reason


async def test_foreign_origins_are_refused_at_the_handshake(api: Api) -> None:
    _, token = await api.account("free")
    with pytest.raises(InvalidStatus) as e:
        async with connect(api.ws_url, origin="https://evil.example",
                           additional_headers=bearer(token)):
            pass
    assert e.value.response.status_code == 403


# -- caps -------------------------------------------------------------------------------------
async def test_the_free_tier_follows_at_most_its_cap(api: Api) -> None:
    _, token = await api.account("free")
    first, rest = CATALOG[:FREE_CAP], CATALOG[FREE_CAP:]
    async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
        await recv(ws)
        err = await ask(ws, "subscribe", CATALOG[:FREE_CAP + 1])
        assert err["type"] == "error"
        assert f"the free tier allows {FREE_CAP} assets per connection" in err["detail"]
        assert await ask(ws, "subscribe", first) == {"type": "subscribed",
                                                     "assets": sorted(first)}
        # Already-followed assets do not count twice; one more is refused as a whole.
        assert (await ask(ws, "subscribe", first[:2]))["type"] == "subscribed"
        err = await ask(ws, "subscribe", [first[0], rest[0]])
        assert err["type"] == "error" and "free tier" in err["detail"]
        assert await ask(ws, "unsubscribe", [first[0]]) == {"type": "unsubscribed",
                                                            "assets": sorted(first[1:])}
        assert await ask(ws, "subscribe", [rest[0]]) == {
            "type": "subscribed", "assets": sorted([*first[1:], rest[0]])}


async def test_the_pro_tier_follows_more_than_the_free_one(api: Api) -> None:
    _, token = await api.account("pro")
    wanted = CATALOG[:min(len(CATALOG), PRO_CAP)]
    assert len(wanted) > FREE_CAP
    async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
        await recv(ws)
        assert await ask(ws, "subscribe", wanted) == {"type": "subscribed",
                                                      "assets": sorted(wanted)}


async def test_a_refused_subscribe_leaves_the_socket_following_what_it_did(api: Api) -> None:
    _, token = await api.account("free")
    async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
        await recv(ws)
        assert (await ask(ws, "subscribe", ["paxg"]))["assets"] == ["paxg"]
        assert (await ask(ws, "subscribe", CATALOG))["type"] == "error"
        # Ticks of an asset in the refused request do not arrive; paxg's still do.
        other = next(a for a in CATALOG if a != "paxg")
        r = cache.async_client(api.redis_url)
        try:
            await r.publish(cache.TICKS_CHANNEL, json.dumps({"asset_id": other, "price": 9.0}))
        finally:
            await r.aclose()
        assert (await tick_reaches(ws, api, "paxg"))["asset_id"] == "paxg"


# -- messages after authentication ---------------------------------------------------------
async def test_bad_messages_get_an_error_and_keep_the_socket(api: Api) -> None:
    _, token = await api.account("free")
    async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
        await recv(ws)
        for bad in ("hello", json.dumps({"action": "dance"}), b"\x00\xff"):
            await ws.send(bad)
            err = await recv(ws)
            assert err["type"] == "error" and "subscribe" in err["detail"], bad
        unknown = [f"nope{i}" for i in range(ws_module.MAX_ECHOED + 3)]
        err = await ask(ws, "subscribe", [*unknown, "XAUT"])
        assert err["type"] == "error" and err["detail"].endswith("and 3 more")
        assert "nope0" in err["detail"] and f"nope{ws_module.MAX_ECHOED}" not in err["detail"]
        assert await recv(ws) == {"type": "subscribed", "assets": ["xaut"]}


# -- the service account rwa up's probe uses -----------------------------------------------
async def test_the_service_account_follows_the_catalog_and_cannot_log_in(api: Api) -> None:
    name = f"probe-{uuid.uuid4().hex[:6]}"
    token = await service_accounts.access_token(api.database_url, AUTH, name, tier="enterprise")
    async with connect(api.ws_url, additional_headers=bearer(token)) as ws:
        hello = await recv(ws)
        assert hello["tier"] == "enterprise" and hello["max_assets"] >= len(CATALOG)
        assert (await ask(ws, "subscribe", CATALOG))["assets"] == sorted(CATALOG)

    email = service_accounts.service_email(name)
    conn = await asyncpg.connect(api.database_url)
    try:
        user_id = await conn.fetchval("SELECT user_id FROM users WHERE email = $1", email)
        await conn.execute("UPDATE users SET is_admin = true, tier = 'free' WHERE user_id = $1",
                           user_id)
        assert await service_accounts.ensure(conn, name, tier="enterprise") == user_id
        row = await conn.fetchrow("SELECT tier, is_admin, password_hash FROM users "
                                  "WHERE user_id = $1", user_id)
    finally:
        await conn.close()
    assert (row["tier"], row["is_admin"]) == ("enterprise", False)
    assert not row["password_hash"].startswith("$argon2")
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        r = await http.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 422, r.text
        r = await http.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 401, r.text
