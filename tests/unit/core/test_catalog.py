"""Tests for the shipped asset catalog and its loader."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from core.catalog import CATALOG_PATH, by_id_or_symbol, load_catalog, validate_catalog
from core.domain import ASSET_CLASSES, NAV_PINNED_CLASSES, Asset
from core.errors import ConfigError

EVM_CHAINS = frozenset(
    {"ethereum", "polygon", "arbitrum", "avalanche", "base", "gnosis", "optimism", "bsc", "mantle"}
)
EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def _entry(**overrides: Any) -> dict[str, Any]:
    """A minimal valid raw catalog entry."""
    entry: dict[str, Any] = {
        "asset_id": "test-asset",
        "symbol": "TEST",
        "name": "Test Asset",
        "issuer": "Test Issuer",
        "asset_class": "treasury",
        "blockchain_network": "ethereum",
        "chains": ["ethereum"],
        "contract_address": None,
        "reference_price": 1.0,
        "apy": 4.0,
        "description": "A test entry.",
        "underlying_asset_details": {},
    }
    entry.update(overrides)
    return entry


def test_catalog_file_ships_next_to_the_module() -> None:
    assert CATALOG_PATH.name == "catalog.json"
    assert CATALOG_PATH.is_file()
    assert isinstance(json.loads(CATALOG_PATH.read_text(encoding="utf-8")), list)


def test_catalog_has_at_least_25_assets() -> None:
    assets = load_catalog()
    assert len(assets) >= 25
    assert all(isinstance(a, Asset) for a in assets)


def test_catalog_covers_the_main_asset_classes() -> None:
    classes = {a.asset_class for a in load_catalog()}
    assert len(classes) >= 5
    assert classes & {"treasury", "money_market"}
    assert {"gold", "private_credit", "real_estate"} <= classes
    assert classes <= set(ASSET_CLASSES)


def test_ids_and_symbols_are_unique_case_insensitively() -> None:
    assets = load_catalog()
    ids = [a.asset_id.lower() for a in assets]
    symbols = [a.symbol.lower() for a in assets]
    assert len(set(ids)) == len(ids)
    assert len(set(symbols)) == len(symbols)


def test_primary_chain_is_listed_in_chains() -> None:
    for asset in load_catalog():
        assert asset.blockchain_network == asset.blockchain_network.lower()
        assert asset.blockchain_network in asset.chains, asset.asset_id
        assert all(chain == chain.lower() for chain in asset.chains), asset.asset_id


def test_evm_contract_addresses_are_well_formed() -> None:
    checked = 0
    for asset in load_catalog():
        if asset.contract_address is None:
            continue
        if asset.blockchain_network in EVM_CHAINS:
            assert EVM_ADDRESS.fullmatch(asset.contract_address), asset.asset_id
            checked += 1
        else:
            assert not asset.contract_address.startswith("0x"), asset.asset_id
    assert checked > 0


def test_nav_pinned_assets_have_a_yield() -> None:
    pinned = [a for a in load_catalog() if a.asset_class in NAV_PINNED_CLASSES]
    assert pinned
    for asset in pinned:
        assert asset.nav_pinned
        assert asset.apy is not None and asset.apy > 0, asset.asset_id


def test_descriptions_and_prices_are_filled_in() -> None:
    for asset in load_catalog():
        assert asset.description.strip(), asset.asset_id
        assert asset.reference_price > 0, asset.asset_id


def test_load_catalog_returns_a_fresh_list_of_the_same_assets() -> None:
    first = load_catalog()
    first.clear()
    second = load_catalog()
    assert second
    assert second == load_catalog()


@pytest.mark.parametrize("ref", ["BUIDL", "buidl", "Buidl", "  buidl  "])
def test_lookup_by_symbol_or_id_ignores_case(ref: str) -> None:
    asset = by_id_or_symbol(ref)
    assert asset is not None
    assert asset.asset_id == "buidl"


def test_lookup_by_mixed_case_symbol() -> None:
    asset = by_id_or_symbol("BIB01")
    assert asset is not None
    assert asset.symbol == "bIB01"
    assert by_id_or_symbol("paxg") is by_id_or_symbol("PAXG")


def test_lookup_of_unknown_reference_is_none() -> None:
    assert by_id_or_symbol("no-such-asset") is None


def test_validate_catalog_accepts_a_valid_list() -> None:
    assets = validate_catalog([_entry(), _entry(asset_id="other", symbol="OTHER")])
    assert [a.asset_id for a in assets] == ["test-asset", "other"]


def test_duplicate_asset_id_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="duplicate asset_id"):
        validate_catalog([_entry(), _entry(symbol="OTHER")])


def test_duplicate_symbol_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="duplicate symbol"):
        validate_catalog([_entry(), _entry(asset_id="other", symbol="test")])


def test_id_colliding_with_another_symbol_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        validate_catalog([_entry(symbol="OTHER"), _entry(asset_id="other", symbol="X")])


def test_invalid_entry_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid"):
        validate_catalog([_entry(asset_class="crypto")])
