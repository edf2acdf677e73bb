"""The factors of the four risk sub-scores, each a pure function of plain inputs.

Every function returns a :class:`~training.risk_model.Factor` whose points rise (or
fall) monotonically with its input, whose evidence states the values and rule used,
and which falls back to a stated default, flagged ``assumed``, where data is missing.
Scales and tables are the constants below; ``docs/risk-methodology.md`` lists them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from core.domain import Asset
from training.risk_model import Factor, SubScoreName, make_factor, ramp
from training.risk_news import (
    NEWS_WINDOW_DAYS,
    REDEMPTION_HALT_DAYS,
    Signal,
    evidence_list,
    saturating,
)

CATALOG = "catalog"
NEWS = "news"
#: Share of favourable regulatory news weight (approvals, licences) that offsets the negative.
OFFSET_SHARE = 0.5

# -- market -----------------------------------------------------------------------------

#: Days of closes the volatility looks at, and the fewest daily returns it needs.
VOLATILITY_WINDOW_DAYS = 90
MIN_RETURNS = 14
#: Tokens trade every day, so daily volatility is annualised with 365 days.
DAYS_PER_YEAR = 365
#: Annualised volatility → fraction of the volatility factor's points.
VOLATILITY_SCALE = (
    (0.0, 0.0), (0.02, 0.10), (0.10, 0.35), (0.25, 0.65), (0.50, 0.90), (0.80, 1.0),
)
#: Days of closes the drawdown looks at, and the fewest closes it needs.
DRAWDOWN_WINDOW_DAYS = 365
MIN_CLOSES = 15
#: Maximum drawdown (a fraction of the peak) → fraction of points.
DRAWDOWN_SCALE = (
    (0.0, 0.0), (0.01, 0.10), (0.05, 0.30), (0.15, 0.60), (0.35, 0.90), (0.60, 1.0),
)
#: Days of dollar volume whose median is the traded-volume measure.
VOLUME_WINDOW_DAYS = 30
#: log10(secondary liquidity in USD) → fraction of points (falls as liquidity grows).
LIQUIDITY_SCALE = ((3.0, 1.0), (4.0, 0.85), (5.0, 0.60), (6.0, 0.30), (7.0, 0.0))
#: NAV-pinned funds redeem at NAV with the issuer: their secondary-market points are scaled.
NAV_REDEMPTION_RELIEF = 0.5
#: Days of premium to NAV averaged.
PREMIUM_WINDOW_DAYS = 30
#: Mean absolute premium/discount to NAV (fraction) → fraction of points.
PREMIUM_SCALE = ((0.0, 0.0), (0.001, 0.10), (0.005, 0.40), (0.02, 0.80), (0.05, 1.0))
#: Premium assumed for a NAV-pinned fund with no NAV data.
DEFAULT_NAV_PREMIUM = 0.0025

#: Class defaults where prices are too few: (annualised volatility, maximum drawdown).
CLASS_MARKET_DEFAULTS: Mapping[str, tuple[float, float]] = {
    "money_market": (0.005, 0.001),
    "treasury": (0.01, 0.002),
    "gold": (0.15, 0.15),
    "commodity": (0.25, 0.25),
    "private_credit": (0.05, 0.03),
    "real_estate": (0.15, 0.15),
    "equity": (0.40, 0.35),
    "corporate_bond": (0.06, 0.08),
}


def _clean(values: Sequence[float | None], *, positive: bool = False) -> np.ndarray:
    """The finite values (and only positive ones if asked), order kept; None dropped."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    keep = np.isfinite(arr)
    if positive:
        keep &= arr > 0
    return arr[keep]


def _pct(x: float) -> str:
    return f"{x * 100:.2f} %"


def _share(fraction: float) -> str:
    return f"{min(1.0, max(0.0, fraction)):.0%} of the points"


