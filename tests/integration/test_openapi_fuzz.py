"""Schemathesis against the API's own OpenAPI spec: every operation, fed generated input
valid and invalid (the spec's examples, boundary values, each constraint broken, then
random cases), answers without a 5xx and as its schema says.

The app is the real one (``serve.api.create_api``) served by uvicorn over embedded
PostgreSQL holding the catalog and embedded Redis, verification mail going to a local
SMTP server and wallet sync to a local EVM (py-evm behind JSON-RPC). Before each
operation is fuzzed, the fuzzing user (an admin, so /admin is fuzzed too) and another
user get a fresh portfolio item, watchlist entry and alerts; valid cases name these,
or catalog assets, part of the time, so that generated input reaches past "unknown
asset" and "no such item" into the routes' work.

Each case of an operation that declares the bearer scheme is sent three times:
anonymously and with a 2FA temp token (refused: 401 where the route needs a login,
unless the body is not even JSON, and a temp token opens nothing but
``/auth/verify-2fa``), then with a fresh access token of the fuzzing user, whose answer
is checked. Another user's item or alert is a 404, like a missing one.

Nothing is excluded. The model deployments (sentiment, prediction, risk) are Serve
handles in production; here they are stand-ins of the handle's shape (the models have
tests of their own), so what is fuzzed is each route's handling of the request.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.core.parameters import ParameterLocation

from core import alert_store, cache
from core.settings import AuthSettings, SmtpSettings, default_tier_table
from rwa.embedded import free_port
from serve.api import create_api
from serve.args import AppArgs
from serve.auth import deps
from serve.auth.tokens import TokenCodec
from serve.portfolio import store
from serve.portfolio.config import WalletSyncArgs
from tests.databases import catalog_database
from tests.evm import Chain, JsonRpcServer
from tests.smtp import LocalSmtp

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "openapi-fuzz-secret-" + "f" * 40
AUTH = AuthSettings(
    jwt_secret=SecretStr(SECRET),
    # Every request comes from one address: the per-IP login throttle would answer 429
    # to the fuzzer's logins after a few and hide what lies behind it.
    max_failures_per_ip=1_000_000,
    # Cheap Argon2: the fuzzer registers and logs in many times.
    argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
#: No tier's request limit is reached by the fuzzer (the limits have their own tests).
TIERS = {name: limits.model_copy(update={"requests_per_minute": 10_000_000})
         for name, limits in default_tier_table().items()}

#: Random cases per operation (the fuzzing phase); the examples and coverage phases
#: (the spec's examples, boundary values, each constraint broken) come on top. Raise it
#: for a deeper search (200: about ten minutes on two cores).
MAX_EXAMPLES = int(os.environ.get("RWA_FUZZ_MAX_EXAMPLES", "25"))

#: Asset references valid cases may name: catalog ids and symbols (buidl is NAV-pinned),
#: and one holding NUL, which PostgreSQL text cannot hold (generated text rarely has it
#: in a URL).
ASSETS = ("paxg", "PAXG", "buidl", "xaut", "pa\x00xg")
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


# -- stand-ins of the model deployments' Serve handles --------------------------------

def handle(**methods: Callable[..., Any]) -> Any:
    """An object shaped like a Serve ``DeploymentHandle``: ``h.method.remote(...)`` is
    awaitable and answers ``methods[method](...)``."""
    def remote(fn: Callable[..., Any]) -> Any:
        async def answer(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)
        return SimpleNamespace(remote=lambda *args, **kwargs: answer(*args, **kwargs))

    return SimpleNamespace(**{name: remote(fn) for name, fn in methods.items()})


HANDLES = {
    "sentiment": handle(score=lambda texts: [
        {"text": t, "label": "neutral", "score": 0.0} for t in texts]),
    "prediction": handle(forecast=lambda asset_id, target="price", horizon=7: {
        "error": "the stand-in makes no forecasts"}),
    "risk": handle(score=lambda asset_id: {"error": "the stand-in scores nothing"}),
}


# -- the services and the app, once per module; the users' objects, once per operation --

@dataclass
class Env:
    database_url: str
    redis_url: str
    smtp: LocalSmtp
    rpc: JsonRpcServer
    me: int  # the fuzzing user, an admin
    other: int


@dataclass
class Objects:
    """Ids of the users' portfolio items and alerts, made afresh for each operation."""

    mine: dict[str, list[int]] = field(default_factory=dict)
    others: dict[str, list[int]] = field(default_factory=dict)


OBJECTS = Objects()


