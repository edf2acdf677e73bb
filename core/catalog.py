"""The asset catalog: the tokenized real-world assets RWA Prime knows about.

The catalog ships with the package as ``catalog.json`` (a JSON list, one object per
asset, in the shape of :class:`core.domain.Asset`). It holds real tokens: tokenized
Treasury and money market funds, gold and other commodities, private credit, real
estate and equities.

Conventions of the data:

* ``asset_id`` is a stable lowercase slug; ``symbol`` is the ticker as the issuer
  writes it (``bIB01``, ``XAUt``) or, where the on-chain symbol is longer than 20
  characters (RealT properties), a shortened form, with the full one kept under
  ``underlying_asset_details["onchain_symbol"]``.
* ``contract_address`` is on ``blockchain_network`` and only set where it was checked
  against independent public sources; otherwise ``None``. On EVM chains it is a
  ``0x`` address; on Solana a mint address; on Stellar the issuing account.
* ``reference_price`` is a typical USD price of one token (one share, one troy ounce
  of gold, one gram for Kinesis Gold), not a live quote.
* In ``underlying_asset_details``, ``kyc_required`` means minting or redeeming with
  the issuer needs identity checks; ``transfer_restricted`` means on-chain transfers
  are limited to allowlisted wallets. Keys are omitted where a fact is not known.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.domain import Asset
from core.errors import ConfigError

#: The catalog file shipped inside the ``core`` package.
CATALOG_PATH: Path = Path(__file__).parent / "catalog.json"


def validate_catalog(entries: Iterable[dict[str, Any]]) -> list[Asset]:
    """Validate raw catalog entries and check that every reference is unambiguous.

    Ids and symbols are compared case-insensitively, because lookups are. An id may
    equal its own asset's symbol (``buidl``/``BUIDL``) but not another asset's.

    Args:
        entries: Raw entries, each a mapping in the shape of ``Asset``.

    Returns:
        The validated assets, in input order.

    Raises:
        ConfigError: An entry is not a valid ``Asset``, or an id or symbol repeats or
            collides with another asset's id or symbol.
    """
    assets: list[Asset] = []
    owner: dict[str, str] = {}  # lowercase id or symbol -> asset_id that claims it
    for index, entry in enumerate(entries):
        try:
            asset = Asset.model_validate(entry)
        except ValidationError as e:
            ref = entry.get("asset_id", f"#{index}") if isinstance(entry, dict) else f"#{index}"
            raise ConfigError(f"catalog entry {ref!r} is invalid: {e}") from e
        id_key = asset.asset_id.lower()
        symbol_key = asset.symbol.lower()
        if id_key in owner:
            other = owner[id_key]
            what = "duplicate asset_id" if other == asset.asset_id else "asset_id collides with"
            raise ConfigError(f"catalog {what} {asset.asset_id!r} (also used by {other!r})")
        owner[id_key] = asset.asset_id
        if symbol_key in owner and owner[symbol_key] != asset.asset_id:
            raise ConfigError(
                f"catalog duplicate symbol {asset.symbol!r}: asset {asset.asset_id!r} "
                f"clashes with {owner[symbol_key]!r}"
            )
        owner[symbol_key] = asset.asset_id
        assets.append(asset)
    return assets


@cache
def _load(path: Path) -> tuple[Asset, ...]:
    """Read and validate a catalog file once per path.

    Args:
        path: The JSON file to read.

    Returns:
        The validated assets as an immutable tuple.

    Raises:
        ConfigError: The file is missing, is not a JSON list, or fails validation.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"asset catalog not found at {path}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"asset catalog {path} is not valid JSON: {e}") from e
    if not isinstance(raw, list):
        raise ConfigError(f"asset catalog {path} must be a JSON list, got {type(raw).__name__}")
    return tuple(validate_catalog(raw))


def load_catalog() -> list[Asset]:
    """Return every asset in the shipped catalog.

    The file is read and validated once; each call returns a new list of the same
    (frozen) ``Asset`` objects, so callers may reorder or filter it freely.

    Returns:
        The catalog's assets, in file order.

    Raises:
        ConfigError: The shipped catalog is missing or invalid.
    """
    return list(_load(CATALOG_PATH))


@cache
def _index() -> dict[str, Asset]:
    """Map each lowercase asset id and symbol to its asset."""
    index: dict[str, Asset] = {}
    for asset in _load(CATALOG_PATH):
        index[asset.asset_id.lower()] = asset
        index.setdefault(asset.symbol.lower(), asset)
    return index


def by_id_or_symbol(ref: str) -> Asset | None:
    """Find an asset by its id or its symbol, ignoring case and surrounding spaces.

    Args:
        ref: An asset id (``"buidl"``) or symbol (``"bIB01"``, ``"paxg"``).

    Returns:
        The matching asset, or ``None`` when nothing matches.

    Raises:
        ConfigError: The shipped catalog is missing or invalid.
    """
    return _index().get(ref.strip().lower())