def volatility(asset: Asset, closes: Sequence[float], *, source: str) -> Factor:
    prices = _clean(closes, positive=True)[-(VOLATILITY_WINDOW_DAYS + 1):]
    returns = np.diff(np.log(prices)) if len(prices) > 1 else np.array([])
    if len(returns) >= MIN_RETURNS:
        vol = float(np.std(returns, ddof=1) * math.sqrt(DAYS_PER_YEAR))
        return make_factor(
            "market", "volatility", ramp(vol, VOLATILITY_SCALE), value=vol, unit="fraction/yr",
            evidence=(f"annualised volatility of {len(returns)} daily log returns "
                      f"(last {VOLATILITY_WINDOW_DAYS} days) = {_pct(vol)}"),
            source=source)
    vol = CLASS_MARKET_DEFAULTS[asset.asset_class][0]
    return make_factor(
        "market", "volatility", ramp(vol, VOLATILITY_SCALE), value=vol, unit="fraction/yr",
        evidence=(f"only {len(returns)} daily returns (need {MIN_RETURNS}): unknown → treated as "
                  f"the {asset.asset_class} class default of {_pct(vol)}"),
        source=f"{source}; class default", assumed=True)


def max_drawdown(asset: Asset, closes: Sequence[float], *, source: str) -> Factor:
    prices = _clean(closes, positive=True)[-DRAWDOWN_WINDOW_DAYS:]
    if len(prices) >= MIN_CLOSES:
        peaks = np.maximum.accumulate(prices)
        drawdowns = 1.0 - prices / peaks
        worst = int(np.argmax(drawdowns))
        dd = float(drawdowns[worst])
        peak_at = int(np.argmax(prices[: worst + 1]))
        return make_factor(
            "market", "max_drawdown", ramp(dd, DRAWDOWN_SCALE), value=dd, unit="fraction",
            evidence=(f"largest fall from a peak over {len(prices)} daily closes = {_pct(dd)} "
                      f"(from {prices[peak_at]:.6g} to {prices[worst]:.6g})"),
            source=source)
    dd = CLASS_MARKET_DEFAULTS[asset.asset_class][1]
    return make_factor(
        "market", "max_drawdown", ramp(dd, DRAWDOWN_SCALE), value=dd, unit="fraction",
        evidence=(f"only {len(prices)} daily closes (need {MIN_CLOSES}): unknown → treated as "
                  f"the {asset.asset_class} class default of {_pct(dd)}"),
        source=f"{source}; class default", assumed=True)


def liquidity(asset: Asset, dollar_volumes: Sequence[float], dex_liquidity_usd: float | None,
              halts: Sequence[Signal], *, as_of: datetime, price_source: str,
              onchain_source: str) -> Factor:
    """Secondary-market liquidity: the larger of DEX depth and median daily dollar volume.

    A redemption halt in the news within :data:`REDEMPTION_HALT_DAYS` sets the factor to
    its maximum whatever the measured liquidity.
    """
    volumes = _clean(dollar_volumes)[-VOLUME_WINDOW_DAYS:]
    volumes = volumes[volumes >= 0]
    median_volume = float(np.median(volumes)) if len(volumes) else None
    dex = dex_liquidity_usd if dex_liquidity_usd is not None and math.isfinite(dex_liquidity_usd) \
        and dex_liquidity_usd >= 0 else None
    measures = [m for m in (dex, median_volume) if m is not None]
    sources = ([onchain_source] if dex is not None else []) + (
        [price_source] if median_volume is not None else [])
    assumed = not measures
    usd = max(measures) if measures else 0.0
    fraction = ramp(math.log10(max(usd, 1.0)), LIQUIDITY_SCALE)
    parts = []
    if dex is not None:
        parts.append(f"DEX liquidity ${dex:,.0f}")
    if median_volume is not None:
        parts.append(f"median daily volume ${median_volume:,.0f} over {len(volumes)} days")
    evidence = (" vs ".join(parts) + f" → ${usd:,.0f} of secondary liquidity") if parts else \
        "no DEX liquidity or volume data: unknown → treated as $0 of secondary liquidity"
    if asset.nav_pinned:
        fraction *= NAV_REDEMPTION_RELIEF
        evidence += (f"; {asset.asset_class} funds redeem at NAV with the issuer, so points × "
                     f"{NAV_REDEMPTION_RELIEF:g}")
    recent_halts = [s for s in halts if s.kind == "redemption_halt"
                    and (as_of - s.item.time).total_seconds() <= REDEMPTION_HALT_DAYS * 86400]
    if recent_halts:
        fraction = 1.0
        evidence += ("; redemptions halted per news → maximum points: "
                     + evidence_list(recent_halts))
        sources.append(NEWS)
    return make_factor("market", "liquidity", fraction, value=round(usd, 2), unit="USD",
                       evidence=evidence, source=", ".join(sources) or "none", assumed=assumed)


