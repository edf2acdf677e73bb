"""Which catalog tokens an EVM data provider can be asked about, and where.

On-chain providers address a token by (their chain id, contract address). The catalog
gives each asset's primary chain and, where verified, its contract; a provider's
``symbols`` setting can override both per asset as ``"<provider chain>:<address>"`` or
a bare address on the primary chain.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.domain import Asset

log = logging.getLogger(__name__)

EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True, slots=True)
class TokenTarget:
    """A catalog asset as one provider knows it.

    Attributes:
        chain: The catalog's chain name (``ethereum``).
        provider_chain: The provider's name for that chain (``ethereum-mainnet``).
        address: The contract, lower-case.
    """

    asset_id: str
    chain: str
    provider_chain: str
    address: str


def token_targets(assets: Sequence[Asset], symbols: Mapping[str, str],
                  chain_ids: Mapping[str, str], *, provider: str) -> list[TokenTarget]:
    """The assets ``provider`` can answer for, sorted by id.

    Args:
        symbols: ``asset_id`` → ``"<provider chain>:<address>"`` or a bare address.
        chain_ids: Catalog chain name → the provider's chain id, for the chains it covers.
    """
    names = {v: k for k, v in chain_ids.items()}
    out: list[TokenTarget] = []
    for asset in sorted(assets, key=lambda a: a.asset_id):
        ident = symbols.get(asset.asset_id)
        chain_id = chain_ids.get(asset.blockchain_network)
        address = ident or asset.contract_address or ""
        if ident and ":" in ident:
            chain_id, address = ident.split(":", 1)
        if chain_id and EVM_ADDRESS.match(address):
            out.append(TokenTarget(asset.asset_id, names.get(chain_id, asset.blockchain_network),
                                   chain_id, address.lower()))
        elif ident:
            log.warning("%s: ignoring symbol %r for %s", provider, ident, asset.asset_id)
    return out
