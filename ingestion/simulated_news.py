"""A deterministic simulated newswire about tokenized real-world assets.

It stands in for news feeds in development, tests and demos. Headlines arrive as a
Poisson process at ``rate_per_hour``; each names one asset and is filled from a
template of realistic financial vocabulary with the asset's symbol, name and issuer.

Every clock hour's items derive only from ``(seed, hour)`` and the asset list, through
a stable hash, so a window always yields the same items however it is split into
sub-windows: one 24-hour call equals 24 one-hour calls.

The intended polarity of each item (a third each of positive, neutral and negative)
never enters the payload; :meth:`SimulatedNews.between_labeled` returns it alongside
the envelope for tests and for building sentiment evaluation sets, and
:data:`TEMPLATES` exposes the headline templates themselves. Topics are weighted by
asset class: private credit and real estate get more credit and impairment news,
Treasury and money market funds more yield and NAV news, and gold, commodity and
equity tokens no yield or credit news at all.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import numpy as np

from core.domain import Asset
from core.envelope import Envelope, make
from ingestion.determinism import require_aware, stable_rng

Polarity = Literal["positive", "neutral", "negative"]
POLARITIES: tuple[Polarity, ...] = get_args(Polarity)

_HOUR = timedelta(hours=1)
_MICROS_PER_HOUR = 3_600_000_000

#: Fictional outlets, so simulated stories are never mistaken for a real masthead's.
OUTLETS: tuple[str, ...] = (
    "RWA Wire",
    "Onchain Ledger",
    "Tokenized Markets Daily",
    "Digital Asset Brief",
    "Fixed Income Chain",
    "The Custody Report",
)

#: Chains a "launches on" headline may name when the asset is not yet there.
_LAUNCH_CHAINS: tuple[str, ...] = (
    "ethereum",
    "solana",
    "polygon",
    "arbitrum",
    "base",
    "avalanche",
    "optimism",
    "aptos",
    "sui",
    "stellar",
)

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

#: Uniform draws one template fill consumes; fixed so streams never depend on templates.
_FILL_DRAWS = 7
#: Uniform draws per item: time, asset, polarity, template, outlet, then the fill.
_ITEM_DRAWS = 5 + _FILL_DRAWS


@dataclass(frozen=True, slots=True)
class _Template:
    """One headline template with its polarity, topic and matching body."""

    polarity: Polarity
    topic: str
    title: str
    body: str


# Placeholders: {symbol} {name} {issuer} {chain} (one of the asset's chains)
# {new_chain} (one it is not on yet) {amount} (USD millions) {pct} {bps} {apy} {nav}
# {fee} (basis points) {quarter} (of the event time) {weekday}.
# Every title names the asset by {symbol} or {name}, so a headline can be linked back.
_ENTRIES: tuple[_Template, ...] = (
    # -- positive ------------------------------------------------------------------------
    _Template(
        "positive",
        "flows",
        "{symbol} pulls in ${amount}M of net inflows as demand for {name} surges",
        "{issuer} said {name} ({symbol}) took in ${amount} million of net subscriptions "
        "over the past seven days, its strongest week since launch.",
    ),
    _Template(
        "positive",
        "flows",
        "{name} assets under management hit a record high",
        "Assets in {name} ({symbol}) climbed to an all-time high after ${amount} million "
        "of fresh subscriptions, {issuer} said.",
    ),
    _Template(
        "positive",
        "product",
        "{issuer} launches {symbol} on {new_chain}, expanding multichain access",
        "{name} ({symbol}) is now live on {new_chain}, letting holders mint and transfer "
        "the token natively there, {issuer} said.",
    ),
    _Template(
        "positive",
        "security",
        "{symbol} smart contracts pass independent audit with no critical findings",
        "An external security firm reviewed the {name} contracts on {chain} and reported "
        "no critical or high-severity issues, {issuer} said.",
    ),
    _Template(
        "positive",
        "yield",
        "{name} yield rises to {apy}% as short-term rates climb",
        "The annualised yield on {symbol} rose {bps} basis points to {apy}%, lifting "
        "income for holders, {issuer} said.",
    ),
    _Template(
        "positive",
        "regulatory",
        "{issuer} wins regulatory approval to offer {name} to more investors",
        "Regulators approved {issuer}'s application to distribute {symbol} to a wider "
        "set of investors, a step that could broaden demand.",
    ),
    _Template(
        "positive",
        "credit",
        "{name} reports zero defaults as loan book performs in {quarter}",
        "{issuer} said every loan backing {symbol} was current at the end of {quarter}, "
        "with no impairments or missed payments.",
    ),
    _Template(
        "positive",
        "credit",
        "Rating agency upgrades {symbol} on strong collateral coverage",
        "The upgrade reflects overcollateralisation and a clean repayment record in the "
        "{name} portfolio, {issuer} said.",
    ),
    _Template(
        "positive",
        "reserves",
        "{symbol} attestation confirms reserves fully back every token",
        "The latest independent attestation found {name} reserves exceed the tokens "
        "outstanding, {issuer} said.",
    ),
    _Template(
        "positive",
        "market",
        "Major exchange lists {symbol}, deepening liquidity for {name}",
        "Trading in {symbol} begins this week, which {issuer} expects to tighten spreads "
        "and add depth.",
    ),
    # -- negative ------------------------------------------------------------------------
    _Template(
        "negative",
        "liquidity",
        "{issuer} halts redemptions in {symbol} amid liquidity squeeze",
        "{issuer} suspended redemptions of {name} ({symbol}) after requests exceeded "
        "available liquidity, and said it would update holders within days.",
    ),
    _Template(
        "negative",
        "market",
        "{symbol} depegs, trading {bps} basis points below its net asset value",
        "Holders sold {name} ({symbol}) at a discount of {bps} basis points to its "
        "reference value as confidence in {issuer} wavered.",
    ),
    _Template(
        "negative",
        "credit",
        "{name} books {pct}% impairment after default on underlying assets",
        "{issuer} wrote down {pct}% of the {symbol} portfolio after a default on assets "
        "backing the token, cutting its value.",
    ),
    _Template(
        "negative",
        "credit",
        "Missed payments hit assets backing {symbol}, {issuer} discloses",
        "{issuer} said obligations in the {name} pool missed a scheduled payment and "
        "were moved to non-accrual.",
    ),
    _Template(
        "negative",
        "credit",
        "Rating agency downgrades {symbol} citing rising delinquencies",
        "Delinquencies in the {name} portfolio rose to {pct}%, prompting the downgrade; "
        "{issuer} said it is working with servicers.",
    ),
    _Template(
        "negative",
        "regulatory",
        "Regulators open probe into {issuer} over {name} disclosures",
        "Authorities are investigating whether {issuer} misled investors about the risks "
        "of {symbol}, people familiar with the matter said.",
    ),
    _Template(
        "negative",
        "security",
        "{symbol} hit by ${amount}M exploit on {chain}",
        "An attacker exploited a flaw in a contract connected to {name} on {chain}, "
        "draining about ${amount} million, {issuer} said.",
    ),
    _Template(
        "negative",
        "flows",
        "Investors pull ${amount}M from {name} in heavy outflows",
        "Net redemptions from {symbol} reached ${amount} million this week, the largest "
        "outflow since launch, {issuer} data show.",
    ),
    _Template(
        "negative",
        "yield",
        "{name} yield slides to {apy}% as rate cuts bite",
        "The annualised yield on {symbol} fell {bps} basis points to {apy}%, reducing "
        "income for holders.",
    ),
    _Template(
        "negative",
        "nav",
        "{symbol} NAV publication delayed after pricing error",
        "{issuer} postponed the daily net asset value for {name} after finding an error "
        "in the pricing of its holdings.",
    ),
    # -- neutral -------------------------------------------------------------------------
    _Template(
        "neutral",
        "report",
        "{issuer} to publish {quarter} report for {name} on schedule",
        "{issuer} said the quarterly report for {symbol} will be released as planned, "
        "with no changes to reporting dates.",
    ),
    _Template(
        "neutral",
        "nav",
        "{name} publishes daily NAV of ${nav} per {symbol} token",
        "{issuer} published the net asset value of {name} at ${nav} per token, in line "
        "with its daily schedule.",
    ),
    _Template(
        "neutral",
        "fees",
        "{issuer} leaves {symbol} fee schedule unchanged at {fee} basis points",
        "The management fee on {name} stays at {fee} basis points a year, {issuer} said "
        "in a routine notice.",
    ),
    _Template(
        "neutral",
        "governance",
        "{issuer} board to meet {weekday} for regular review of {name}",
        "The board will hold its scheduled meeting on {weekday}; {issuer} said no "
        "decisions on {symbol} are expected.",
    ),
    _Template(
        "neutral",
        "credit",
        "{name} releases monthly loan tape for {quarter}",
        "{issuer} published loan-level data for the {symbol} portfolio as part of its "
        "regular disclosure.",
    ),
    _Template(
        "neutral",
        "yield",
        "{name} yield holds at {apy}% for the week",
        "The annualised yield on {symbol} was {apy}%, little changed from last week, "
        "{issuer} said.",
    ),
    _Template(
        "neutral",
        "report",
        "Monthly reserve attestation for {symbol} released",
        "An independent accountant's monthly report on {name} reserves was posted by "
        "{issuer} on schedule.",
    ),
    _Template(
        "neutral",
        "governance",
        "{issuer} schedules routine {symbol} contract upgrade for {weekday}",
        "{issuer} said the maintenance upgrade to the {name} contracts on {chain} will "
        "not affect balances.",
    ),
    _Template(
        "neutral",
        "market",
        "{symbol} trading volume in line with monthly average",
        "Activity in {name} was steady, with volumes on {chain} close to their 30-day average.",
    ),
)

#: Headline templates by intended polarity; see the placeholder list above ``_ENTRIES``.
TEMPLATES: dict[str, list[str]] = {
    p: [t.title for t in _ENTRIES if t.polarity == p] for p in POLARITIES
}

# How much likelier a topic is for a class than the default weight of 1. A weight of 0
# rules a topic out: a gold token has no yield to rise and no loans to default.
_TOPIC_WEIGHTS: dict[str, dict[str, float]] = {
    "treasury": {"yield": 3.0, "nav": 3.0, "credit": 0.2},
    "money_market": {"yield": 3.0, "nav": 3.0, "credit": 0.2},
    "private_credit": {"credit": 4.0, "yield": 1.5},
    "real_estate": {"credit": 4.0, "nav": 0.3},
    "corporate_bond": {"credit": 2.0, "yield": 2.0},
    "gold": {"yield": 0.0, "credit": 0.0, "nav": 0.3},
    "commodity": {"yield": 0.0, "credit": 0.0, "nav": 0.3},
    "equity": {"yield": 0.0, "credit": 0.0, "nav": 0.3},
}

#: Yield quoted in headlines when the catalog gives none.
_DEFAULT_APY = 4.0


def _hour_index(t: datetime) -> int:
    """Whole hours since the Unix epoch (floored), the key of that hour's items."""
    return math.floor(t.timestamp() / 3600.0)