def nav_premium(asset: Asset, premiums: Sequence[float], *, source: str) -> Factor:
    values = _clean(premiums)[-PREMIUM_WINDOW_DAYS:]
    if len(values):
        mean_abs = float(np.mean(np.abs(values)))
        latest = float(values[-1])
        return make_factor(
            "market", "nav_premium", ramp(mean_abs, PREMIUM_SCALE), value=mean_abs, unit="fraction",
            evidence=(f"mean absolute premium/discount of price to NAV over {len(values)} days = "
                      f"{_pct(mean_abs)} (latest {latest * 100:+.2f} %, widest "
                      f"{float(values[np.argmax(np.abs(values))]) * 100:+.2f} %)"),
            source=source)
    if asset.nav_pinned:
        return make_factor(
            "market", "nav_premium", ramp(DEFAULT_NAV_PREMIUM, PREMIUM_SCALE),
            value=DEFAULT_NAV_PREMIUM, unit="fraction",
            evidence=(f"no days with both a close and a NAV: unknown → treated as "
                      f"{_pct(DEFAULT_NAV_PREMIUM)}"),
            source=f"{source}; default", assumed=True)
    return make_factor(
        "market", "nav_premium", 0.0, value=None, unit="fraction",
        evidence=(f"not applicable: {asset.asset_class} tokens publish no NAV (their price tracks "
                  "the underlying's market price) → 0 points"),
        source=CATALOG)


# -- credit -----------------------------------------------------------------------------

#: Collateral quality by asset class: (fraction of points, label).
COLLATERAL_BY_CLASS: Mapping[str, tuple[float, str]] = {
    "money_market": (0.08, "government securities and repo (money market fund)"),
    "treasury": (0.10, "short-term government securities"),
    "gold": (0.20, "allocated physical gold"),
    "commodity": (0.25, "physical commodity or commodity ETF"),
    "equity": (0.35, "listed equities or equity ETF"),
    "corporate_bond": (0.50, "corporate bonds"),
    "real_estate": (0.60, "real-estate interests"),
    "private_credit": (0.75, "private loans"),
}
#: Within a class, the first keyword found in the ``underlying`` text overrides the class value.
COLLATERAL_KEYWORDS: Mapping[str, tuple[tuple[str, float, str], ...]] = {
    "private_credit": (
        ("aaa", 0.45, "AAA-rated tranches"),
        ("overcollateral", 0.60, "overcollateralised loans"),
        ("senior", 0.65, "senior loans"),
    ),
    "treasury": (("bank demand deposits", 0.15, "Treasuries and bank deposits"),),
}

#: Legal structure categories, tried in order on ``legal_structure`` (lowercase; a
#: keyword matches at the start of a word):
#: (category, keywords, credit fraction, regulatory fraction).
LEGAL_CATEGORIES: tuple[tuple[str, tuple[str, ...], float, float], ...] = (
    ("registered_fund", ("investment company act", "ucits", "registered under"), 0.10, 0.10),
    ("regulated_trust", ("regulated trust", "trust company"), 0.15, 0.20),
    ("onchain_pool", ("lending pool", "protocol", "vault"), 0.75, 0.80),
    ("spv_or_note", ("spv", "bankruptcy-remote", "note", "certificate", "tracker"), 0.40, 0.50),
    ("equity_interest", ("llc", "membership interest", "security token", "equity of"), 0.50, 0.45),
    ("private_fund", ("fund",), 0.30, 0.35),
    ("title_to_asset", ("token representing", "allocated"), 0.35, 0.45),
)
#: A structure matching no keyword, and a missing one.
OTHER_LEGAL = (0.50, 0.60)
UNKNOWN_LEGAL = (0.60, 0.70)

