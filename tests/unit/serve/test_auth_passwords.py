"""The password policy and Argon2id hashing (serve/auth/passwords.py)."""

from __future__ import annotations

import pytest

from serve.auth.passwords import MAX_LENGTH, Passwords, password_problems

FAST = {"time_cost": 1, "memory_kib": 8192, "parallelism": 1}


@pytest.mark.parametrize("password", [
    "Tangerine-Harbor-42", "correct horse battery staple", "Xk9#mPq2vL7w", "ünïcödé-Pässwörd",
])
def test_good_passwords_pass(password: str) -> None:
    assert password_problems(password, email="ann@example.com") == []


@pytest.mark.parametrize(("password", "fragment"), [
    ("Ab1!Ab1!Ab1", "at least 12 characters long (it has 11)"),
    ("x" * (MAX_LENGTH + 1) + "A1", f"at most {MAX_LENGTH}"),
    ("alllowercaseletters", "it has only lower-case letters"),
    ("ALLUPPERCASELETTERS", "it has only upper-case letters"),
    ("318273645501928", "it has only digits"),
    ("!@#$%^&*()_+-=", "it has only symbols"),
    ("abababababababAB", "at least 5 different characters"),
    ("Password2024!", "too common"),
    ("P@ssw0rd-2024", "too common"),
    ("!!Bitcoin12345", "too common"),
    ("1234567890123", "too common"),
    ("qwertyuiop1234", "too common"),
])
def test_weak_passwords_are_refused_with_a_reason(password: str, fragment: str) -> None:
    problems = password_problems(password)
    assert any(fragment in p for p in problems), problems


def test_the_email_is_not_a_password() -> None:
    assert "must not contain your email address" in password_problems(
        "Ann.Lee@Example.com", email="ann.lee@example.com")
    assert "must not contain your email address" in password_problems(
        "my-ann.lee-Password9", email="ann.lee@example.com")
    # A short local part is not held against ordinary words.
    assert password_problems("Banjo-Stairway-77", email="jo@example.com") == []


def test_every_problem_is_reported_at_once() -> None:
    assert len(password_problems("aaaa")) == 3  # length, one kind, too few distinct


async def test_hash_verifies_and_is_argon2id() -> None:
    pw = Passwords(**FAST)
    stored = await pw.hash("Tangerine-Harbor-42")
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert (await pw.verify(stored, "Tangerine-Harbor-42")).ok
    assert not (await pw.verify(stored, "tangerine-harbor-42")).ok
    assert not (await pw.verify("not a hash", "Tangerine-Harbor-42")).ok
    assert stored != await pw.hash("Tangerine-Harbor-42")  # salted


async def test_a_hash_with_old_parameters_is_upgraded_on_verify() -> None:
    old = await Passwords(**FAST).hash("Tangerine-Harbor-42")
    current = Passwords(time_cost=2, memory_kib=16384, parallelism=1)
    result = await current.verify(old, "Tangerine-Harbor-42")
    assert result.ok and result.new_hash and "m=16384,t=2" in result.new_hash
    assert (await current.verify(result.new_hash, "Tangerine-Harbor-42")).new_hash is None
    assert (await current.verify(old, "wrong")).new_hash is None


async def test_burn_costs_a_verification_and_never_matches() -> None:
    pw = Passwords(**FAST)
    await pw.burn("anything")
    await pw.burn("not a password anyone has")
