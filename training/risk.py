"""The composite risk score of a tokenized asset: 0–100, higher is riskier, from four
sub-scores (market, credit, regulatory, technical) that explain themselves factor by
factor. The methodology is ``docs/risk-methodology.md``.

:func:`score_asset` is pure: plain inputs (:class:`AssetRiskInputs`) in, a
:class:`RiskScore` out, the same every time for the same inputs, never NaN, whatever
is missing. :func:`recompute_risk`, :func:`latest_risk` and :func:`risk_history` read
gold and write or read ``risk_scores``.

The parts: :mod:`training.risk_model` (types, weights, factor maxima),
:mod:`training.risk_factors` (one function per factor), :mod:`training.risk_news`
(headlines as evidence), :mod:`training.risk_scoring` (one asset),
:mod:`training.risk_store` (PostgreSQL).
"""

from __future__ import annotations

from training.risk_model import (
    COMPOSITE_WEIGHTS,
    CREDIT_WEIGHT,
    FACTOR_MAX_POINTS,
    FACTOR_NAMES,
    MARKET_WEIGHT,
    METHODOLOGY_DOC,
    METHODOLOGY_VERSION,
    REGULATORY_WEIGHT,
    SUB_SCORES,
    TECHNICAL_WEIGHT,
    Factor,
    RiskScore,
    SubScore,
    SubScoreName,
    composite_of,
)
from training.risk_news import NewsItem, news_from_records
from training.risk_scoring import AssetRiskInputs, score_asset
from training.risk_store import latest_risk, latest_risks, recompute_risk, risk_history

__all__ = [
    "COMPOSITE_WEIGHTS", "CREDIT_WEIGHT", "FACTOR_MAX_POINTS", "FACTOR_NAMES", "MARKET_WEIGHT",
    "METHODOLOGY_DOC", "METHODOLOGY_VERSION", "REGULATORY_WEIGHT", "SUB_SCORES",
    "TECHNICAL_WEIGHT", "AssetRiskInputs", "Factor", "NewsItem", "RiskScore", "SubScore",
    "SubScoreName", "composite_of", "latest_risk", "latest_risks", "news_from_records",
    "recompute_risk",
    "risk_history", "score_asset",
]