#: Keys naming a third party that holds or polices the collateral.
CUSTODY_KEYS = ("custodian", "collateral_agent", "trustee")
#: Custody factor: fraction with no named third party; relief for one, and for attestations.
NO_CUSTODIAN = 1.0
CUSTODIAN_RELIEF = 0.6
ATTESTATION_RELIEF = 0.2

#: Largest NAV fall from its running peak (fraction) → fraction of points.
NAV_IMPAIRMENT_SCALE = ((0.0005, 0.0), (0.001, 0.20), (0.01, 0.70), (0.05, 1.0))


def _details(asset: Asset) -> Mapping[str, Any]:
    return asset.underlying_asset_details


def collateral_quality(asset: Asset) -> Factor:
    fraction, label = COLLATERAL_BY_CLASS[asset.asset_class]
    underlying = str(_details(asset).get("underlying") or "")
    rule = f"class {asset.asset_class}"
    for keyword, value, kw_label in COLLATERAL_KEYWORDS.get(asset.asset_class, ()):
        if keyword in underlying.lower():
            fraction, label = value, kw_label
            rule = f"class {asset.asset_class}, keyword “{keyword}”"
            break
    shown = f"“{underlying}”" if underlying else "not described (class value used)"
    return make_factor(
        "credit", "collateral_quality", fraction, value=label, unit="label",
        evidence=f"underlying {shown} → {label} ({rule}) = {_share(fraction)}",
        source=CATALOG)


def legal_category(asset: Asset) -> tuple[str, float, float, str | None]:
    """The legal structure's category and its credit and regulatory fractions."""
    text = _details(asset).get("legal_structure")
    if not isinstance(text, str) or not text.strip():
        return "unknown", *UNKNOWN_LEGAL, None
    lowered = text.lower()
    for category, keywords, credit, regulatory in LEGAL_CATEGORIES:
        # A word's start must match ("note", not the end of "Hashnote"); plurals pass.
        if any(re.search(r"\b" + re.escape(k), lowered) for k in keywords):
            return category, credit, regulatory, text
    return "other", *OTHER_LEGAL, text


def _legal_factor(asset: Asset, sub_score: SubScoreName, name: str, *, reading: str) -> Factor:
    """A factor read off the legal structure's category: its credit fraction for the
    credit sub-score, its regulatory one for the regulatory (see :func:`legal_category`)."""
    category, credit, regulatory, text = legal_category(asset)
    fraction = regulatory if sub_score == "regulatory" else credit
    if text is None:
        evidence = f"legal structure not stated: unknown → treated as {_share(fraction)}"
    else:
        evidence = f"“{text}” → {category} = {_share(fraction)} ({reading})"
    return make_factor(sub_score, name, fraction, value=category, unit="label",
                       evidence=evidence, source=CATALOG, assumed=text is None)


def legal_structure(asset: Asset) -> Factor:
    return _legal_factor(asset, "credit", "legal_structure", reading="issuer/wrapper credit")


