"""Signed tokens: access tokens, the 2FA temp token and email verification tokens.

All are JWTs signed with HS256, the only algorithm accepted (``alg: none`` and every
other algorithm are refused before the signature is looked at). Each carries ``iss``,
``aud``, ``exp``, ``iat``, ``sub`` (the user id), ``jti`` and ``typ``, all required; a
token of one ``typ`` never passes for another, so the temp token issued at login opens
nothing but ``/auth/verify-2fa``. Access tokens also carry ``fam``, the refresh-token
family of their login, which logout and reuse detection revoke.

Every API request checks its access token, and HMAC verification plus PyJWT's claim
checks cost more than the rest of a cached read; a codec remembers the claims of the
tokens it verified (a bounded LRU keyed by the exact token text), so a repeat needs only
its expiry checked. A token's text cannot change without its signature failing, and
revocation is not a property of the token: ``Auth`` checks it in Redis on every request.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cachetools import LRUCache
from pydantic import SecretStr

ALGORITHM = "HS256"
TokenType = Literal["access", "2fa", "email_verify"]

_WHAT = {"access": "an access token", "2fa": "a 2FA temp token",
         "email_verify": "an email verification token"}
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti", "typ"]
#: User ids are PostgreSQL bigserials.
_MAX_USER_ID = 2**63 - 1
#: Verified tokens a codec remembers: a replica's live sessions, several times over.
VERIFIED_CACHE_SIZE = 4096


class TokenError(Exception):
    """A token that must be refused; the message says why, for the client."""


@dataclass(frozen=True)
class Claims:
    user_id: int
    typ: TokenType
    jti: str
    expires_at: float
    family: str | None = None
    email: str | None = None

    def seconds_left(self) -> int:
        return max(1, int(self.expires_at - time.time()))


class TokenCodec:
    """Issues and checks tokens with one secret, issuer and audience."""

    def __init__(self, secret: SecretStr, *, issuer: str, audience: str) -> None:
        self._key = secret.get_secret_value()
        self.issuer = issuer
        self.audience = audience
        self._verified: LRUCache[tuple[str, str], Claims] = LRUCache(VERIFIED_CACHE_SIZE)

    def __repr__(self) -> str:  # never the key
        return f"TokenCodec(issuer={self.issuer!r}, audience={self.audience!r})"

    def issue(self, user_id: int, typ: TokenType, *, ttl_s: int, family: str | None = None,
              email: str | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": str(user_id), "typ": typ,
            "iat": now, "exp": now + ttl_s, "jti": secrets.token_urlsafe(16)}
        if family is not None:
            claims["fam"] = family
        if email is not None:
            claims["email"] = email
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def decode(self, token: str, *, expect: TokenType) -> Claims:
        """The claims of a valid token of type ``expect``.

        Raises:
            TokenError: Malformed, badly signed, another algorithm, expired, another
                issuer or audience, or another type of token.
        """
        key = (token, expect)
        known = self._verified.get(key)
        if known is not None:
            if known.expires_at <= time.time():  # PyJWT's rule: expired once exp <= now
                self._verified.pop(key, None)
                raise TokenError("token expired")
            return known
        claims = self._verified[key] = self._verify(token, expect=expect)
        return claims

    def _verify(self, token: str, *, expect: TokenType) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as e:
            raise TokenError("malformed token") from e
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"token algorithm {header.get('alg')!r} is not accepted")
        try:
            raw = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=self.issuer,
                             audience=self.audience, options={"require": _REQUIRED})
        except jwt.ExpiredSignatureError as e:
            raise TokenError("token expired") from e
        except jwt.InvalidAudienceError as e:
            raise TokenError("token is for another audience") from e
        except jwt.InvalidIssuerError as e:
            raise TokenError("token is from another issuer") from e
        except jwt.InvalidSignatureError as e:
            raise TokenError("token signature does not verify") from e
        except jwt.InvalidTokenError as e:
            raise TokenError(f"invalid token: {e}") from e
        typ = raw.get("typ")
        if typ != expect:
            if typ == "2fa":
                raise TokenError("a 2FA temp token opens only POST /auth/verify-2fa")
            raise TokenError(f"{_WHAT.get(typ, 'this token')} is not {_WHAT[expect]}")
        try:
            user_id = int(raw["sub"])
            if not 0 < user_id <= _MAX_USER_ID:
                raise ValueError(f"user id {user_id} out of range")
            family = raw.get("fam")
            if family is not None:
                # A well-signed token must still not crash decoding (a 500): a number or
                # an object here would reach uuid.UUID, which only parses strings.
                if not isinstance(family, str):
                    raise TypeError("fam is not a string")
                family = str(uuid.UUID(family))
        except (TypeError, ValueError) as e:
            raise TokenError("invalid token: bad subject or family") from e
        if typ == "access" and family is None:
            raise TokenError("invalid token: access token without a session family")
        return Claims(user_id=user_id, typ=typ, jti=str(raw["jti"]),
                      expires_at=float(raw["exp"]), family=family, email=raw.get("email"))
