"""The account endpoints (``/auth/…``) and the admin endpoints (``/admin/…``).

Both factories take the replica's ``serve.api.Services``; the dependencies in
``serve.auth.deps`` reach the same state through ``app.state.services``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.errors import DeliveryError
from serve.auth import refresh, totp, users
from serve.auth.context import Auth, ServicesLike, auth_for, unauthorized
from serve.auth.deps import Session, bearer, current_user, require_admin, session
from serve.auth.passwords import password_problems
from serve.auth.throttle import Locked
from serve.auth.tokens import TokenError
from serve.auth.users import User
from serve.auth.verification import send_verification, send_verification_quietly

#: Seconds between two verification emails a user may ask for.
RESEND_INTERVAL_S = 60
#: The largest ``offset`` a list takes: PostgreSQL's bigint (asyncpg cannot send more).
MAX_OFFSET = 2**63 - 1


def plain_text(value: str) -> str:
    """``value`` unless it holds NUL, which PostgreSQL text refuses: a 422 here rather
    than a 500 from the database. (Pydantic already refuses lone surrogates.)"""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(plain_text)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_Body):
    email: Text = Field(max_length=320, examples=["ann@example.com"])
    password: Text = Field(min_length=1, max_length=1024, examples=["Tangerine-Harbor-42"])


class TotpCode(_Body):
    totp_code: Text = Field(min_length=6, max_length=12, examples=["123456"],
                            description="The 6-digit code of the authenticator app.")


class RefreshRequest(_Body):
    refresh_token: Text = Field(min_length=1, max_length=200)


class LogoutRequest(_Body):
    refresh_token: Text | None = Field(default=None, max_length=200)


class EmailToken(_Body):
    token: Text = Field(min_length=1, max_length=4096)


class TierChange(_Body):
    tier: Text = Field(min_length=1, max_length=40)


class Registered(BaseModel):
    user_id: int
    email: str
    tier: str


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid for.")


class TwoFactorChallenge(BaseModel):
    temp_token: str = Field(description="Bearer token for POST /auth/verify-2fa only.")
    two_factor_required: Literal[True] = True
    expires_in: int


class TotpSetup(BaseModel):
    secret: str
    otpauth_uri: str


def _locked(locked: Locked) -> HTTPException:
    return HTTPException(429, locked.detail, headers={"Retry-After": str(locked.retry_after_s)})


def auth_router(services: ServicesLike) -> APIRouter:
    """``/auth/…``: register, login, 2FA, refresh, logout, email verification, me."""
    router = APIRouter(prefix="/auth", tags=["auth"])

    def auth() -> Auth:
        return auth_for(services)

    @router.post("/register", status_code=201, response_model=Registered)
    async def register(body: Credentials, background: BackgroundTasks) -> dict[str, Any]:
        """Create an account (tier ``free``) and mail a verification link. The password
        needs 12+ characters, two kinds of characters, not the email, not a common one."""
        a = auth()
        try:
            email = users.normalize_email(body.email)
        except ValueError as e:
            raise HTTPException(422, str(e)) from e
        problems = password_problems(body.password, email=email)
        if problems:
            raise HTTPException(422, "password " + "; ".join(problems))
        a.require_tokens()  # 503 before anything is written when no secret is set
        password_hash = await a.passwords.hash(body.password)
        try:
            row = await users.create(await a.pool(), email, password_hash)
        except users.EmailTaken as e:
            raise HTTPException(409, "an account with this email already exists") from e
        if a.smtp is not None and a.smtp.configured:
            background.add_task(send_verification_quietly, a, row["user_id"], email)
        return {"user_id": row["user_id"], "email": row["email"], "tier": row["tier"]}

    @router.post("/login", response_model=TokenPair | TwoFactorChallenge)
    async def login(body: Credentials, request: Request) -> dict[str, Any]:
        """Tokens, or a temp token for ``/auth/verify-2fa`` once 2FA is on. Five failures
        for an account (or more from one network) lock it for 15 minutes (429)."""
        a = auth()
        try:
            account, valid = users.normalize_email(body.email), True
        except ValueError:
            account, valid = body.email.strip().lower(), False
        ip = a.client_ip(request)
        locked = await a.login_throttle.check(account, ip)
        if locked:
            raise _locked(locked)
        pool = await a.pool()
        row = await users.by_email(pool, account) if valid else None
        if row is None:
            await a.passwords.burn(body.password)
            verified_ok, new_hash = False, None
        else:
            verified = await a.passwords.verify(row["password_hash"], body.password)
            verified_ok, new_hash = verified.ok, verified.new_hash
        if not verified_ok:
            await a.login_throttle.failed(account, ip)
            raise unauthorized("wrong email or password")
        await a.login_throttle.succeeded(account)
        await users.logged_in(pool, row["user_id"], new_hash=new_hash)
        await refresh.purge_expired(pool, row["user_id"])
        if row["totp_enabled"]:
            ttl_s = a.settings.two_factor_ttl_s
            return {"temp_token": a.tokens.issue(row["user_id"], "2fa", ttl_s=ttl_s),
                    "two_factor_required": True, "expires_in": ttl_s}
        return await a.issue_session(row["user_id"])

    @router.post("/verify-2fa", response_model=TokenPair)
    async def verify_2fa(
        body: TotpCode, request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> dict[str, Any]:
        """Second login step: the temp token from ``/auth/login`` as bearer and a TOTP
        code. Each code works once; failures are throttled like passwords."""
        a = auth()
        if credentials is None:
            raise unauthorized("send the temp token from /auth/login as Authorization: Bearer")
        try:
            claims = a.tokens.decode(credentials.credentials, expect="2fa")
        except TokenError as e:
            raise unauthorized(str(e)) from e
        if await a.was_claimed(claims.jti):
            raise unauthorized("this temp token was already used; log in again")
        row = await users.by_id(await a.pool(), claims.user_id)
        if row is None or not row["totp_enabled"] or not row["totp_secret"]:
            raise unauthorized("two-factor authentication is not on for this account")
        await _check_code(a, row, body.totp_code, a.client_ip(request), status=401)
        if not await a.claim_once(claims.jti, claims.seconds_left()):
            raise unauthorized("this temp token was already used; log in again")
        return await a.issue_session(row["user_id"])

    @router.post("/2fa/setup", response_model=TotpSetup)
    async def setup_2fa(user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """A new TOTP secret and its ``otpauth://`` URI for an authenticator app; 2FA is
        on once ``/auth/2fa/enable`` gets a code from it."""
        a = auth()
        secret = totp.new_secret()
        if not await users.set_pending_totp(await a.pool(), user.user_id,
                                            a.seal_totp(user.user_id, secret)):
            raise HTTPException(409, "two-factor authentication is already on")
        return {"secret": secret, "otpauth_uri": totp.provisioning_uri(
            secret, email=user.email, issuer=a.settings.totp_issuer)}

    @router.post("/2fa/enable")
    async def enable_2fa(body: TotpCode, request: Request,
                         user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
        """Turn 2FA on with a code from the secret of ``/auth/2fa/setup``."""
        a = auth()
        row = await users.by_id(await a.pool(), user.user_id)
        if row is None:
            raise unauthorized("the account of this token no longer exists")
        if row["totp_enabled"]:
            raise HTTPException(409, "two-factor authentication is already on")
        if not row["totp_secret"]:
            raise HTTPException(409, "no TOTP secret yet: call POST /auth/2fa/setup first")
        await _check_code(a, row, body.totp_code, a.client_ip(request), status=400)
        await users.enable_totp(await a.pool(), user.user_id)
        return {"two_factor_enabled": True}

    @router.post("/refresh", response_model=TokenPair)
    async def refresh_tokens(body: RefreshRequest) -> dict[str, Any]:
        """A new token pair for a refresh token, which is spent. Presenting a spent one
        again ends every session of its login."""
        a = auth()
        a.require_tokens()  # 503 before the token is spent when no secret is set
        rotation = await refresh.rotate(await a.pool(), body.refresh_token,
                                        ttl_s=a.settings.refresh_ttl_s)
        if rotation.revoked_family:
            await a.revoke_family(rotation.revoked_family)
        if rotation.issued is None:
            raise unauthorized(rotation.rejected or "refresh token refused")
        assert rotation.user_id is not None
        return await a.issue_session(rotation.user_id, refresh_token=rotation.issued)

    @router.post("/logout", status_code=204)
    async def logout(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        body: LogoutRequest | None = None,
    ) -> Response:
        """End this login: its refresh tokens and its access tokens stop working. Send
        the access token as bearer, or the refresh token in the body, or both."""
        a = auth()
        families: set[str] = set()
        user_id: int | None = None
        if credentials is not None:
            try:
                s = await session(request, credentials)
            except HTTPException:
                if body is None or body.refresh_token is None:
                    raise
            else:
                user_id = s.user.user_id
                families.add(s.claims.family or "")
        if body is not None and body.refresh_token:
            found = await refresh.family_of(await a.pool(), body.refresh_token)
            if found is not None and (user_id is None or found[1] == user_id):
                families.add(found[0])
            elif not families:
                raise unauthorized("unknown refresh token")
        if not families - {""}:
            raise unauthorized("send the access token as bearer or the refresh token in the body")
        for family in families - {""}:
            await a.revoke_family(family)
        return Response(status_code=204)

    @router.post("/verify-email")
    async def verify_email(body: EmailToken) -> dict[str, Any]:
        """Confirm the address with the token of the verification email (single use)."""
        a = auth()
        try:
            claims = a.tokens.decode(body.token, expect="email_verify")
        except TokenError as e:
            raise HTTPException(400, f"verification token refused: {e}") from e
        if not claims.email:
            raise HTTPException(400, "verification token refused: it names no address")
        if not await a.claim_once(claims.jti, claims.seconds_left()):
            raise HTTPException(409, "this verification token was already used")
        if not await users.mark_email_verified(await a.pool(), claims.user_id, claims.email):
            raise HTTPException(400, "the account no longer has this email address")
        return {"email": claims.email, "email_verified": True}

    @router.post("/verify-email/resend", status_code=202)
    async def resend_verification(user: Annotated[User, Depends(current_user)]
                                  ) -> dict[str, Any]:
        """Mail a new verification link (at most one a minute)."""
        a = auth()
        row = await users.by_id(await a.pool(), user.user_id)
        if row is not None and row["email_verified"]:
            raise HTTPException(409, "this email address is already verified")
        key = f"rwa:auth:resend:{user.user_id}"
        if not await a.redis.set(key, "1", nx=True, ex=RESEND_INTERVAL_S):
            wait = max(1, await a.redis.ttl(key))
            raise HTTPException(429, f"a verification email was just sent; retry in {wait} s",
                                headers={"Retry-After": str(wait)})
        try:
            await send_verification(a, user.user_id, user.email)
        except DeliveryError as e:
            await a.redis.delete(key)
            raise HTTPException(503, f"the verification email could not be sent: {e}") from e
        return {"sent_to": user.email}

    @router.get("/me")
    async def me(s: Annotated[Session, Depends(session)]) -> dict[str, Any]:
        """The caller's account and what their tier allows."""
        a = auth()
        row = await users.by_id(await a.pool(), s.user.user_id)
        if row is None:
            raise unauthorized("the account of this token no longer exists")
        return users.public(row) | {"two_factor_enabled": row["totp_enabled"],
                                    "limits": a.limits(row["tier"]).model_dump()}

    return router