def custody(asset: Asset) -> Factor:
    details = _details(asset)
    named = [(k, str(details[k])) for k in CUSTODY_KEYS if details.get(k)]
    attestation = details.get("attestation")
    fraction = NO_CUSTODIAN
    parts = []
    if named:
        fraction -= CUSTODIAN_RELIEF
        parts.append("; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in named))
    else:
        parts.append("no custodian, collateral agent or trustee named in the catalog: "
                     "unknown → treated as none")
    if attestation:
        fraction -= ATTESTATION_RELIEF
        parts.append(f"attestation: {attestation}")
    value = ", ".join(v for _, v in named) or None
    return make_factor("credit", "custody", fraction, value=value, unit="label",
                       evidence="; ".join(parts) + f" → {_share(fraction)}",
                       source=CATALOG, assumed=not named)


def _news_factor(sub: SubScoreName, name: str, found: Sequence[Signal], news_known: bool, *,
                 what: str, offset: Sequence[Signal] = ()) -> Factor:
    """Points 1 − e^(−w) for the decayed weight w of ``found``, less half of ``offset``'s."""
    if not news_known:
        return make_factor(sub, name, 0.0, value=None, unit="events",
                           evidence=f"no news input: unknown → treated as no {what}",
                           source=NEWS, assumed=True)
    negative = sum(s.weight for s in found)
    positive = sum(s.weight for s in offset)
    net = max(0.0, negative - OFFSET_SHARE * positive)
    if not found:
        evidence = f"no {what} in the news of the last {NEWS_WINDOW_DAYS:g} days"
    else:
        evidence = (f"{len(found)} {what} (decayed weight {negative:.2f}"
                    + (f", less {OFFSET_SHARE:g} × {positive:.2f} from favourable news"
                       if offset else "")
                    + f") → 1 − e^(−{net:.2f}) = {saturating(net):.0%} of the points: "
                    + evidence_list(found))
    if offset:
        evidence += "; favourable: " + evidence_list(offset)
    return make_factor(sub, name, saturating(net), value=len(found), unit="events",
                       evidence=evidence, source=NEWS)


def credit_events(found: Sequence[Signal], news_known: bool) -> Factor:
    return _news_factor("credit", "credit_events", found, news_known,
                        what="default, impairment, missed-payment or downgrade headlines")


def nav_impairment(asset: Asset, navs: Sequence[float], *, source: str) -> Factor:
    values = _clean(navs, positive=True)
    if not asset.nav_pinned:
        return make_factor("credit", "nav_impairment", 0.0, value=None, unit="fraction",
                           evidence=(f"not applicable: {asset.asset_class} tokens have no NAV "
                                     "→ 0 points"),
                           source=CATALOG)
    if len(values) < 2:
        return make_factor("credit", "nav_impairment", 0.0, value=None, unit="fraction",
                           evidence=(f"{len(values)} NAV values (need 2): unknown → treated as "
                                     "no NAV decline"),
                           source=f"{source}; default", assumed=True)
    fall = float(np.max(1.0 - values / np.maximum.accumulate(values)))
    return make_factor(
        "credit", "nav_impairment", ramp(fall, NAV_IMPAIRMENT_SCALE), value=fall, unit="fraction",
        evidence=(f"largest NAV fall from its running peak over {len(values)} days = {_pct(fall)} "
                  "(a fund's NAV should not fall; falls under 0.05 % are rounding)"),
        source=source)


# -- regulatory -------------------------------------------------------------------------

#: Jurisdiction tiers: (fraction of points, places), matched as substrings, first tier first.
JURISDICTION_TIERS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (0.15, ("united states", "france", "germany", "luxembourg", "ireland", "netherlands",
            "united kingdom", "switzerland", "singapore", "liechtenstein")),
    (0.30, ("jersey", "guernsey", "bermuda", "hong kong", "abu dhabi", "dubai")),
    (0.50, ("british virgin islands", "cayman islands", "bahamas", "panama", "seychelles")),
)
OTHER_JURISDICTION = 0.50
UNKNOWN_JURISDICTION = 0.70

#: (kyc_required, transfer_restricted) → fraction; unknown KYC counts as no KYC and
#: unknown transfer restriction as unrestricted.
ACCESS_FRACTIONS: Mapping[tuple[bool, bool], float] = {
    (True, True): 0.10,
    (True, False): 0.40,
    (False, True): 0.60,
    (False, False): 0.90,
}


def jurisdiction(asset: Asset) -> Factor:
    place = _details(asset).get("jurisdiction")
    if not isinstance(place, str) or not place.strip():
        return make_factor("regulatory", "jurisdiction", UNKNOWN_JURISDICTION, value=None,
                           unit="label",
                           evidence=("jurisdiction not stated: unknown → treated as "
                                     f"{_share(UNKNOWN_JURISDICTION)}"),
                           source=CATALOG, assumed=True)
    lowered = place.lower()
    for tier, (fraction, places) in enumerate(JURISDICTION_TIERS, start=1):
        if any(p in lowered for p in places):
            return make_factor("regulatory", "jurisdiction", fraction, value=place, unit="label",
                               evidence=f"{place}: tier {tier} → {_share(fraction)}",
                               source=CATALOG)
    return make_factor("regulatory", "jurisdiction", OTHER_JURISDICTION, value=place, unit="label",
                       evidence=f"{place}: not in the tier table → {_share(OTHER_JURISDICTION)}",
                       source=CATALOG)


