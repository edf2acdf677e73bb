"""TOTP steps (serve/auth/totp.py) and email address checks (serve/auth/users.py)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from serve.auth.totp import STEP_S, matching_step, new_secret, provisioning_uri
from serve.auth.users import normalize_email

NOW = 1_790_000_015.0  # inside a step, away from its edges


def test_codes_of_the_previous_current_and_next_step_match_their_step() -> None:
    secret = new_secret()
    totp = pyotp.TOTP(secret)
    step = int(NOW // STEP_S)
    for offset in (-1, 0, 1):
        code = totp.at(NOW + offset * STEP_S)
        assert matching_step(secret, code, now=NOW) == step + offset
    assert matching_step(secret, totp.at(NOW - 2 * STEP_S), now=NOW) is None
    assert matching_step(secret, totp.at(NOW + 2 * STEP_S), now=NOW) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "１２３４５６"])
def test_malformed_codes_match_nothing(code: str) -> None:
    assert matching_step(new_secret(), code, now=NOW) is None


def test_spaces_inside_a_code_are_ignored() -> None:
    secret = new_secret()
    code = pyotp.TOTP(secret).at(NOW)
    assert matching_step(secret, f"{code[:3]} {code[3:]}", now=NOW) is not None


def test_provisioning_uri_for_authenticator_apps() -> None:
    secret = new_secret()
    uri = provisioning_uri(secret, email="ann@example.com", issuer="RWA Prime")
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert parsed.path == "/RWA%20Prime:ann%40example.com"
    query = parse_qs(parsed.query)
    assert query["secret"] == [secret] and query["issuer"] == ["RWA Prime"]


@pytest.mark.parametrize(("raw", "normal"), [
    (" Ann.Lee@Example.COM ", "ann.lee@example.com"),
    ("o'brien+rwa@mail.example.co.uk", "o'brien+rwa@mail.example.co.uk"),
])
def test_good_emails_are_normalised(raw: str, normal: str) -> None:
    assert normalize_email(raw) == normal


@pytest.mark.parametrize(("raw", "fragment"), [
    ("", "empty"),
    ("ann", "one @"),
    ("@example.com", "one @"),
    ("ann@", "one @"),
    (".ann@example.com", "before @"),
    ("an n@example.com", "before @"),
    ("a" * 65 + "@example.com", "before @"),
    ("ann@example", "domain"),
    ("ann@-example.com", "domain"),
    ("ann@example..com", "domain"),
    ("ann@1.2.3.4", "domain"),
    ("ann@example.com" + "m" * 250, "longer than 254"),
])
def test_bad_emails_say_what_is_wrong(raw: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        normalize_email(raw)


def test_a_sealed_secret_opens_for_its_account_with_its_key_only() -> None:
    from serve.auth.totp import SEALED_PREFIX, SealedSecretError, SecretBox

    box = SecretBox("k" * 40)
    secret = new_secret()
    sealed = box.seal(secret, user_id=7)
    assert sealed.startswith(SEALED_PREFIX) and secret not in sealed
    assert box.seal(secret, user_id=7) != sealed  # a fresh nonce each time
    assert box.open(sealed, user_id=7) == secret
    assert SecretBox("k" * 40).open(sealed, user_id=7) == secret  # the same key, rebuilt
    with pytest.raises(SealedSecretError):  # moved to another account's row
        box.open(sealed, user_id=8)
    with pytest.raises(SealedSecretError):
        SecretBox("j" * 40).open(sealed, user_id=7)
    with pytest.raises(SealedSecretError):  # the JWT-derived key is another key
        SecretBox("k" * 40, purpose="totp-secrets-jwt").open(sealed, user_id=7)
    altered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealedSecretError):
        box.open(altered, user_id=7)
    with pytest.raises(SealedSecretError):
        box.open(SEALED_PREFIX + "not base64!", user_id=7)


def test_a_secret_stored_before_sealing_reads_as_it_is() -> None:
    from serve.auth.totp import SecretBox

    secret = new_secret()
    assert SecretBox("k" * 40).open(secret, user_id=7) == secret
