"""The risk score's types, weights and scales: what a score is made of and how it
explains itself. The methodology behind every number here is written down in
``docs/risk-methodology.md``; a test keeps the two in step.

A :class:`RiskScore` holds four :class:`SubScore` objects (market, credit, regulatory,
technical), each the sum of its :class:`Factor` points. Every factor has a maximum
number of points and the maxima of a sub-score add up to 100, so a sub-score is its
factors' points and lies in 0–100 by construction. The composite is the weighted
mean of the four sub-scores with :data:`COMPOSITE_WEIGHTS`. Higher means riskier.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np

#: Stored with every score; bump it when a factor, a scale or a weight changes.
METHODOLOGY_VERSION = "risk-1.0"
#: Where the methodology is written down, relative to the repository root.
METHODOLOGY_DOC = "docs/risk-methodology.md"

SubScoreName = Literal["market", "credit", "regulatory", "technical"]
SUB_SCORES: tuple[SubScoreName, ...] = get_args(SubScoreName)

MARKET_WEIGHT = 0.30
CREDIT_WEIGHT = 0.30
REGULATORY_WEIGHT = 0.20
TECHNICAL_WEIGHT = 0.20
#: Weights of the composite; they add up to 1.
COMPOSITE_WEIGHTS: Mapping[SubScoreName, float] = MappingProxyType({
    "market": MARKET_WEIGHT,
    "credit": CREDIT_WEIGHT,
    "regulatory": REGULATORY_WEIGHT,
    "technical": TECHNICAL_WEIGHT,
})

#: Maximum points of each factor, per sub-score; each sub-score's maxima add up to 100.
FACTOR_MAX_POINTS: Mapping[SubScoreName, Mapping[str, float]] = MappingProxyType({
    "market": MappingProxyType({
        "volatility": 30.0, "max_drawdown": 25.0, "liquidity": 25.0, "nav_premium": 20.0,
    }),
    "credit": MappingProxyType({
        "collateral_quality": 30.0, "legal_structure": 20.0, "custody": 10.0,
        "credit_events": 30.0, "nav_impairment": 10.0,
    }),
    "regulatory": MappingProxyType({
        "jurisdiction": 30.0, "legal_wrapper": 25.0, "access_controls": 20.0,
        "regulatory_news": 25.0,
    }),
    "technical": MappingProxyType({
        "upgradeability": 20.0, "audits": 25.0, "oracle_dependence": 15.0,
        "bridge_dependence": 15.0, "chain": 15.0, "security_incidents": 10.0,
    }),
})

#: Every factor name the scorer emits, in output order.
FACTOR_NAMES: tuple[str, ...] = tuple(n for s in SUB_SCORES for n in FACTOR_MAX_POINTS[s])

#: Score digits kept; sub-scores and the composite are computed from rounded points.
DIGITS = 2


def ramp(x: float, anchors: Sequence[tuple[float, float]]) -> float:
    """Piecewise-linear scale through ``anchors`` ``(x, fraction)``, flat beyond the ends.

    Anchors are sorted by ``x``; fractions lie in [0, 1]. Rising fractions give a scale
    that grows with ``x``, falling ones a scale that shrinks, and either way it is
    monotone, which is what makes each factor monotone in its input.
    """
    xs = [a[0] for a in anchors]
    ys = [a[1] for a in anchors]
    if not math.isfinite(x):
        raise ValueError(f"ramp of a non-finite value {x!r}")
    return float(np.interp(x, xs, ys))


@dataclass(frozen=True, slots=True)
class Factor:
    """One input to a sub-score: what was measured or looked up, and what it cost.

    Attributes:
        name: One of :data:`FACTOR_NAMES`.
        value: The measured or looked-up value (a number, a label, a flag); ``None``
            when unknown or not applicable.
        unit: The value's unit (``"fraction/yr"``, ``"USD"``, ``"label"``…).
        points: Points added to the sub-score, 0 to ``max_points``.
        max_points: The factor's ceiling, from :data:`FACTOR_MAX_POINTS`.
        evidence: The values and rule used, in words an investor can check.
        source: Where the value came from (a gold table, the catalog, news).
        assumed: The input was missing and the stated default was used instead.
    """

    name: str
    value: float | int | str | bool | list[str] | None
    unit: str
    points: float
    max_points: float
    evidence: str
    source: str
    assumed: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.points) and 0.0 <= self.points <= self.max_points):
            raise ValueError(
                f"factor {self.name}: points {self.points!r} outside 0–{self.max_points}")
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError(f"factor {self.name}: non-finite value {self.value!r}")

    def to_dict(self, weight: float) -> dict[str, Any]:
        """JSON-ready form; ``contribution`` is what the factor adds to the composite."""
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "points": self.points,
            "max_points": self.max_points,
            "contribution": round(self.points * weight, DIGITS),
            "evidence": self.evidence,
            "source": self.source,
            "assumed": self.assumed,
        }


def make_factor(sub: SubScoreName, name: str, fraction: float, *, value: Any, unit: str,
                evidence: str, source: str, assumed: bool = False) -> Factor:
    """A factor worth ``fraction`` of its maximum points (clipped to [0, 1])."""
    max_points = FACTOR_MAX_POINTS[sub][name]
    if not math.isfinite(fraction):
        raise ValueError(f"factor {name}: non-finite fraction {fraction!r}")
    points = round(min(1.0, max(0.0, fraction)) * max_points, DIGITS)
    if isinstance(value, float):
        value = round(value, 6)
    return Factor(name, value, unit, points, max_points, evidence, source, assumed)


@dataclass(frozen=True, slots=True)
class SubScore:
    """One of the four sub-scores: the sum of its factors' points, 0–100."""

    name: SubScoreName
    factors: tuple[Factor, ...]
    score: float = field(init=False)

    def __post_init__(self) -> None:
        expected = list(FACTOR_MAX_POINTS[self.name])
        got = [f.name for f in self.factors]
        if got != expected:
            raise ValueError(f"{self.name} sub-score needs factors {expected}, got {got}")
        total = round(sum(f.points for f in self.factors), DIGITS)
        object.__setattr__(self, "score", min(100.0, max(0.0, total)))

    @property
    def weight(self) -> float:
        return COMPOSITE_WEIGHTS[self.name]

    def summary(self) -> str:
        """One sentence naming the sub-score and its largest factors."""
        top = sorted((f for f in self.factors if f.points > 0), key=lambda f: -f.points)[:3]
        if not top:
            return f"{self.name} risk {self.score:g}/100: no factor adds points"
        parts = ", ".join(f"{f.name} {f.points:g}/{f.max_points:g}" for f in top)
        return f"{self.name} risk {self.score:g}/100, mostly from {parts}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "weight": self.weight,
            "contribution": round(self.score * self.weight, DIGITS),
            "summary": self.summary(),
            "factors": [f.to_dict(self.weight) for f in self.factors],
        }