def legal_wrapper(asset: Asset) -> Factor:
    return _legal_factor(asset, "regulatory", "legal_wrapper", reading="regulatory clarity")


def access_controls(asset: Asset) -> Factor:
    details = _details(asset)
    kyc, restricted = details.get("kyc_required"), details.get("transfer_restricted")
    notes = []
    if not isinstance(kyc, bool):
        notes.append("KYC unknown → treated as not required")
    if not isinstance(restricted, bool):
        notes.append("transfer restriction unknown → treated as unrestricted")
    key = (kyc is True, restricted is True)
    fraction = ACCESS_FRACTIONS[key]
    label = (("KYC" if key[0] else "no KYC") + ", "
             + ("allowlisted transfers" if key[1] else "free transfers"))
    evidence = f"{label} → {_share(fraction)}" + (f" ({'; '.join(notes)})" if notes else "")
    return make_factor("regulatory", "access_controls", fraction, value=label, unit="label",
                       evidence=evidence, source=CATALOG, assumed=bool(notes))


def regulatory_news(negative: Sequence[Signal], positive: Sequence[Signal],
                    news_known: bool) -> Factor:
    return _news_factor("regulatory", "regulatory_news", negative, news_known,
                        what="enforcement, probe or lawsuit headlines", offset=positive)


# -- technical --------------------------------------------------------------------------

UPGRADEABLE = 0.80
IMMUTABLE = 0.20
UNKNOWN_UPGRADEABILITY = 0.60
#: Audits known → fraction of points; more than the last entry counts as the last.
AUDIT_FRACTIONS = (1.0, 0.50, 0.35, 0.25)
UNKNOWN_AUDITS = 0.80
NAMED_ORACLE = 0.60
NO_ORACLE = 0.0
UNKNOWN_ORACLE = 0.50
#: Bridges: none → 0; one → FIRST_BRIDGE; each more adds EXTRA_BRIDGE, up to 1.
FIRST_BRIDGE = 0.60
EXTRA_BRIDGE = 0.20
UNKNOWN_BRIDGES_MULTICHAIN = 0.50
#: Primary chain tiers: (fraction of points, chains).
CHAIN_TIERS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (0.10, ("ethereum",)),
    (0.20, ("stellar",)),
    (0.30, ("arbitrum", "optimism", "base", "polygon", "solana", "avalanche")),
    (0.40, ("bsc", "gnosis", "tron", "aptos", "sui", "mantle", "starknet")),
    (0.55, ("provenance", "kinesis", "plume", "etherlink")),
)
UNKNOWN_CHAIN = 0.60


def upgradeability(asset: Asset) -> Factor:
    flag = _details(asset).get("contract_upgradeable")
    if isinstance(flag, bool):
        fraction = UPGRADEABLE if flag else IMMUTABLE
        what = ("upgradeable (an admin key can change the code)" if flag
                else "not upgradeable (fixed code, nothing to patch either)")
        return make_factor("technical", "upgradeability", fraction, value=flag, unit="flag",
                           evidence=f"token contract {what} → {_share(fraction)}",
                           source=CATALOG)
    return make_factor("technical", "upgradeability", UNKNOWN_UPGRADEABILITY, value=None,
                       unit="flag",
                       evidence=("upgradeability not known: unknown → treated as "
                                 f"{_share(UNKNOWN_UPGRADEABILITY)}"),
                       source=CATALOG, assumed=True)


