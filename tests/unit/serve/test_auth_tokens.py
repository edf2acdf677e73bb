"""Signed tokens (serve/auth/tokens.py): types, the algorithm allow-list, expiry,
issuer and audience."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from pydantic import SecretStr

from serve.auth.tokens import TokenCodec, TokenError

KEY = "unit-test-secret-" + "q" * 40
codec = TokenCodec(SecretStr(KEY), issuer="rwa-prime", audience="rwa-prime-api")
FAMILY = str(uuid.uuid4())


def raw(**override: object) -> dict:
    now = int(time.time())
    return {"iss": "rwa-prime", "aud": "rwa-prime-api", "sub": "7", "typ": "access",
            "iat": now, "exp": now + 60, "jti": "j1", "fam": FAMILY} | override


def test_round_trip() -> None:
    token = codec.issue(7, "access", ttl_s=60, family=FAMILY)
    claims = codec.decode(token, expect="access")
    assert (claims.user_id, claims.typ, claims.family) == (7, "access", FAMILY)
    assert 55 <= claims.seconds_left() <= 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    two = codec.issue(7, "access", ttl_s=60, family=FAMILY)
    assert codec.decode(two, expect="access").jti != claims.jti


def test_a_token_of_one_type_never_passes_for_another() -> None:
    temp = codec.issue(7, "2fa", ttl_s=60)
    with pytest.raises(TokenError, match="opens only POST /auth/verify-2fa"):
        codec.decode(temp, expect="access")
    email = codec.issue(7, "email_verify", ttl_s=60, email="a@example.com")
    assert codec.decode(email, expect="email_verify").email == "a@example.com"
    with pytest.raises(TokenError, match="not an access token"):
        codec.decode(email, expect="access")
    with pytest.raises(TokenError, match="not a 2FA temp token"):
        codec.decode(codec.issue(7, "access", ttl_s=60, family=FAMILY), expect="2fa")


# Tokens are made when each test runs, not at collection: in a long session an "exp" set
# at collection time passes before the test, and every case would fail as "expired".
@pytest.mark.parametrize(("make", "reason"), [
    (lambda: jwt.encode(raw(), None, algorithm="none"), "algorithm 'none'"),
    (lambda: jwt.encode(raw(), KEY, algorithm="HS384"), "algorithm 'HS384'"),
    (lambda: jwt.encode(raw(exp=int(time.time()) - 5), KEY, algorithm="HS256"), "expired"),
    (lambda: jwt.encode(raw(aud="other"), KEY, algorithm="HS256"), "another audience"),
    (lambda: jwt.encode(raw(iss="other"), KEY, algorithm="HS256"), "another issuer"),
    (lambda: jwt.encode(raw(), "x" * 40, algorithm="HS256"), "signature"),
    (lambda: jwt.encode({k: v for k, v in raw().items() if k != "jti"}, KEY,
                        algorithm="HS256"), "jti"),
    (lambda: jwt.encode({k: v for k, v in raw().items() if k != "typ"}, KEY,
                        algorithm="HS256"), "typ"),
    (lambda: jwt.encode(raw(sub="seven"), KEY, algorithm="HS256"), "bad subject"),
    (lambda: jwt.encode(raw(fam=None), KEY, algorithm="HS256"), "without a session family"),
    (lambda: "a.b", "malformed"),
    (lambda: "", "malformed"),
])
def test_refused_tokens(make, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        codec.decode(make(), expect="access")


@pytest.mark.parametrize("override", [
    {"fam": 5}, {"fam": {"a": 1}}, {"fam": ["x"]},  # were AttributeErrors: a 500
    {"sub": str(2**63)}, {"sub": "0"}, {"sub": "-3"},  # no such bigserial user id
])
def test_well_signed_tokens_with_odd_claims_are_refused(override: dict) -> None:
    """Found by fuzzing the API with tokens signed by its own key: a ``fam`` that is not
    a string crashed decoding instead of being refused."""
    with pytest.raises(TokenError, match="bad subject or family"):
        codec.decode(jwt.encode(raw(**override), KEY, algorithm="HS256"), expect="access")


def test_the_key_is_never_shown() -> None:
    assert KEY not in repr(codec) and KEY not in str(vars(codec).get("issuer"))


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified tokens are remembered (serve/auth/tokens.py); a repeat must still be
    refused once its exp has passed, without PyJWT looking at it again."""
    fresh = TokenCodec(SecretStr(KEY), issuer="rwa-prime", audience="rwa-prime-api")
    token = fresh.issue(7, "access", ttl_s=30, family=FAMILY)
    first = fresh.decode(token, expect="access")
    assert fresh.decode(token, expect="access") is first  # remembered, not re-verified
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 31)
    with pytest.raises(TokenError, match="expired"):
        fresh.decode(token, expect="access")
    assert not fresh._verified  # forgotten: the next try goes through PyJWT again


def test_a_remembered_token_does_not_pass_for_another_type() -> None:
    fresh = TokenCodec(SecretStr(KEY), issuer="rwa-prime", audience="rwa-prime-api")
    token = fresh.issue(7, "access", ttl_s=60, family=FAMILY)
    fresh.decode(token, expect="access")
    with pytest.raises(TokenError, match="not a 2FA temp token"):
        fresh.decode(token, expect="2fa")


def test_the_verified_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from serve.auth import tokens

    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    fresh = TokenCodec(SecretStr(KEY), issuer="rwa-prime", audience="rwa-prime-api")
    issued = [fresh.issue(i, "access", ttl_s=60, family=FAMILY) for i in range(1, 6)]
    for token in issued:
        fresh.decode(token, expect="access")
    assert sorted(t for t, _ in fresh._verified) == sorted(issued[-3:])
    assert fresh.decode(issued[0], expect="access").user_id == 1  # verified afresh