def composite_of(sub_scores: Mapping[SubScoreName, SubScore]) -> float:
    """The weighted mean of the four sub-scores, rounded to :data:`DIGITS`."""
    total = sum(COMPOSITE_WEIGHTS[name] * sub_scores[name].score for name in SUB_SCORES)
    return round(min(100.0, max(0.0, total)), DIGITS)


@dataclass(frozen=True, slots=True)
class RiskScore:
    """An asset's composite risk score with the four sub-scores that explain it."""

    asset_id: str
    as_of: datetime
    market: SubScore
    credit: SubScore
    regulatory: SubScore
    technical: SubScore
    methodology_version: str = METHODOLOGY_VERSION
    composite: float = field(init=False)

    def __post_init__(self) -> None:
        for name in SUB_SCORES:
            if getattr(self, name).name != name:
                raise ValueError(f"sub-score {name} holds {getattr(self, name).name!r}")
        object.__setattr__(self, "composite", composite_of(self.sub_scores))

    @property
    def sub_scores(self) -> dict[SubScoreName, SubScore]:
        return {name: getattr(self, name) for name in SUB_SCORES}

    @property
    def factors(self) -> list[Factor]:
        return [f for s in self.sub_scores.values() for f in s.factors]

    def explanation(self) -> dict[str, Any]:
        """The JSON explanation stored beside the score (``risk_scores.explanation``).

        ``drivers`` are the three factors adding most to the composite;
        ``data_coverage`` is the share of factors measured rather than assumed.
        """
        weighted = sorted(
            ((f.points * s.weight, s.name, f) for s in self.sub_scores.values() for f in s.factors),
            key=lambda t: -t[0],
        )
        factors = self.factors
        assumed = [f.name for f in factors if f.assumed]
        return {
            "methodology_version": self.methodology_version,
            "methodology": METHODOLOGY_DOC,
            "as_of": self.as_of.isoformat(),
            "higher_is_riskier": True,
            "composite": {
                "score": self.composite,
                "formula": " + ".join(f"{COMPOSITE_WEIGHTS[n]:g}×{n}" for n in SUB_SCORES),
                "weights": dict(COMPOSITE_WEIGHTS),
            },
            "drivers": [
                {"sub_score": sub, "factor": f.name, "contribution": round(c, DIGITS),
                 "evidence": f.evidence}
                for c, sub, f in weighted[:3] if c > 0
            ],
            "data_coverage": round(1 - len(assumed) / len(factors), DIGITS),
            "assumed_factors": assumed,
            "sub_scores": {name: s.to_dict() for name, s in self.sub_scores.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """The row shape of ``risk_scores`` plus the explanation (JSON-ready but for time)."""
        return {
            "asset_id": self.asset_id,
            "composite_score": self.composite,
            "market_risk": self.market.score,
            "credit_risk": self.credit.score,
            "regulatory_risk": self.regulatory.score,
            "technical_risk": self.technical.score,
            "calculated_at": self.as_of,
            "methodology_version": self.methodology_version,
            "explanation": self.explanation(),
        }