def audits(asset: Asset, audit_news: Sequence[Signal], news_known: bool) -> Factor:
    listed = _details(asset).get("audits")
    known = [str(a) for a in listed] if isinstance(listed, list) else None
    n = len(known or []) + len(audit_news)
    sources = [CATALOG] + ([NEWS] if audit_news else [])
    parts = []
    if known:
        parts.append("audits in the catalog: " + ", ".join(known))
    if audit_news:
        parts.append("audits in the news: " + evidence_list(audit_news))
    if known is None and not audit_news:
        return make_factor("technical", "audits", UNKNOWN_AUDITS, value=None, unit="audits",
                           evidence=("no audit known (catalog: not stated"
                                     + ("" if news_known else "; no news input")
                                     + f"): unknown → treated as {_share(UNKNOWN_AUDITS)}"),
                           source=", ".join(sources), assumed=True)
    fraction = AUDIT_FRACTIONS[min(n, len(AUDIT_FRACTIONS) - 1)]
    if n == 0:
        parts.append("the catalog lists no audit")
    return make_factor("technical", "audits", fraction, value=n, unit="audits",
                       evidence="; ".join(parts) + f" → {n} audit(s) = {_share(fraction)}",
                       source=", ".join(sources))


def oracle_dependence(asset: Asset) -> Factor:
    oracle = _details(asset).get("oracle")
    if isinstance(oracle, str) and oracle.strip().lower() == "none":
        return make_factor("technical", "oracle_dependence", NO_ORACLE, value="none", unit="label",
                           evidence="no oracle in the token's operation → 0 points",
                           source=CATALOG)
    if isinstance(oracle, str) and oracle.strip():
        return make_factor("technical", "oracle_dependence", NAMED_ORACLE, value=oracle,
                           unit="label",
                           evidence=f"depends on an oracle: {oracle} → {_share(NAMED_ORACLE)}",
                           source=CATALOG)
    return make_factor("technical", "oracle_dependence", UNKNOWN_ORACLE, value=None, unit="label",
                       evidence=("oracle dependence not known: unknown → treated as "
                                 f"{_share(UNKNOWN_ORACLE)}"),
                       source=CATALOG, assumed=True)


def bridge_dependence(asset: Asset) -> Factor:
    bridges = _details(asset).get("bridges")
    if isinstance(bridges, list):
        names = [str(b) for b in bridges]
        fraction = 0.0 if not names else FIRST_BRIDGE + EXTRA_BRIDGE * (len(names) - 1)
        evidence = ("issued natively on every chain, no bridge" if not names
                    else "relies on bridge(s): " + ", ".join(names))
        return make_factor("technical", "bridge_dependence", fraction, value=names, unit="bridges",
                           evidence=f"{evidence} → {_share(fraction)}",
                           source=CATALOG)
    if len(asset.chains) <= 1:
        return make_factor("technical", "bridge_dependence", 0.0, value=[], unit="bridges",
                           evidence=(f"issued on {asset.blockchain_network} only, so no "
                                     "bridge → 0 points"),
                           source=CATALOG)
    return make_factor("technical", "bridge_dependence", UNKNOWN_BRIDGES_MULTICHAIN, value=None,
                       unit="bridges",
                       evidence=(f"on {len(asset.chains)} chains, bridging not known: unknown → "
                                 f"treated as {_share(UNKNOWN_BRIDGES_MULTICHAIN)}"),
                       source=CATALOG, assumed=True)


def chain(asset: Asset) -> Factor:
    primary = asset.blockchain_network.lower()
    for tier, (fraction, chains) in enumerate(CHAIN_TIERS, start=1):
        if primary in chains:
            evidence = f"primary chain {primary}: tier {tier} → {_share(fraction)}"
            return make_factor("technical", "chain", fraction, value=primary, unit="label",
                               evidence=evidence, source=CATALOG)
    evidence = (f"primary chain {primary} not in the tier table: unknown → treated as "
                f"{_share(UNKNOWN_CHAIN)}")
    return make_factor("technical", "chain", UNKNOWN_CHAIN, value=primary, unit="label",
                       evidence=evidence, source=CATALOG, assumed=True)


def security_incidents(found: Sequence[Signal], news_known: bool) -> Factor:
    return _news_factor("technical", "security_incidents", found, news_known,
                        what="exploit, hack or vulnerability headlines")
