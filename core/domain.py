"""Domain types shared by every layer: asset classes, catalog entries, price records."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

AssetClass = Literal[
    "treasury",
    "money_market",
    "gold",
    "commodity",
    "private_credit",
    "real_estate",
    "equity",
    "corporate_bond",
]
ASSET_CLASSES: tuple[str, ...] = get_args(AssetClass)

#: Classes whose token price is pinned to a net asset value that accrues yield.
NAV_PINNED_CLASSES: frozenset[str] = frozenset({"treasury", "money_market"})


class Asset(BaseModel):
    """One tokenized real-world asset as the catalog describes it.

    ``asset_id`` is a stable lowercase slug (``"buidl"``), the same in every
    environment, so the catalog loads idempotently and ids in URLs never change.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    asset_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,40}$")
    symbol: str = Field(min_length=1, max_length=20)
    name: str
    issuer: str
    asset_class: AssetClass
    blockchain_network: str = Field(description="Primary chain, e.g. 'ethereum'.")
    chains: list[str] = Field(min_length=1, description="Every chain the token is issued on.")
    contract_address: str | None = Field(
        default=None, description="On the primary chain; only where verified, else None."
    )
    reference_price: float = Field(gt=0, description="Typical USD price of one token.")
    apy: float | None = Field(default=None, description="Indicative yield, percent per year.")
    description: str = Field(description="The underlying asset and the legal structure.")
    underlying_asset_details: dict[str, Any] = Field(default_factory=dict)

    @property
    def nav_pinned(self) -> bool:
        return self.asset_class in NAV_PINNED_CLASSES


class PriceBar(BaseModel):
    """An OHLCV bar for one asset, the row shape of gold ``price_data``."""

    model_config = ConfigDict(frozen=True)

    time: datetime
    asset_id: str
    open: float
    high: float
    low: float
    close: float
    volume: float