async def _check_code(a: Auth, row: Any, code: str, ip: str, *, status: int) -> None:
    """Accept a TOTP code once, counting failures against the account and the IP."""
    account = f"user:{row['user_id']}"
    locked = await a.totp_throttle.check(account, ip)
    if locked:
        raise _locked(locked)
    step = totp.matching_step(a.totp_secret(row), code)
    if step is None:
        await a.totp_throttle.failed(account, ip)
        raise HTTPException(status, "invalid TOTP code",
                            headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
    if not await totp.claim_step(a.redis, row["user_id"], step):
        await a.totp_throttle.failed(account, ip)
        raise HTTPException(status, "this TOTP code was already used; wait for the next one",
                            headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
    await a.totp_throttle.succeeded(account)


def admin_router(services: ServicesLike) -> APIRouter:
    """``/admin/…``: accounts and their tiers, for holders of the admin role (403 for
    everyone else)."""
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @router.get("/users")
    async def list_users(
        q: Annotated[str | None, Query(min_length=1, max_length=254,
                                       description="Part of the email")] = None,
        tier: Annotated[str | None, Query(max_length=40)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Accounts, oldest first: ``{items, total}``."""
        for name, value in (("q", q), ("tier", tier)):
            try:
                plain_text(value or "")
            except ValueError as e:
                raise HTTPException(422, f"{name} {e}") from e
        items, total = await users.search(await auth_for(services).pool(), q=q, tier=tier,
                                          limit=limit, offset=offset)
        return {"items": items, "total": total}

    @router.patch("/users/{user_id}")
    async def change_tier(body: TierChange,
                          user_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict[str, Any]:
        """Move an account to another tier; its limits change at its next request."""
        a = auth_for(services)
        if body.tier not in a.tiers:
            raise HTTPException(422, f"unknown tier {body.tier!r}; one of: "
                                     f"{', '.join(a.tiers)}")
        row = await users.set_tier(await a.pool(), user_id, body.tier)
        if row is None:
            raise HTTPException(404, f"no user {user_id}")
        await a.forget_user(user_id)
        return users.public(row)

    return router