def _fill_values(asset: Asset, u: Sequence[float], when: datetime | None) -> dict[str, str]:
    """Placeholder values for one item from ``_FILL_DRAWS`` uniforms."""
    u_chain, u_new, u_amount, u_pct, u_bps, u_apy, u_misc = u
    chain = asset.chains[int(u_chain * len(asset.chains)) % len(asset.chains)]
    elsewhere = [c for c in _LAUNCH_CHAINS if c not in asset.chains] or list(_LAUNCH_CHAINS)
    new_chain = elsewhere[int(u_new * len(elsewhere)) % len(elsewhere)]
    # Log-uniform from $2M to $400M: flows and exploits span orders of magnitude.
    amount = math.exp(math.log(2.0) + u_amount * (math.log(400.0) - math.log(2.0)))
    apy = max((asset.apy if asset.apy is not None else _DEFAULT_APY) + (u_apy - 0.5), 0.0)
    # A $1 fund strikes exactly 1.0000; others quote near their reference price.
    stable = asset.nav_pinned and abs(asset.reference_price - 1.0) <= 0.02
    nav = 1.0 if stable else asset.reference_price * (1.0 + 0.004 * (u_apy - 0.5))
    month = when.month if when is not None else 1 + int(u_misc * 12) % 12
    year = when.year if when is not None else 2025
    return {
        "symbol": asset.symbol,
        "name": asset.name,
        "issuer": asset.issuer,
        "chain": chain.capitalize(),
        "new_chain": new_chain.capitalize(),
        "amount": f"{amount:.0f}",
        "pct": f"{0.5 + u_pct * 14.5:.1f}",
        "bps": f"{10 + int(u_bps * 190)}",
        "apy": f"{apy:.2f}",
        "nav": f"{nav:.4f}" if nav < 10.0 else f"{nav:,.2f}",
        "fee": f"{10 + int(u_misc * 66)}",
        "quarter": f"Q{(month - 1) // 3 + 1} {year}",
        "weekday": _WEEKDAYS[int(u_misc * len(_WEEKDAYS)) % len(_WEEKDAYS)],
    }