@pytest.fixture(scope="module")
async def env(pg_uri: str, redis_url: str) -> AsyncIterator[Env]:
    """The catalog, two users, and rows behind every read route (prices, on-chain
    metrics, sentiment, risk, a prediction) for paxg."""
    async with catalog_database(pg_uri, "fuzz") as uri:
        conn = await asyncpg.connect(uri)
        try:
            me, other = [await conn.fetchval(
                "INSERT INTO users (email, password_hash, is_admin) VALUES ($1, 'x', $2) "
                "RETURNING user_id", email, admin)
                for email, admin in (("fuzz@example.com", True), ("other@example.com", False))]
            await seed_gold(conn)
        finally:
            await conn.close()
        with LocalSmtp() as smtp, JsonRpcServer(Chain()) as rpc:
            yield Env(uri, redis_url, smtp, rpc, me, other)


async def seed_gold(conn: asyncpg.Connection) -> None:
    hours = [NOW - timedelta(hours=h) for h in range(48)]
    await conn.executemany(
        "INSERT INTO price_data (time, asset_id, open, high, low, close, volume) "
        "VALUES ($1, 'paxg', $2, $2, $2, $2, 10)",
        [(t, 2400.0 + i) for i, t in enumerate(hours)])
    days = [NOW - timedelta(days=d) for d in range(30)]
    await conn.executemany(
        "INSERT INTO price_bars_1d (time, asset_id, open, high, low, close) "
        "VALUES ($1, 'paxg', $2, $2, $2, $2)", [(d, 2400.0 - i) for i, d in enumerate(days)])
    await conn.executemany(
        "INSERT INTO onchain_metrics (time, asset_id, holder_count, transfer_volume, nav) "
        "VALUES ($1, 'paxg', 1000, 5.5, NULL)", [(d,) for d in days])
    await conn.executemany(
        "INSERT INTO sentiment_scores (time, asset_id, sentiment_score, article_count, source) "
        "VALUES ($1, 'paxg', 0.25, 3, 'news')", [(h,) for h in hours[:5]])
    await conn.execute(
        "INSERT INTO risk_scores (asset_id, composite_score, market_risk, credit_risk, "
        "regulatory_risk, technical_risk, explanation, methodology_version) "
        "VALUES ('paxg', 40, 30, 20, 10, 5, '{\"factors\": []}', 'v1')")
    await conn.execute(
        "INSERT INTO predictions (asset_id, forecast_horizon, predicted_price, "
        "confidence_lower, confidence_upper, lower_95, upper_95, target_time, model_version, "
        "path, weights) VALUES ('paxg', 7, 2450, 2400, 2500, 2380, 2520, $1, 'fuzz-1', $2, $3)",
        NOW + timedelta(days=7), json.dumps([{"time": NOW.isoformat(), "mean": 2450.0}]),
        json.dumps({"arima": 0.5, "ets": 0.5}))


@pytest.fixture
async def objects(env: Env) -> Objects:
    """Each user's portfolio item, watchlist entry and alerts (active with a trigger in
    its history, draft, paused), as they were before the previous operation's cases
    created, changed or deleted some; the fuzzing user back on the pro tier (room for
    50 alerts), which a fuzzed PATCH /admin/users may have changed."""
    conn = await asyncpg.connect(env.database_url)
    try:
        await conn.execute("UPDATE users SET tier = 'pro' WHERE user_id = $1", env.me)
        redis = cache.async_client(env.redis_url)
        await redis.delete(f"rwa:auth:user:{env.me}")  # the cached tier
        await redis.aclose()
        for user in (env.me, env.other):
            await conn.execute("DELETE FROM portfolios WHERE user_id = $1", user)
            await conn.execute("DELETE FROM watchlists WHERE user_id = $1", user)
            await conn.execute("DELETE FROM alerts WHERE user_id = $1", user)
        for user, ids in ((env.me, OBJECTS.mine), (env.other, OBJECTS.others)):
            ids["item"] = [await store.add_item(conn, user, "paxg", quantity=Decimal(2),
                                                avg_purchase_price=Decimal(2000))]
            await store.watch(conn, user, "paxg")
            ids["alert"] = [(await alert_store.create_alert(
                conn, user_id=user, asset_id="paxg", condition_type="price_above",
                condition_value={"price": 2500.0}, notification_method="email",
                notification_target=None, state=state, risk_baseline=None))["alert_id"]
                for state in ("active", "draft", "paused")]
            await alert_store.fire(conn, ids["alert"][0], trigger_value={"price": 2600.0},
                                   message="paxg above 2500", fallback_target=None)
    finally:
        await conn.close()
    return OBJECTS


