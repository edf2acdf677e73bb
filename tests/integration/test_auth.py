"""Accounts end to end: the auth and admin routers mounted on a FastAPI app over the
real ``serve.api.Services`` (embedded PostgreSQL and Redis), driven through HTTP with
httpx, and verification emails delivered to a local SMTP server (aiosmtpd).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
import httpx
import jwt
import pyotp
import pytest
import redis
import redis.exceptions
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from core import cache, db
from core.settings import AuthSettings, SmtpSettings, TierLimits, default_tier_table
from serve.api import Services
from serve.args import AppArgs
from serve.auth import users
from serve.auth.context import auth_for
from serve.auth.deps import User, current_user, rate_limit, require_admin, tier_limits
from serve.auth.ratelimit import SlidingWindowLimiter
from serve.auth.routes import admin_router, auth_router
from tests.databases import fresh_database
from tests.smtp import LocalSmtp

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-" + "k" * 40
PASSWORD = "Tangerine-Harbor-42"
# Cheap Argon2 for speed; the rehash test moves to other parameters on purpose.
FAST_ARGON = {"argon2_time_cost": 1, "argon2_memory_kib": 8192, "argon2_parallelism": 1}
AUTH = AuthSettings(jwt_secret=SecretStr(SECRET), max_failures_per_account=5,
                    max_failures_per_ip=10, **FAST_ARGON)
ROOMY_TIERS = {name: limits.model_copy(update={"requests_per_minute": 10_000})
               for name, limits in default_tier_table().items()}


@dataclass
class Env:
    database_url: str
    redis_url: str
    smtp: LocalSmtp


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[LocalSmtp]:
    with LocalSmtp() as server:
        yield server


@pytest.fixture(scope="module")
async def env(pg_uri: str, redis_url: str, smtp_server: LocalSmtp) -> AsyncIterator[Env]:
    async with fresh_database(pg_uri, "auth") as uri:
        conn = await asyncpg.connect(uri)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        yield Env(uri, redis_url, smtp_server)


@pytest.fixture(autouse=True)
def clean_redis(redis_url: str) -> None:
    """Throttles, limits and used codes start empty in every test."""
    client = cache.sync_client(redis_url)
    client.flushdb()
    client.close()


@dataclass
class Apps:
    """Builds apps the way ``create_api`` mounts the routers, each over its own
    ``Services``; closes them all at the end of the module."""

    env: Env
    opened: list[tuple[Services, httpx.AsyncClient]] = field(default_factory=list)

    def args(self, *, auth: AuthSettings = AUTH, tiers: dict[str, TierLimits] | None = None,
             smtp: bool = True) -> AppArgs:
        return AppArgs(
            database_url=self.env.database_url, redis_url=self.env.redis_url, sentiment=None,
            auth=auth, tiers=tiers or ROOMY_TIERS,
            smtp=SmtpSettings(host=self.env.smtp.host, port=self.env.smtp.port,
                              starttls=False) if smtp else None)

    def client(self, args: AppArgs, *, ip: str = "127.0.0.1") -> httpx.AsyncClient:
        services = Services(args)
        app = build_app(services)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(ip, 50000)),
                                   base_url="http://testserver")
        self.opened.append((services, client))
        return client

    def same_app(self, client: httpx.AsyncClient, *, ip: str) -> httpx.AsyncClient:
        """Another client of ``client``'s app, from another IP address."""
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        other = httpx.AsyncClient(transport=httpx.ASGITransport(transport.app, client=(ip, 50000)),
                                  base_url="http://testserver")
        self.opened.append((None, other))  # type: ignore[arg-type]
        return other

    async def close(self) -> None:
        for services, client in self.opened:
            await client.aclose()
            if services is not None:
                await services.stop()


def build_app(services: Services) -> FastAPI:
    """What ``serve.api.create_api`` does for auth: the services on app.state, the limit
    on every route, both routers, and 503 for a dependency outage."""
    app = FastAPI(dependencies=[Depends(rate_limit)])
    app.state.services = services
    app.include_router(auth_router(services))
    app.include_router(admin_router(services))

    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(OSError)
    @app.exception_handler(redis.exceptions.ConnectionError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"a dependency is unavailable: {type(exc).__name__}"}, 503)

    @app.get("/probe")
    async def probe(user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        return {"user_id": user.user_id, "tier": user.tier, "is_admin": user.is_admin}

    @app.get("/probe/limits")
    async def probe_limits(limits: Annotated[TierLimits, Depends(tier_limits)]) -> dict:
        return limits.model_dump()

    @app.get("/probe/admin")
    async def probe_admin(user: Annotated[User, Depends(require_admin)]) -> dict[str, Any]:
        return {"admin": user.email}

    @app.get("/public")
    async def public() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture(scope="module")
async def apps(env: Env) -> AsyncIterator[Apps]:
    factory = Apps(env)
    yield factory
    await factory.close()


@pytest.fixture(scope="module")
def api(apps: Apps) -> httpx.AsyncClient:
    """The default app: roomy request limits, 5 failures per account, 10 per IP."""
    return apps.client(apps.args())


# -- helpers -------------------------------------------------------------------------------
def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: httpx.AsyncClient, email: str | None = None,
                   password: str = PASSWORD) -> dict[str, Any]:
    r = await client.post("/auth/register", json={"email": email or new_email(),
                                                  "password": password})
    assert r.status_code == 201, r.text
    return r.json()


