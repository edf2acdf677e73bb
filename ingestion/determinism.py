"""What the simulated sources share to stay deterministic and realistic: seeded random
streams that are stable across processes, UTC time helpers, and catalog size lookups."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

#: Keys of ``underlying_asset_details`` that give a token's market size in USD.
SIZE_KEYS: tuple[str, ...] = ("market_cap_usd", "aum_usd", "tvl_usd", "market_cap", "aum", "tvl")


def stable_rng(*parts: object) -> np.random.Generator:
    """A generator that depends only on ``parts``, stable across processes and runs.

    Seeded from a SHA-256 of the parts joined by ``:``, never Python's ``hash()``, which
    is salted per process.
    """
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def require_aware(t: datetime, name: str) -> datetime:
    """``t`` in UTC; naive times are refused rather than guessed."""
    if t.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return t.astimezone(UTC)


def positive_detail(details: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    """The first positive number among ``details[key]`` for ``keys``, else None."""
    for key in keys:
        value = details.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None