def app_args(**overrides: Any) -> AppArgs:
    return AppArgs(**({"database_url": "postgresql://unused/unused",
                       "redis_url": "redis://unused:6379/0", "auth": AUTH,
                       "tiers": TIERS} | overrides))


@dataclass
class Fuzz:
    base_url: str
    codec: TokenCodec
    user_id: int

    def token(self, typ: str = "access") -> str:
        """A fresh access token with a session family of its own (a fuzzed logout ends
        only that case's session), or a temp token with ``typ='2fa'``."""
        return self.codec.issue(self.user_id, typ, ttl_s=600,  # type: ignore[arg-type]
                                family=str(uuid.uuid4()) if typ == "access" else None)


@pytest.fixture(scope="module")
def fuzz(env: Env) -> Iterator[Fuzz]:
    """The app served by uvicorn on a loopback port, as in production (real HTTP
    parsing), its lifespan run by the server."""
    app = create_api(app_args(
        database_url=env.database_url, redis_url=env.redis_url,
        smtp=SmtpSettings(host=env.smtp.host, port=env.smtp.port, starttls=False),
        wallet_sync=WalletSyncArgs(rpc_urls={"ethereum": env.rpc.url}, confirmations=0,
                                   timeout_s=5)), **HANDLES)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="fuzzed-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    codec = TokenCodec(AUTH.jwt_secret, issuer=AUTH.issuer,  # type: ignore[arg-type]
                       audience=AUTH.audience)
    try:
        yield Fuzz(f"http://127.0.0.1:{port}", codec, env.me)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# -- the schema, real references in valid cases, and the test --------------------------

def _needs(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _needs(d, call) for d in dependant.dependencies)


def login_required(app: FastAPI) -> set[str]:
    """``METHOD /path`` of the routes that depend on a valid access token."""
    return {f"{method} {route.path}" for route in iter_route_contexts(app.routes)
            if isinstance(route.original_route, APIRoute)
            and _needs(route.dependant, deps.session) for method in route.methods}


#: Built with placeholder URLs, which nothing reaches: the spec does not depend on them.
#: The schema is loaded at import so that each operation is a test of its own.
_SPEC_APP = create_api(app_args(), **HANDLES)
LOGIN_REQUIRED = login_required(_SPEC_APP)
schema = schemathesis.openapi.from_dict(_SPEC_APP.openapi(), config=schemathesis.Config.from_dict({
    "seed": 6,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "checks": {
        # The spec lists 2xx and 422 only; 401, 403, 404, 409 and 429 are documented in
        # prose, not as responses.
        "status_code_conformance": {"enabled": False},
        # Re-sends each authenticated case without and with a broken credential; the
        # test does that itself, with stricter expectations.
        "ignored_auth": {"enabled": False},
        # Drops the declared Authorization header and expects a refusal, which the test
        # checks itself (the case is sent anonymously): here the header is put back.
        "missing_required_header": {"enabled": False},
        # Expects a 2xx for any input the schema allows, but rules a schema cannot state
        # refuse some with a 422: asset references must exist, passwords be strong,
        # start come before end, text hold no NUL.
        "positive_data_acceptance": {"enabled": False},
    },
}))

#: Valid condition values by condition type (the spec describes them in prose only).
CONDITIONS = {
    "price_above": st.fixed_dictionaries({"price": st.floats(1e-6, 1e9)}),
    "price_below": st.fixed_dictionaries({"price": st.floats(1e-6, 1e9)}),
    "pct_move": st.fixed_dictionaries({"pct": st.floats(0.01, 1000),
                                       "window_minutes": st.integers(1, 1440)}),
    "risk_change": st.fixed_dictionaries({"points": st.floats(0.01, 100)}),
    "forecast_band": st.fixed_dictionaries({"horizon": st.integers(1, 365),
                                            "band": st.sampled_from(["80", "95"])}),
}
WALLET = "0x" + "ab" * 20
#: A valid notification target by method (email takes none).
TARGETS = {"email": None, "push": "https://hooks.example.com/rwa", "telegram": "@rwa_alerts"}