def render(
    template: str, asset: Asset, rng: np.random.Generator, *, when: datetime | None = None
) -> str:
    """Fill one template (from :data:`TEMPLATES`) for ``asset``.

    Args:
        template: A template string using the placeholders listed in this module.
        asset: The asset the text is about.
        rng: Source of the random amounts, percentages and chain choices.
        when: The story's time, for ``{quarter}``; a random quarter when omitted.

    Returns:
        The filled text.
    """
    return template.format_map(_fill_values(asset, rng.random(_FILL_DRAWS).tolist(), when))


def _template_weights(asset_class: str, polarity: Polarity) -> tuple[list[_Template], np.ndarray]:
    entries = [t for t in _ENTRIES if t.polarity == polarity]
    weights = _TOPIC_WEIGHTS.get(asset_class, {})
    w = np.array([weights.get(t.topic, 1.0) for t in entries])
    return entries, np.cumsum(w) / w.sum()


class SimulatedNews:
    """Deterministic newswire: Poisson headlines about the given assets.

    Assets are kept in ``asset_id`` order, so output depends only on the seed, the
    set of assets, the rate and the window, never on input order.
    """

    SOURCE = "simulated-news"

    def __init__(self, assets: Sequence[Asset], *, seed: int = 7, rate_per_hour: float = 6.0):
        """Set up the newswire.

        Args:
            assets: The assets stories may be about; ids must be unique.
            seed: Master seed; each hour's stories derive from ``(seed, hour)``.
            rate_per_hour: Expected stories per hour across all assets.

        Raises:
            ValueError: On duplicate asset ids or a negative or non-finite rate.
        """
        ids = [a.asset_id for a in assets]
        if len(set(ids)) != len(ids):
            raise ValueError("asset ids must be unique")
        if not (math.isfinite(rate_per_hour) and rate_per_hour >= 0):
            raise ValueError("rate_per_hour must be a finite number >= 0")
        self.seed = seed
        self.rate_per_hour = rate_per_hour
        self._assets: list[Asset] = sorted(assets, key=lambda a: a.asset_id)
        # Cumulative topic weights per (class, polarity), computed once.
        self._choices: Mapping[tuple[str, Polarity], tuple[list[_Template], np.ndarray]] = {
            (cls, p): _template_weights(cls, p)
            for cls in {a.asset_class for a in self._assets}
            for p in POLARITIES
        }

    @property
    def assets(self) -> list[Asset]:
        """The assets in ``asset_id`` order."""
        return list(self._assets)

    def _hour_items(
        self, hour: int, start: datetime, end: datetime
    ) -> list[tuple[Envelope, Polarity]]:
        """The items of one clock hour that fall in ``[start, end)``, by event time.

        The hour's items are a pure function of ``(seed, hour)``: all of them are
        drawn whatever the window, and only then clipped to it.
        """
        rng = stable_rng("news", self.seed, hour)
        n = int(rng.poisson(self.rate_per_hour))
        if n == 0 or not self._assets:
            return []
        draws = rng.random((n, _ITEM_DRAWS)).tolist()
        hour_start = datetime.fromtimestamp(hour * 3600, tz=UTC)
        times = [hour_start + timedelta(microseconds=int(u[0] * _MICROS_PER_HOUR)) for u in draws]
        # Sort and clip before building envelopes, which is where the time goes; the
        # draw index breaks (vanishingly rare) ties deterministically.
        order = sorted(
            (i for i in range(n) if start <= times[i] < end), key=lambda i: (times[i], i)
        )
        out: list[tuple[Envelope, Polarity]] = []
        for i in order:
            _, u_asset, u_polarity, u_template, u_outlet, *u_fill = draws[i]
            event_time = times[i]
            asset = self._assets[int(u_asset * len(self._assets)) % len(self._assets)]
            polarity = POLARITIES[int(u_polarity * 3) % 3]
            entries, cum = self._choices[(asset.asset_class, polarity)]
            template = entries[
                min(int(np.searchsorted(cum, u_template, side="right")), len(entries) - 1)
            ]
            values = _fill_values(asset, u_fill, event_time)
            story_id = hashlib.sha256(f"{self.seed}:{hour}:{i}".encode()).hexdigest()[:16]
            payload = {
                "title": template.title.format_map(values),
                "body": template.body.format_map(values),
                "url": f"https://news.rwaprime.invalid/{event_time:%Y/%m/%d}/{story_id}",
                "outlet": OUTLETS[int(u_outlet * len(OUTLETS)) % len(OUTLETS)],
                "lang": "en",
                "assets": [asset.asset_id],
                "issuers": [asset.issuer],
            }
            env = make(
                source=self.SOURCE,
                kind="news",
                asset_id=asset.asset_id,
                event_time=event_time,
                payload=payload,
            )
            out.append((env, polarity))
        return out

    def between_labeled(self, start: datetime, end: datetime) -> list[tuple[Envelope, Polarity]]:
        """Stories in ``[start, end)`` with each one's intended polarity.

        Args:
            start: Timezone-aware inclusive start.
            end: Timezone-aware exclusive end; at or before ``start`` gives nothing.

        Returns:
            ``(envelope, polarity)`` pairs sorted by event time, polarity being
            ``"positive"``, ``"neutral"`` or ``"negative"``.

        Raises:
            ValueError: If ``start`` or ``end`` is naive.
        """
        start = require_aware(start, "start")
        end = require_aware(end, "end")
        if end <= start:
            return []
        out: list[tuple[Envelope, Polarity]] = []
        # Whole hours are generated and then clipped, which is what makes any split
        # of a window yield exactly the items of the whole; hours come in time order,
        # so the concatenation is sorted.
        for hour in range(_hour_index(start), _hour_index(end - timedelta(microseconds=1)) + 1):
            out.extend(self._hour_items(hour, start, end))
        return out

    def between(self, start: datetime, end: datetime) -> list[Envelope]:
        """Stories in ``[start, end)`` as ``"news"`` envelopes sorted by event time.

        Args:
            start: Timezone-aware inclusive start.
            end: Timezone-aware exclusive end; at or before ``start`` gives nothing.

        Raises:
            ValueError: If ``start`` or ``end`` is naive.
        """
        return [env for env, _ in self.between_labeled(start, end)]