async def login(client: httpx.AsyncClient, email: str,
                password: str = PASSWORD) -> dict[str, Any]:
    r = await client.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


async def signed_in(client: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    email = (await register(client))["email"]
    return email, await login(client, email)


async def sql(env: Env, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(env.database_url)
    try:
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()


def claims(**override: Any) -> dict[str, Any]:
    """Valid access-token claims for user 1, with ``override`` applied."""
    now = int(time.time())
    return {"iss": AUTH.issuer, "aud": AUTH.audience, "typ": "access", "sub": "1", "iat": now,
            "exp": now + 600, "jti": uuid.uuid4().hex, "fam": str(uuid.uuid4())} | override


def forge(override: dict[str, Any], *, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims(**override), key, algorithm=algorithm)


def wrong_code(totp: pyotp.TOTP, now: float) -> str:
    """A 6-digit code no step near ``now`` has."""
    near = {totp.at(now + 30 * d) for d in range(-3, 4)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


# -- registration and login ----------------------------------------------------------------
async def test_register_login_me(api: httpx.AsyncClient) -> None:
    local = uuid.uuid4().hex[:8]
    created = await register(api, f"  Ann.{local}@Example.COM ")
    assert created == {"user_id": created["user_id"], "email": f"ann.{local}@example.com",
                       "tier": "free"}
    tokens = await login(api, f"ANN.{local}@example.com")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_token"] and tokens["access_token"].count(".") == 2

    me = await api.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["user_id"] == created["user_id"] and body["email"] == created["email"]
    assert body["tier"] == "free" and body["is_admin"] is False
    assert body["email_verified"] is False and body["two_factor_enabled"] is False
    assert body["limits"]["forecast_horizons"] == [1, 7]
    assert body["last_login_at"] is not None
    assert "password_hash" not in body and "totp_secret" not in body

    probe = await api.get("/probe/limits", headers=bearer(tokens["access_token"]))
    assert probe.json()["max_alerts"] == 3

    no_token = await api.get("/auth/me")
    assert no_token.status_code == 401 and no_token.headers["WWW-Authenticate"] == "Bearer"


async def test_password_is_stored_as_argon2id(api: httpx.AsyncClient, env: Env) -> None:
    created = await register(api)
    row = await sql(env, "SELECT password_hash FROM users WHERE user_id = $1",
                    created["user_id"])
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]


@pytest.mark.parametrize(("password", "message"), [
    ("Short-1a", "at least 12 characters"),
    ("onlylowercaseletters", "at least two kinds of characters"),
    ("P@ssw0rd2024!", "too common"),
    ("Qwerty123456", "too common"),
    ("zzzzzzzzzzzz1", "different characters"),
])
async def test_weak_passwords_are_refused_with_reasons(api: httpx.AsyncClient, password: str,
                                                        message: str) -> None:
    email = new_email()
    r = await api.post("/auth/register", json={"email": email, "password": password})
    assert r.status_code == 422
    assert message in r.json()["detail"] and r.json()["detail"].startswith("password ")
    assert (await api.post("/auth/login", json={"email": email, "password": password})
            ).status_code == 401  # nothing was created


async def test_password_containing_the_email_is_refused(api: httpx.AsyncClient) -> None:
    r = await api.post("/auth/register", json={"email": "margaret.h@example.com",
                                               "password": "Margaret.H-2031!"})
    assert r.status_code == 422 and "email address" in r.json()["detail"]


@pytest.mark.parametrize(("email", "message"), [
    ("no-at-sign.example.com", "one @"),
    ("two@@example.com", "before @"),
    ("ann@localhost", "domain"),
    ("ann@exa_mple.com", "domain"),
    ("ann..b@example.com", "before @"),
    ("", "empty"),
    ("a" * 250 + "@example.com", "longer than 254"),
])
async def test_malformed_emails_are_refused(api: httpx.AsyncClient, email: str,
                                            message: str) -> None:
    r = await api.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 422 and message in r.json()["detail"], r.text


async def test_missing_fields_are_422_not_500(api: httpx.AsyncClient) -> None:
    for body in ({}, {"email": "x@example.com"}, {"email": 5, "password": []}, [1, 2]):
        assert (await api.post("/auth/register", json=body)).status_code == 422
        assert (await api.post("/auth/login", json=body)).status_code == 422
    r = await api.post("/auth/login", content=b"{not json", headers={
        "content-type": "application/json"})
    assert r.status_code == 422


async def test_odd_text_is_a_4xx_never_a_500(api: httpx.AsyncClient, env: Env) -> None:
    for path in ("/auth/register", "/auth/login"):
        r = await api.post(path, json={"email": "ann@example.com",
                                       "password": "Tangerine\x00Harbor-42"})
        assert r.status_code == 422 and "NUL" in r.text
    r = await api.post("/auth/login", json={"email": "an\x00n@example.com", "password": PASSWORD})
    assert r.status_code == 422
    r = await api.post("/auth/login", json={"email": "not an email", "password": PASSWORD})
    assert r.status_code == 401 and r.json()["detail"] == "wrong email or password"
    for body in ({"refresh_token": "abc\x00"}, {"refresh_token": "x" * 201}):
        assert (await api.post("/auth/refresh", json=body)).status_code == 422
    admin_email = (await register(api))["email"]
    await make_admin(env, admin_email)
    admin = bearer((await login(api, admin_email))["access_token"])
    r = await api.get("/admin/users", params={"q": "a\x00b"}, headers=admin)
    assert r.status_code == 422 and "NUL" in r.json()["detail"]


async def test_duplicate_email_is_409_whatever_the_case(api: httpx.AsyncClient) -> None:
    email = new_email()
    await register(api, email)
    r = await api.post("/auth/register", json={"email": email.upper(), "password": PASSWORD})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


# -- throttling ----------------------------------------------------------------------------
async def test_wrong_password_is_401_and_the_sixth_attempt_is_locked(
        api: httpx.AsyncClient) -> None:
    email = (await register(api))["email"]
    for _ in range(5):
        r = await api.post("/auth/login", json={"email": email, "password": "Wrong-Guess-123"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong email or password"
    r = await api.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 429
    assert 0 < int(r.headers["Retry-After"]) <= AUTH.failure_window_s
    assert "locked" in r.json()["detail"] and "this account" in r.json()["detail"]
    # Another account from the same network is not locked.
    await login(api, (await register(api))["email"])


async def test_unknown_accounts_count_as_failures_too(api: httpx.AsyncClient) -> None:
    ghost = new_email()
    for _ in range(5):
        r = await api.post("/auth/login", json={"email": ghost, "password": PASSWORD})
        assert r.status_code == 401 and r.json()["detail"] == "wrong email or password"
    assert (await api.post("/auth/login", json={"email": ghost, "password": PASSWORD})
            ).status_code == 429


async def test_success_resets_the_account_counter(api: httpx.AsyncClient) -> None:
    email = (await register(api))["email"]
    wrong = {"email": email, "password": "Not-The-Password-1"}
    for _ in range(4):
        assert (await api.post("/auth/login", json=wrong)).status_code == 401
    await login(api, email)
    for _ in range(4):
        assert (await api.post("/auth/login", json=wrong)).status_code == 401
    await login(api, email)  # 4 + 4 failures, but never 5 in a row


async def test_failures_are_limited_per_client_ip(apps: Apps, api: httpx.AsyncClient) -> None:
    attacker = apps.same_app(api, ip="203.0.113.9")
    victims = [(await register(api))["email"] for _ in range(6)]
    for i in range(10):  # 10 per IP, 2 per account: no account reaches its 5
        r = await attacker.post("/auth/login",
                                json={"email": victims[i % 5], "password": "Guess-Number-99"})
        assert r.status_code == 401
    r = await attacker.post("/auth/login", json={"email": victims[5], "password": PASSWORD})
    assert r.status_code == 429 and "from your network" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) > 0
    await login(api, victims[5])  # the account itself is fine from elsewhere


# -- two-factor authentication -------------------------------------------------------------
async def test_two_factor_setup_enable_and_login(api: httpx.AsyncClient) -> None:
    email, tokens = await signed_in(api)
    access = bearer(tokens["access_token"])
    setup = await api.post("/auth/2fa/setup", headers=access)
    assert setup.status_code == 200, setup.text
    secret, uri = setup.json()["secret"], setup.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/RWA%20Prime:") and "issuer=RWA%20Prime" in uri
    assert f"secret={secret}" in uri and email.split("@")[0] in uri
    code = pyotp.TOTP(secret)
    now = time.time()

    wrong = await api.post("/auth/2fa/enable", headers=access,
                           json={"totp_code": wrong_code(code, now)})
    assert wrong.status_code == 400 and wrong.json()["detail"] == "invalid TOTP code"
    assert (await api.post("/auth/login", json={"email": email, "password": PASSWORD})
            ).json().get("two_factor_required") is None  # not on before enable

    enabled = await api.post("/auth/2fa/enable", headers=access, json={"totp_code": code.at(now)})
    assert enabled.status_code == 200 and enabled.json() == {"two_factor_enabled": True}
    assert (await api.post("/auth/2fa/setup", headers=access)).status_code == 409
    assert (await api.get("/auth/me", headers=access)).json()["two_factor_enabled"] is True

    challenge = await api.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert challenge.status_code == 200
    body = challenge.json()
    assert body["two_factor_required"] is True and "access_token" not in body
    temp = bearer(body["temp_token"])

    # The temp token opens nothing but /auth/verify-2fa.
    for method, path in (("GET", "/auth/me"), ("POST", "/auth/2fa/setup"), ("GET", "/probe"),
                         ("POST", "/auth/logout")):
        r = await api.request(method, path, headers=temp)
        assert r.status_code == 401, (path, r.text)
    r = await api.get("/auth/me", headers=temp)
    assert "verify-2fa" in r.json()["detail"]

    bad = await api.post("/auth/verify-2fa", headers=temp, json={"totp_code": "12345x"})
    assert bad.status_code == 401
    # The next step's code is within the window (the current one was spent on enable).
    verified = await api.post("/auth/verify-2fa", headers=temp,
                              json={"totp_code": code.at(now + 30)})
    assert verified.status_code == 200, verified.text
    pair = verified.json()
    assert (await api.get("/probe", headers=bearer(pair["access_token"]))).status_code == 200

    # The temp token is single-use.
    again = await api.post("/auth/verify-2fa", headers=temp, json={"totp_code": code.at(now)})
    assert again.status_code == 401
    # An access token is not a temp token.
    assert (await api.post("/auth/verify-2fa", headers=bearer(pair["access_token"]),
                           json={"totp_code": code.at(now)})).status_code == 401


async def test_a_totp_code_works_only_once(api: httpx.AsyncClient) -> None:
    email, tokens = await signed_in(api)
    access = bearer(tokens["access_token"])
    secret = (await api.post("/auth/2fa/setup", headers=access)).json()["secret"]
    code = pyotp.TOTP(secret)
    now = time.time()
    assert (await api.post("/auth/2fa/enable", headers=access,
                           json={"totp_code": code.at(now)})).status_code == 200

    first = (await login(api, email))["temp_token"]
    ok = await api.post("/auth/verify-2fa", headers=bearer(first),
                        json={"totp_code": code.at(now + 30)})
    assert ok.status_code == 200
    second = (await login(api, email))["temp_token"]
    replay = await api.post("/auth/verify-2fa", headers=bearer(second),
                            json={"totp_code": code.at(now + 30)})
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    # The code spent on enabling is spent for logins too.
    replay = await api.post("/auth/verify-2fa", headers=bearer(second),
                            json={"totp_code": code.at(now)})
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]


async def test_totp_secrets_are_stored_sealed_and_a_changed_key_answers_503(
        apps: Apps, api: httpx.AsyncClient, env: Env) -> None:
    email, tokens = await signed_in(api)
    access = bearer(tokens["access_token"])
    secret = (await api.post("/auth/2fa/setup", headers=access)).json()["secret"]
    user_id = (await api.get("/auth/me", headers=access)).json()["user_id"]
    stored = (await sql(env, "SELECT totp_secret FROM users WHERE user_id = $1",
                        user_id))["totp_secret"]
    assert stored.startswith("v1:") and secret not in stored
    code = pyotp.TOTP(secret)
    now = time.time()
    assert (await api.post("/auth/2fa/enable", headers=access,
                           json={"totp_code": code.at(now)})).status_code == 200

    # A server with a key of its own cannot open what the JWT-derived key sealed: the
    # operator is told, the user gets no 500 and no false "invalid code".
    keyed = apps.client(apps.args(auth=AUTH.model_copy(
        update={"totp_key": SecretStr("a-totp-key-of-its-own-" + "t" * 20)})))
    temp = bearer((await login(keyed, email))["temp_token"])
    refused = await keyed.post("/auth/verify-2fa", headers=temp,
                               json={"totp_code": code.at(now + 30)})
    assert refused.status_code == 503 and "key" in refused.json()["detail"]

    # A secret stored plainly, before secrets were sealed, still works.
    await sql(env, "UPDATE users SET totp_secret = $2 WHERE user_id = $1", user_id, secret)
    temp = bearer((await login(api, email))["temp_token"])
    ok = await api.post("/auth/verify-2fa", headers=temp, json={"totp_code": code.at(now + 30)})
    assert ok.status_code == 200, ok.text


async def test_totp_attempts_are_throttled(api: httpx.AsyncClient) -> None:
    email, tokens = await signed_in(api)
    access = bearer(tokens["access_token"])
    secret = (await api.post("/auth/2fa/setup", headers=access)).json()["secret"]
    code = pyotp.TOTP(secret)
    now = time.time()
    await api.post("/auth/2fa/enable", headers=access, json={"totp_code": code.at(now)})
    temp = bearer((await login(api, email))["temp_token"])
    wrong = wrong_code(code, now)
    for _ in range(5):
        assert (await api.post("/auth/verify-2fa", headers=temp,
                               json={"totp_code": wrong})).status_code == 401
    locked = await api.post("/auth/verify-2fa", headers=temp,
                            json={"totp_code": code.at(now + 30)})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "2FA code" in locked.json()["detail"]


async def test_enable_needs_setup_first(api: httpx.AsyncClient) -> None:
    _, tokens = await signed_in(api)
    r = await api.post("/auth/2fa/enable", headers=bearer(tokens["access_token"]),
                       json={"totp_code": "123456"})
    assert r.status_code == 409 and "setup" in r.json()["detail"]


# -- refresh tokens and logout -------------------------------------------------------------
async def test_refresh_rotates_and_reuse_revokes_the_family(api: httpx.AsyncClient,
                                                            env: Env) -> None:
    _, first = await signed_in(api)
    r = await api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await api.get("/probe", headers=bearer(second["access_token"]))).status_code == 200
    row = await sql(env, "SELECT count(*) AS n FROM refresh_tokens WHERE token_hash = $1",
                    first["refresh_token"].encode())
    assert row["n"] == 0  # stored hashed, never as given

    # The rotated token is dead; presenting it again ends the whole login.
    reuse = await api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401 and "already used" in reuse.json()["detail"]
    newest = await api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert newest.status_code == 401 and "revoked" in newest.json()["detail"]
    gone = await api.get("/probe", headers=bearer(second["access_token"]))
    assert gone.status_code == 401 and "session ended" in gone.json()["detail"]


async def test_reuse_leaves_other_logins_alone(api: httpx.AsyncClient) -> None:
    email, laptop = await signed_in(api)
    phone = await login(api, email)
    await api.post("/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    await api.post("/auth/refresh", json={"refresh_token": laptop["refresh_token"]})  # reuse
    assert (await api.get("/probe", headers=bearer(phone["access_token"]))).status_code == 200
    assert (await api.post("/auth/refresh", json={"refresh_token": phone["refresh_token"]})
            ).status_code == 200


async def test_unknown_and_expired_refresh_tokens_are_refused(api: httpx.AsyncClient,
                                                              env: Env) -> None:
    r = await api.post("/auth/refresh", json={"refresh_token": "not-a-token"})
    assert r.status_code == 401 and r.json()["detail"] == "unknown refresh token"
    _, tokens = await signed_in(api)
    conn = await asyncpg.connect(env.database_url)
    try:
        from serve.auth.refresh import token_hash

        await conn.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 s' "
                           "WHERE token_hash = $1", token_hash(tokens["refresh_token"]))
    finally:
        await conn.close()
    r = await api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_logout_ends_access_and_refresh(api: httpx.AsyncClient) -> None:
    _, tokens = await signed_in(api)
    out = await api.post("/auth/logout", headers=bearer(tokens["access_token"]))
    assert out.status_code == 204
    assert (await api.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code == 401
    assert (await api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            ).status_code == 401


async def test_logout_with_the_refresh_token_alone(api: httpx.AsyncClient) -> None:
    _, tokens = await signed_in(api)
    out = await api.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert out.status_code == 204
    assert (await api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            ).status_code == 401
    assert (await api.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code == 401
    assert (await api.post("/auth/logout")).status_code == 401


# -- access tokens -------------------------------------------------------------------------
async def test_forged_and_broken_tokens_are_401(api: httpx.AsyncClient) -> None:
    _, tokens = await signed_in(api)
    user_id = (await api.get("/probe", headers=bearer(tokens["access_token"]))).json()["user_id"]
    sub = {"sub": str(user_id)}
    head, payload, signature = tokens["access_token"].split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    resigned = ("A" if signature[0] != "A" else "B") + signature[1:]
    unsigned = jwt.encode(claims(**sub), None, algorithm="none")
    cases = {
        "tampered payload": (f"{head}.{flipped}.{signature}", "signature"),
        "tampered signature": (f"{head}.{payload}.{resigned}", "signature"),
        "expired": (forge(sub | {"exp": int(time.time()) - 60, "iat": int(time.time()) - 999}),
                    "expired"),
        "alg none": (unsigned, "algorithm"),
        "HS512": (forge(sub, algorithm="HS512"), "algorithm"),
        "other key": (forge(sub, key="another-secret-" + "z" * 40), "signature"),
        "wrong audience": (forge(sub | {"aud": "someone-else"}), "audience"),
        "wrong issuer": (forge(sub | {"iss": "evil-issuer"}), "issuer"),
        "no expiry": (forge(sub | {"exp": None}), "invalid token"),
        "email token": (forge(sub | {"typ": "email_verify"}), "not an access token"),
        "garbage": ("not.a.jwt", "malformed"),
    }
    assert (await api.get("/probe", headers=bearer(forge(sub)))).status_code == 200  # control
    for name, (token, reason) in cases.items():
        r = await api.get("/probe", headers=bearer(token))
        assert r.status_code == 401, name
        assert reason in r.json()["detail"], (name, r.json())


# -- tiers, request limits and the admin role ------------------------------------------------
async def make_admin(env: Env, email: str, *, tier: str = "enterprise") -> None:
    conn = await asyncpg.connect(env.database_url)
    try:
        assert await users.set_admin(conn, email, is_admin=True)
        await conn.execute("UPDATE users SET tier = $2 WHERE email = $1", email, tier)
    finally:
        await conn.close()


async def test_admin_endpoints(api: httpx.AsyncClient, env: Env) -> None:
    member_email, member = await signed_in(api)
    member_id = (await api.get("/probe", headers=bearer(member["access_token"]))).json()["user_id"]
    admin_email = (await register(api))["email"]
    await make_admin(env, admin_email)
    admin = bearer((await login(api, admin_email))["access_token"])

    assert (await api.get("/admin/users")).status_code == 401
    for r in (await api.get("/admin/users", headers=bearer(member["access_token"])),
              await api.patch(f"/admin/users/{member_id}", json={"tier": "pro"},
                              headers=bearer(member["access_token"])),
              await api.get("/probe/admin", headers=bearer(member["access_token"]))):
        assert r.status_code == 403 and r.json()["detail"] == "this needs the admin role"

    listed = await api.get("/admin/users", params={"q": member_email[:15]}, headers=admin)
    assert listed.status_code == 200
    assert [u["email"] for u in listed.json()["items"]] == [member_email]
    assert listed.json()["total"] == 1
    assert set(listed.json()["items"][0]) >= {"user_id", "email", "tier", "is_admin",
                                              "email_verified", "totp_enabled", "created_at"}
    assert "password_hash" not in listed.json()["items"][0]
    page = await api.get("/admin/users", params={"limit": 1}, headers=admin)
    assert len(page.json()["items"]) == 1 and page.json()["total"] >= 2
    assert (await api.get("/admin/users", params={"limit": 0}, headers=admin)).status_code == 422

    # The member's tier is cached for its requests; the change applies at once anyway.
    assert (await api.get("/probe", headers=bearer(member["access_token"]))).json()["tier"] \
        == "free"
    changed = await api.patch(f"/admin/users/{member_id}", json={"tier": "pro"}, headers=admin)
    assert changed.status_code == 200 and changed.json()["tier"] == "pro"
    assert (await api.get("/probe", headers=bearer(member["access_token"]))).json()["tier"] \
        == "pro"
    me = await api.get("/auth/me", headers=bearer(member["access_token"]))
    assert me.json()["limits"]["forecast_horizons"] == [1, 7, 30]
    by_tier = await api.get("/admin/users", params={"tier": "pro"}, headers=admin)
    assert member_email in [u["email"] for u in by_tier.json()["items"]]

    unknown = await api.patch(f"/admin/users/{member_id}", json={"tier": "platinum"},
                              headers=admin)
    assert unknown.status_code == 422 and "free, pro, enterprise" in unknown.json()["detail"]
    missing = await api.patch("/admin/users/987654321", json={"tier": "pro"}, headers=admin)
    assert missing.status_code == 404
    assert (await api.patch("/admin/users/abc", json={"tier": "pro"}, headers=admin)
            ).status_code == 422


async def test_admin_user_list_offsets_stop_at_bigint(api: httpx.AsyncClient,
                                                      env: Env) -> None:
    """An offset past PostgreSQL's bigint was a 500 (asyncpg could not encode it); the
    largest one is a page past the end."""
    admin_email = (await register(api))["email"]
    await make_admin(env, admin_email)
    admin = bearer((await login(api, admin_email))["access_token"])
    last = await api.get("/admin/users", params={"offset": 2**63 - 1}, headers=admin)
    assert last.status_code == 200 and last.json()["items"] == [], last.text
    past = await api.get("/admin/users", params={"offset": 2**63}, headers=admin)
    assert past.status_code == 422 and past.json()["detail"][0]["loc"] == ["query", "offset"]


async def test_tier_request_limits(apps: Apps, env: Env) -> None:
    tiers = {"free": TierLimits(requests_per_minute=3, forecast_horizons=[1], max_alerts=1,
                                max_ws_subscriptions=1),
             "pro": TierLimits(requests_per_minute=12, forecast_horizons=[1, 7], max_alerts=5,
                               max_ws_subscriptions=5),
             "enterprise": TierLimits(requests_per_minute=1000, forecast_horizons=[1, 7, 30],
                                      max_alerts=50, max_ws_subscriptions=50)}
    tight = apps.client(apps.args(tiers=tiers), ip="198.51.100.1")

    # Anonymous clients: the free tier's limit per client IP.
    for _ in range(3):
        assert (await tight.get("/public")).status_code == 200
    over = await tight.get("/public")
    assert over.status_code == 429
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert over.json()["detail"] == (f"rate limit exceeded: the free tier allows 3 requests "
                                      f"per minute; retry in {over.headers['Retry-After']} s")
    assert (await apps.same_app(tight, ip="198.51.100.2").get("/public")).status_code == 200
    assert (await tight.get("/health")).status_code == 404  # unlimited path, no route here

    # Signed-in users: their tier's limit per user, whatever the IP.
    member_ip = apps.same_app(tight, ip="198.51.100.3")
    member_email = (await register(member_ip))["email"]
    member = bearer((await login(member_ip, member_email))["access_token"])
    elsewhere = apps.same_app(tight, ip="198.51.100.4")
    for client in (elsewhere, elsewhere, elsewhere):
        r = await client.get("/probe", headers=member)
        assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "3"
    limited = await member_ip.get("/probe", headers=member)
    assert limited.status_code == 429 and "free tier" in limited.json()["detail"]
    assert int(limited.headers["Retry-After"]) >= 1

    admin_email = (await register(apps.same_app(tight, ip="198.51.100.5")))["email"]
    await make_admin(env, admin_email)
    admin_client = apps.same_app(tight, ip="198.51.100.6")
    admin = bearer((await login(admin_client, admin_email))["access_token"])
    member_id = (await admin_client.get("/admin/users", params={"q": member_email},
                                        headers=admin)).json()["items"][0]["user_id"]
    assert (await admin_client.patch(f"/admin/users/{member_id}", json={"tier": "pro"},
                                     headers=admin)).status_code == 200
    upgraded = await member_ip.get("/probe", headers=member)
    assert upgraded.status_code == 200 and upgraded.headers["X-RateLimit-Limit"] == "12"
    assert upgraded.json()["tier"] == "pro"


async def test_the_gate_checks_a_session_and_counts_its_request_in_redis(
        api: httpx.AsyncClient, redis_url: str) -> None:
    """``Auth.gate`` (one Lua call): a live session of a cached user is counted against
    that user's window; a revoked session or a user not cached counts nothing and is
    left to ``authenticate`` (which refuses the one and reads the other's row)."""
    transport = api._transport
    assert isinstance(transport, httpx.ASGITransport)
    auth = auth_for(transport.app.state.services)  # type: ignore[attr-defined]
    _, tokens = await signed_in(api)
    token = tokens["access_token"]
    me = (await api.get("/probe", headers=bearer(token))).json()  # caches the user
    window = f"rwa:ratelimit:user:{me['user_id']}"
    r = redis.Redis.from_url(redis_url)
    try:
        before = r.zcard(window)
        gated = await auth.gate(token, window_s=60)
        assert gated is not None
        user, claims, decision = gated
        assert (user.user_id, user.tier, user.is_admin) == (me["user_id"], "free", False)
        assert claims.user_id == me["user_id"] and decision.allowed
        assert decision.limit == auth.limits("free").requests_per_minute
        assert r.zcard(window) == before + 1

        await auth.forget_user(me["user_id"])  # e.g. an admin changed the tier
        assert await auth.gate(token, window_s=60) is None
        assert r.zcard(window) == before + 1
        assert (await api.get("/probe", headers=bearer(token))).status_code == 200
        assert await auth.gate(token, window_s=60) is not None  # cached again

        assert (await api.post("/auth/logout", headers=bearer(token))).status_code == 204
        counted = r.zcard(window)
        assert await auth.gate(token, window_s=60) is None
        assert r.zcard(window) == counted
        refused = await api.get("/probe", headers=bearer(token))
        assert refused.status_code == 401 and "session ended" in refused.json()["detail"]
        assert r.zcard(window) == counted  # the refused request counted as anonymous
        with pytest.raises(HTTPException) as bad:
            await auth.gate(token[:-2] + "xx", window_s=60)
        assert bad.value.status_code == 401
    finally:
        r.close()


async def test_sliding_window_frees_room_as_requests_age(redis_url: str) -> None:
    client = cache.async_client(redis_url)
    try:
        limiter = SlidingWindowLimiter(client, prefix="test:rl")
        assert (await limiter.hit("k", limit=2, window_s=1)).remaining == 1
        assert (await limiter.hit("k", limit=2, window_s=1)).remaining == 0
        refused = await limiter.hit("k", limit=2, window_s=1)
        assert not refused.allowed and refused.retry_after_s == 1
        deadline = time.monotonic() + 5
        while not (await limiter.hit("k", limit=2, window_s=1)).allowed:
            assert time.monotonic() < deadline, "the window never slid"
        assert 0 < await client.pttl("test:rl:k") <= 1000  # the key expires with its window
    finally:
        await client.aclose()


# -- email verification --------------------------------------------------------------------
def token_in(body: str) -> str:
    found = re.search(r"verify-email\?token=([\w.-]+)", body)
    assert found, body
    return found[1]


async def test_email_verification_is_delivered_and_single_use(
        api: httpx.AsyncClient, smtp_server: LocalSmtp) -> None:
    email, tokens = await signed_in(api)
    (message,) = await smtp_server.inbox.wait_for(email)
    assert message["Subject"] == "Confirm your email address for RWA Prime"
    assert "RWA Prime" in message["From"] and message["Message-ID"]
    body = message.get_content()
    token = token_in(body)
    assert token in body.split("POST /auth/verify-email")[1]  # also given as plain token
    access = bearer(tokens["access_token"])
    assert (await api.get("/auth/me", headers=access)).json()["email_verified"] is False

    wrong_kind = await api.post("/auth/verify-email", json={"token": tokens["access_token"]})
    assert wrong_kind.status_code == 400 and "not an email verification token" in \
        wrong_kind.json()["detail"]
    tampered = await api.post("/auth/verify-email", json={"token": token[:-3] + "abc"})
    assert tampered.status_code == 400

    ok = await api.post("/auth/verify-email", json={"token": token})
    assert ok.status_code == 200 and ok.json() == {"email": email, "email_verified": True}
    assert (await api.get("/auth/me", headers=access)).json()["email_verified"] is True
    again = await api.post("/auth/verify-email", json={"token": token})
    assert again.status_code == 409 and "already used" in again.json()["detail"]
    resend = await api.post("/auth/verify-email/resend", headers=access)
    assert resend.status_code == 409


async def test_expired_verification_token_is_refused(api: httpx.AsyncClient) -> None:
    created = await register(api)
    now = int(time.time())
    expired = forge({"sub": str(created["user_id"]), "typ": "email_verify",
                     "email": created["email"], "iat": now - 7200, "exp": now - 3600})
    r = await api.post("/auth/verify-email", json={"token": expired})
    assert r.status_code == 400 and "expired" in r.json()["detail"]


async def test_resend_verification(api: httpx.AsyncClient, smtp_server: LocalSmtp) -> None:
    email, tokens = await signed_in(api)
    await smtp_server.inbox.wait_for(email)
    access = bearer(tokens["access_token"])
    sent = await api.post("/auth/verify-email/resend", headers=access)
    assert sent.status_code == 202 and sent.json() == {"sent_to": email}
    first, second = await smtp_server.inbox.wait_for(email, count=2)
    assert token_in(first.get_content()) != token_in(second.get_content())
    too_soon = await api.post("/auth/verify-email/resend", headers=access)
    assert too_soon.status_code == 429 and int(too_soon.headers["Retry-After"]) > 0
    # The newer token verifies the address.
    assert (await api.post("/auth/verify-email", json={"token": token_in(
        second.get_content())})).status_code == 200


async def test_registration_without_smtp_still_works(apps: Apps) -> None:
    client = apps.client(apps.args(smtp=False))
    _email, tokens = await signed_in(client)
    r = await client.post("/auth/verify-email/resend", headers=bearer(tokens["access_token"]))
    assert r.status_code == 503 and "not configured" in r.json()["detail"]


# -- configuration -------------------------------------------------------------------------
async def test_password_hashes_are_upgraded_at_login(apps: Apps, api: httpx.AsyncClient,
                                                     env: Env) -> None:
    created = await register(api)
    stronger = AUTH.model_copy(update={"argon2_time_cost": 2, "argon2_memory_kib": 16384})
    upgraded = apps.client(apps.args(auth=stronger))
    before = (await sql(env, "SELECT password_hash FROM users WHERE user_id = $1",
                        created["user_id"]))["password_hash"]
    assert "m=8192,t=1" in before
    await login(upgraded, created["email"])
    after = (await sql(env, "SELECT password_hash FROM users WHERE user_id = $1",
                       created["user_id"]))["password_hash"]
    assert "m=16384,t=2" in after and after != before
    await login(upgraded, created["email"])
    await login(api, created["email"])  # an old-parameter replica still verifies it


async def test_without_a_jwt_secret_auth_answers_503(apps: Apps, monkeypatch:
                                                     pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RWA_AUTH__JWT_SECRET", raising=False)
    client = apps.client(apps.args(auth=AUTH.model_copy(update={"jwt_secret": None})))
    r = await client.post("/auth/register", json={"email": new_email(), "password": PASSWORD})
    assert r.status_code == 503 and "RWA_AUTH__JWT_SECRET" in r.json()["detail"]
    assert (await client.get("/probe", headers=bearer(forge({"sub": "1"})))).status_code == 503


async def test_tokens_from_another_audience_deployment_are_refused(apps: Apps,
                                                                   api: httpx.AsyncClient
                                                                   ) -> None:
    staging = apps.client(apps.args(auth=AUTH.model_copy(update={"audience": "staging-api"})))
    _, tokens = await signed_in(api)
    r = await staging.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert r.status_code == 401 and "audience" in r.json()["detail"]
