"""Passwords: Argon2id hashes and the policy a new password must meet.

Hashing costs tens of milliseconds of CPU on purpose, so it runs in a worker thread
and never stalls the event loop. A hash made with other cost parameters than the
current ones verifies fine and is replaced at the next successful login.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 128
MIN_DISTINCT = 5

#: Passwords attackers try first (after the policy's normalisation: lower case, common
#: digit/symbol substitutions undone, leading and trailing digits and symbols dropped).
COMMON_PASSWORDS = frozenset({
    "password", "passwort", "motdepasse", "contrasena", "qwerty", "qwertz", "azerty",
    "qwertyuiop", "asdfghjkl", "zxcvbnm", "qazwsx", "zaqxsw", "qweasd", "letmein", "welcome",
    "iloveyou", "admin", "administrator", "root", "monkey", "dragon", "football", "baseball",
    "soccer", "hockey", "sunshine", "princess", "trustno", "master", "superman", "batman",
    "starwars", "whatever", "changeme", "default", "secret", "login", "hello", "freedom",
    "shadow", "michael", "jennifer", "jordan", "computer", "internet", "access", "passpass",
    "mustang", "charlie", "summer", "winter", "spring", "autumn", "pokemon", "liverpool",
    "chelsea", "arsenal", "cookie", "cheese", "bitcoin", "ethereum", "crypto",
    "cryptocurrency", "blockchain", "satoshi", "wallet", "token", "tokens", "rwaprime", "rwa",
    "prime", "investor", "investment", "money", "dollar", "treasury", "gold",
})

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                       "@": "a", "$": "s", "!": "i"})
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")


def password_problems(password: str, *, email: str | None = None) -> list[str]:
    """What is wrong with ``password`` as a new password; empty when it is acceptable."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters long "
                        f"(it has {len(password)})")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters long")
    classes = _classes(password)
    if password and len(classes) < 2:
        problems.append("must mix at least two kinds of characters (lower-case letters, "
                        f"upper-case letters, digits, symbols); it has only {classes[0]}")
    if password and len(set(password)) < MIN_DISTINCT:
        problems.append(f"must use at least {MIN_DISTINCT} different characters")
    lowered = password.lower()
    if email:
        local = email.lower().partition("@")[0]
        if lowered == email.lower() or (len(local) >= 4 and local in lowered):
            problems.append("must not contain your email address")
    if _is_common(lowered):
        problems.append("is too common: it is on the list of passwords attackers try first")
    return problems


def _classes(password: str) -> list[str]:
    found = {
        "lower-case letters": any(c.islower() for c in password),
        "upper-case letters": any(c.isupper() for c in password),
        "digits": any(c.isdigit() for c in password),
        "symbols": any(not c.isalnum() for c in password),
    }
    return [name for name, present in found.items() if present]


def _is_common(lowered: str) -> bool:
    if lowered in COMMON_PASSWORDS or lowered.isdigit():
        return True
    core = _EDGES.sub("", lowered)
    return core in COMMON_PASSWORDS or core.translate(_LEET) in COMMON_PASSWORDS


@dataclass(frozen=True)
class Verified:
    """The result of checking a password; ``new_hash`` is set when the stored hash
    used other parameters and should be replaced by this one."""

    ok: bool
    new_hash: str | None = None


class Passwords:
    """Argon2id with the configured cost."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                      parallelism=parallelism, type=Type.ID)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> Verified:
        return await asyncio.to_thread(self._verify, stored_hash, password)

    async def burn(self, password: str) -> None:
        """Spend what a verification costs, for logins naming no account, so their
        timing does not tell which emails have one."""
        if self._dummy is None:
            self._dummy = await self.hash("not a password anyone has")
        await self.verify(self._dummy, password)

    def _verify(self, stored_hash: str, password: str) -> Verified:
        try:
            self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verified(ok=False)
        if self._hasher.check_needs_rehash(stored_hash):
            return Verified(ok=True, new_hash=self._hasher.hash(password))
        return Verified(ok=True)
