"""Scoring one asset: :class:`AssetRiskInputs` in, :class:`~training.risk_model.RiskScore`
out. Pure and deterministic; see :mod:`training.risk` for the public entry points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.domain import Asset
from training import risk_factors as f
from training.risk_model import RiskScore, SubScore
from training.risk_news import NewsItem, Signal, signals


@dataclass(frozen=True)
class AssetRiskInputs:
    """Everything one asset's score is computed from; any series may be empty.

    Attributes:
        asset: The catalog entry (class, chains, ``underlying_asset_details``).
        as_of: The score's time; news after it is ignored.
        daily_closes: Last close of each UTC day, oldest first (up to a year).
        daily_dollar_volume: USD traded per day (token volume × close), oldest first.
        dex_liquidity_usd: The latest DEX liquidity in USD, ``None`` when unknown.
        nav_premium: ``close / NAV − 1`` per day where both are known, oldest first.
        nav: The published NAV per day, oldest first.
        news: Stories to read for events; ``None`` means no news input at all (said
            so in the explanation), an empty sequence that none was found.
        price_source: Where the closes and volumes came from, for the evidence.
        onchain_source: Where liquidity and NAV came from, for the evidence.
    """

    asset: Asset
    as_of: datetime
    daily_closes: Sequence[float] = ()
    daily_dollar_volume: Sequence[float] = ()
    dex_liquidity_usd: float | None = None
    nav_premium: Sequence[float] = ()
    nav: Sequence[float] = ()
    news: Sequence[NewsItem] | None = None
    price_source: str = "price series"
    onchain_source: str = "on-chain series"


def score_asset(inputs: AssetRiskInputs) -> RiskScore:
    """Score one asset from its inputs.

    Returns:
        The risk score: four sub-scores in 0–100, each the sum of its factors' points,
        and their weighted composite.
    """
    asset, as_of = inputs.asset, inputs.as_of
    news_known = inputs.news is not None
    found = signals(inputs.news or (), asset_id=asset.asset_id, as_of=as_of)

    def kind(name: str) -> list[Signal]:
        return [s for s in found if s.kind == name]

    market = SubScore("market", (
        f.volatility(asset, inputs.daily_closes, source=inputs.price_source),
        f.max_drawdown(asset, inputs.daily_closes, source=inputs.price_source),
        f.liquidity(asset, inputs.daily_dollar_volume, inputs.dex_liquidity_usd,
                    kind("redemption_halt"), as_of=as_of, price_source=inputs.price_source,
                    onchain_source=inputs.onchain_source),
        f.nav_premium(asset, inputs.nav_premium, source=inputs.onchain_source),
    ))
    credit = SubScore("credit", (
        f.collateral_quality(asset),
        f.legal_structure(asset),
        f.custody(asset),
        f.credit_events(kind("credit_event"), news_known),
        f.nav_impairment(asset, inputs.nav, source=inputs.onchain_source),
    ))
    regulatory = SubScore("regulatory", (
        f.jurisdiction(asset),
        f.legal_wrapper(asset),
        f.access_controls(asset),
        f.regulatory_news(kind("regulatory_negative"), kind("regulatory_positive"), news_known),
    ))
    technical = SubScore("technical", (
        f.upgradeability(asset),
        f.audits(asset, kind("audit"), news_known),
        f.oracle_dependence(asset),
        f.bridge_dependence(asset),
        f.chain(asset),
        f.security_incidents(kind("security_incident"), news_known),
    ))
    return RiskScore(asset.asset_id, as_of, market, credit, regulatory, technical)
