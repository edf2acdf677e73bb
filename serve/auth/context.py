"""What the auth routes and dependencies share in one replica: settings, the token
codec, password hasher, throttles, the request limiter, and the user lookup.

``auth_for(services)`` gives the one ``Auth`` of a ``serve.api.Services``; routers and
dependencies reach it through ``app.state.services``.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis
from fastapi import HTTPException
from pydantic import SecretStr
from starlette.requests import HTTPConnection

from core.settings import AuthSettings, SmtpSettings, TierLimits
from serve.args import AppArgs
from serve.auth import refresh, totp, users
from serve.auth.passwords import Passwords
from serve.auth.ratelimit import Decision, SlidingWindowLimiter
from serve.auth.throttle import Throttle
from serve.auth.tokens import Claims, TokenCodec, TokenError
from serve.auth.users import User

log = logging.getLogger(__name__)

SECRET_ENV = "RWA_AUTH__JWT_SECRET"
TOTP_KEY_ENV = "RWA_AUTH__TOTP_KEY"
SMTP_PASSWORD_ENV = "RWA_SMTP__PASSWORD"
#: Seconds a user's tier and role are cached in Redis between database reads; an
#: admin's change clears the entry at once.
USER_CACHE_TTL_S = 60
BEARER = {"WWW-Authenticate": "Bearer"}


class ServicesLike(Protocol):
    """What auth needs of ``serve.api.Services``."""

    args: AppArgs
    redis: aioredis.Redis

    async def ensure_pool(self) -> asyncpg.Pool: ...


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers=BEARER)


class Auth:
    def __init__(self, services: ServicesLike) -> None:
        self.services = services
        args = services.args
        self.settings: AuthSettings = args.auth
        self.tiers: dict[str, TierLimits] = args.tiers
        # Requests per minute by tier, for ``gate`` on every signed-in request.
        self._per_minute = {name: t.requests_per_minute for name, t in self.tiers.items()}
        self.smtp = _smtp_with_env_password(args.smtp)
        s = self.settings
        self.passwords = Passwords(time_cost=s.argon2_time_cost,
                                   memory_kib=s.argon2_memory_kib,
                                   parallelism=s.argon2_parallelism)
        secret = s.jwt_secret or _secret_from_env(SECRET_ENV, "jwt_secret")
        self._codec = TokenCodec(secret, issuer=s.issuer, audience=s.audience) \
            if secret else None
        if self._codec is None:
            log.error("no JWT secret: set %s; auth endpoints answer 503 until then", SECRET_ENV)
        self._totp_box = _totp_box(s.totp_key or _secret_from_env(TOTP_KEY_ENV, "totp_key"),
                                   secret)
        throttle = {"max_per_account": s.max_failures_per_account,
                    "max_per_ip": s.max_failures_per_ip, "window_s": s.failure_window_s}
        self.login_throttle = Throttle(services.redis, scope="login", **throttle)
        self.totp_throttle = Throttle(services.redis, scope="totp", **throttle)
        self.limiter = SlidingWindowLimiter(services.redis)

    @property
    def redis(self) -> aioredis.Redis:
        return self.services.redis

    async def pool(self) -> asyncpg.Pool:
        return await self.services.ensure_pool()

    @property
    def tokens(self) -> TokenCodec:
        if self._codec is None:
            raise HTTPException(503, f"authentication is not configured: set {SECRET_ENV}")
        return self._codec

    def require_tokens(self) -> None:
        """503 now, before any work, when no JWT secret is configured."""
        self.tokens  # noqa: B018 - the property raises

    # -- TOTP secrets ----------------------------------------------------------------------
    @property
    def _box(self) -> totp.SecretBox:
        if self._totp_box is None:  # no TOTP key and no JWT secret to derive one from
            raise HTTPException(503, f"authentication is not configured: set {SECRET_ENV}")
        return self._totp_box

    def seal_totp(self, user_id: int, secret: str) -> str:
        """``secret`` as the account's row stores it (see :class:`totp.SecretBox`)."""
        return self._box.seal(secret, user_id=user_id)

    def totp_secret(self, row: Any) -> str:
        """The TOTP secret of an account's row (``user_id``, ``totp_secret``)."""
        try:
            return self._box.open(row["totp_secret"], user_id=row["user_id"])
        except totp.SealedSecretError as e:
            log.error("user %s: %s (was %s changed?)", row["user_id"], e, TOTP_KEY_ENV)
            raise HTTPException(
                503, "two-factor secrets cannot be read with this server's key; "
                     "an operator must restore the key they were sealed with") from e

    def limits(self, tier: str) -> TierLimits:
        """The limits of ``tier``; a tier no longer in the table gets the free tier's."""
        return self.tiers.get(tier) or self.tiers["free"]

    def client_ip(self, conn: HTTPConnection) -> str:
        hops = self.settings.forwarded_hops
        if hops:
            forwarded = [p.strip() for p in conn.headers.get("x-forwarded-for", "").split(",")
                         if p.strip()]
            if len(forwarded) >= hops:
                return forwarded[-hops]
        return conn.client.host if conn.client else "unknown"

    # -- sessions ------------------------------------------------------------------------
    async def issue_session(self, user_id: int, *, family: str | None = None,
                            refresh_token: refresh.IssuedRefresh | None = None) -> dict[str, Any]:
        """An access token and a refresh token: a new family unless one is given."""
        if refresh_token is None:
            refresh_token = await refresh.issue(await self.pool(), user_id,
                                                ttl_s=self.settings.refresh_ttl_s,
                                                family_id=family)
        access = self.tokens.issue(user_id, "access", ttl_s=self.settings.access_ttl_s,
                                   family=refresh_token.family_id)
        return {"access_token": access, "refresh_token": refresh_token.token,
                "token_type": "bearer", "expires_in": self.settings.access_ttl_s}

    async def revoke_family(self, family_id: str) -> None:
        """End a login: its refresh tokens in PostgreSQL, its access tokens in Redis (for
        as long as any of them can still be valid)."""
        await refresh.revoke_family(await self.pool(), family_id)
        await self.redis.set(_revoked_key(family_id), "1", ex=self.settings.access_ttl_s + 60)

    async def authenticate(self, token: str) -> tuple[User, Claims]:
        """The user an access token belongs to, or 401."""
        try:
            claims = self.tokens.decode(token, expect="access")
        except TokenError as e:
            raise unauthorized(str(e)) from e
        assert claims.family is not None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(_revoked_key(claims.family)).hgetall(_user_key(claims.user_id))
            revoked, cached = await pipe.execute()
        if revoked:
            raise unauthorized("session ended (logged out or revoked); log in again")
        if cached:
            user = User(user_id=claims.user_id, email=cached["email"], tier=cached["tier"],
                        is_admin=cached["is_admin"] == "1")
        else:
            row = await users.by_id(await self.pool(), claims.user_id)
            if row is None:
                raise unauthorized("the account of this token no longer exists")
            user = users.user_of(row)
            await self._cache_user(user)
        return user, claims

    async def gate(self, token: str, *, window_s: int) -> tuple[User, Claims, Decision] | None:
        """A signed-in request's checks in one Redis round trip: the token (401 if invalid),
        its session not revoked, the cached user, and one request counted against their
        tier's limit. None, with nothing counted, when the session is revoked or the user
        is not cached: ``authenticate`` then says why or reads the database."""
        try:
            claims = self.tokens.decode(token, expect="access")
        except TokenError as e:
            raise unauthorized(str(e)) from e
        assert claims.family is not None
        hit = await self.limiter.hit_session(
            f"user:{claims.user_id}", revoked_key=_revoked_key(claims.family),
            user_key=_user_key(claims.user_id),
            limits=self._per_minute,
            default_limit=self.limits("free").requests_per_minute, window_s=window_s)
        if hit is None:
            return None
        user = User(user_id=claims.user_id, email=hit.email, tier=hit.tier,
                    is_admin=hit.is_admin)
        return user, claims, hit.decision

    async def _cache_user(self, user: User) -> None:
        key = _user_key(user.user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"email": user.email, "tier": user.tier,
                                    "is_admin": "1" if user.is_admin else "0"})
            pipe.expire(key, USER_CACHE_TTL_S)
            await pipe.execute()

    async def forget_user(self, user_id: int) -> None:
        """Drop the cached tier and role, after an admin changed them."""
        await self.redis.delete(_user_key(user_id))

    async def claim_once(self, jti: str, ttl_s: int) -> bool:
        """Spend a single-use token id; False if it was spent before."""
        return bool(await self.redis.set(f"rwa:auth:used-jti:{jti}", "1", nx=True, ex=ttl_s))

    async def was_claimed(self, jti: str) -> bool:
        return bool(await self.redis.exists(f"rwa:auth:used-jti:{jti}"))