@schema.hook
def flatmap_case(context: Any, case: Any) -> st.SearchStrategy[Any]:
    """A valid case, or the same case naming real things: a catalog asset, the fuzzing
    user's item or alert, another user's, a condition value its type accepts."""
    if case.meta is None or case.meta.generation.mode.is_negative:
        return st.just(case)
    path, body = case.path_parameters or {}, case.body
    swaps: dict[tuple[str, str], st.SearchStrategy[Any]] = {}
    if "asset_id" in path:
        swaps["path", "asset_id"] = st.sampled_from([path["asset_id"], *ASSETS])
    for name, kind in (("portfolio_id", "item"), ("alert_id", "alert")):
        if name in path:
            swaps["path", name] = st.sampled_from(
                [path[name], *OBJECTS.mine[kind], *OBJECTS.others[kind]])
    if isinstance(case.query, dict) and "asset_id" in case.query:
        swaps["query", "asset_id"] = st.sampled_from([case.query["asset_id"], *ASSETS])
    if isinstance(body, dict):
        if "asset_id" in body:
            swaps["body", "asset_id"] = st.sampled_from([body["asset_id"], *ASSETS])
        if body.get("condition_type") in CONDITIONS:
            swaps["body", "condition_value"] = st.one_of(
                st.just(body.get("condition_value")), CONDITIONS[body["condition_type"]])
        if body.get("notification_method") in TARGETS:
            swaps["body", "notification_target"] = st.sampled_from(
                [body.get("notification_target"), TARGETS[body["notification_method"]]])
        if "tier" in body:
            swaps["body", "tier"] = st.sampled_from([body["tier"], *TIERS])
        if "wallet_address" in body:  # any well-formed address: the local chain has none
            swaps["body", "wallet_address"] = st.sampled_from([body["wallet_address"], WALLET])
            swaps["body", "blockchain"] = st.sampled_from([body.get("blockchain"), "ethereum"])
    if not swaps:
        return st.just(case)

    def swapped(values: dict[tuple[str, str], Any]) -> Any:
        for (where, name), value in values.items():
            {"path": path, "query": case.query, "body": body}[where][name] = value
        return case

    return st.fixed_dictionaries(swaps).map(swapped)


@schema.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Every failure counts but one: "invalid input accepted" where the only invalid part
    is a query parameter sent several times. FastAPI, like most servers, reads the last
    one, which the schema allows."""
    meta = case.meta
    repeated = any(isinstance(v, list) and len(v) > 1 for v in (case.query or {}).values())
    only_query = meta is not None and meta.is_negative_at(ParameterLocation.QUERY) and not any(
        meta.is_negative_at(where) for where in ParameterLocation
        if where not in (ParameterLocation.QUERY, ParameterLocation.UNKNOWN))
    return not (failure.code == "ST201" and repeated and only_query)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much,
    # ``objects`` is made once per operation on purpose, not once per case.
    HealthCheck.function_scoped_fixture])
def test_no_server_error_and_answers_as_documented(case: Any, fuzz: Fuzz,
                                                   objects: Objects) -> None:
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    # The coverage phase also sends methods the path does not have (expecting 405).
    if case.operation.definition.raw.get("security") and case.method.upper() == \
            case.operation.method.upper():
        anonymous = call(case, fuzz, None)
        temp = call(case, fuzz, fuzz.token("2fa"))
        for name, refused in (("anonymous", anonymous), ("a temp token", temp)):
            assert refused.status_code < 500, f"{operation}, {name}: {refused.text[:300]}"
        if operation in LOGIN_REQUIRED:
            for name, refused in (("anonymous", anonymous), ("a temp token", temp)):
                assert refused.status_code == 401 or unparsable(refused), (
                    f"{operation}, {name}: {refused.status_code} {refused.text[:300]}")
        elif operation != "POST /auth/verify-2fa":
            assert not 200 <= temp.status_code < 300, f"a temp token opened {operation}"
        response = call(case, fuzz, fuzz.token())
        others = {i for ids in objects.others.values() for i in ids}
        if others & set((case.path_parameters or {}).values()):
            # Exactly like a missing one: not even a 409 or 403 that tells it exists.
            assert response.status_code in (400, 404, 422), (
                f"{case.method} {case.formatted_path}, another user's: "
                f"{response.status_code} {response.text[:300]}")
    else:
        response = call(case, fuzz, None)
    case.validate_response(response, transport_kwargs={"base_url": fuzz.base_url})


def unparsable(response: Any) -> bool:
    """A body that is not JSON at all: FastAPI parses the body before it resolves any
    dependency, so this refusal comes before the login's and tells nothing."""
    return response.status_code == 400 or (
        response.status_code == 422 and '"json_invalid"' in response.text)


def call(case: Any, fuzz: Fuzz, token: str | None) -> Any:
    """Send ``case`` with ``token`` as its bearer credential, or with none at all."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    saved, case.headers = case.headers, headers
    try:
        return case.call(base_url=fuzz.base_url)
    finally:
        case.headers = saved