def _revoked_key(family_id: str) -> str:
    return f"rwa:auth:revoked-family:{family_id}"


def _user_key(user_id: int) -> str:
    return f"rwa:auth:user:{user_id}"


def _secret_from_env(var: str, field: str) -> SecretStr | None:
    """The auth secret ``field`` from the environment variable ``var``, or None."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    return getattr(AuthSettings(**{field: SecretStr(raw)}), field)  # ConfigError if too short


def _totp_box(key: SecretStr | None, jwt_secret: SecretStr | None) -> totp.SecretBox | None:
    """The box of the TOTP key; without one, of a key derived from the JWT secret."""
    if key is not None:
        return totp.SecretBox(key.get_secret_value())
    if jwt_secret is not None:
        log.warning("no %s: TOTP secrets are sealed with a key derived from the JWT secret; "
                    "set a key of their own before users enrol", TOTP_KEY_ENV)
        return totp.SecretBox(jwt_secret.get_secret_value(), purpose="totp-secrets-jwt")
    return None


def _smtp_with_env_password(smtp: SmtpSettings | None) -> SmtpSettings | None:
    if smtp is None or smtp.password is not None or not os.environ.get(SMTP_PASSWORD_ENV):
        return smtp
    return smtp.model_copy(update={"password": SecretStr(os.environ[SMTP_PASSWORD_ENV])})


_contexts: weakref.WeakKeyDictionary[Any, Auth] = weakref.WeakKeyDictionary()


def auth_for(services: ServicesLike) -> Auth:
    """The one ``Auth`` of ``services``, made on first use."""
    auth = _contexts.get(services)
    if auth is None:
        auth = _contexts[services] = Auth(services)
    return auth
