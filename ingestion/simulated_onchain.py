"""A deterministic, class-aware simulator of on-chain metrics for tokenized RWAs.

It stands in for indexers and issuer dashboards (holder counts, transfers, DEX depth,
exchange flows, NAV, yield, TVL) in development, tests and demos, the way
:mod:`ingestion.simulated` stands in for price venues. Every asset gets its own numpy
``Generator`` seeded from ``(seed, asset_id)`` through a stable hash, so an asset's
metrics depend only on the seed, its id and the times it is asked about, never on
which other assets are simulated or on dict/set ordering.

What each snapshot reports, per asset:

* ``holder_count`` grows slowly: a birth-death diffusion with a class-typical yearly
  growth and churn. KYC'd Treasury and money market funds start at hundreds to a few
  thousand holders, gold tokens at tens of thousands, single real-estate properties
  at hundreds. ``holders``/``holder_count`` in ``underlying_asset_details`` override
  the starting count.
* ``tvl_usd`` is holders times an average holding, which starts at market size over
  holders (market size from ``underlying_asset_details`` where given, else a class
  default), wanders slowly and, for accumulating funds, grows with NAV.
* ``transfer_volume`` (USD) and ``transfer_count`` are trailing-24-hour figures,
  proportional to TVL with daily log-normal noise; thin classes have no-transfer days.
* ``dex_liquidity`` (USD) is a mean-reverting fraction of TVL, near zero for tokens
  whose transfers are allowlist-restricted (they cannot sit in a public pool).
* ``exchange_inflow`` / ``exchange_outflow`` (USD, trailing 24 hours) exist only for
  freely transferable gold, commodity and equity tokens.
* ``nav`` only for NAV-pinned classes: 1.0 for stable ($1) funds, compounding at the
  current ``apy`` for accumulating funds, as in the price simulator.
* ``apy`` is the asset's yield with a small mean-reverting drift (absent when the
  catalog gives none, except NAV-pinned funds, which use a class default).

Time is measured in hours and the state advances by the time since the previous
snapshot, so daily and hourly sampling describe the same process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from core.domain import Asset
from core.envelope import Envelope, make
from ingestion.determinism import SIZE_KEYS, floor_hour, positive_detail, require_aware, stable_rng

logger = logging.getLogger(__name__)

HOURS_PER_YEAR = 8760.0
_HOUR = timedelta(hours=1)
_STATE_VERSION = 1

#: A NAV-pinned fund quoted within this distance of $1 is a stable-NAV ($1) fund.
_STABLE_NAV_TOLERANCE = 0.02

#: Keys in ``Asset.underlying_asset_details`` read as the token's market size in USD.
#: Keys in ``Asset.underlying_asset_details`` read as the current number of holders.
_HOLDER_KEYS = ("holder_count", "holders", "holders_count")

#: Classes whose freely transferable tokens move to and from centralised exchanges.
_EXCHANGE_TRADED_CLASSES = frozenset({"gold", "commodity", "equity"})

#: DEX depth of an allowlist-restricted token, as a fraction of TVL: at most a
#: permissioned pool, so effectively nothing.
_RESTRICTED_DEX_FRACTION = 2e-5

# Mean-reversion speeds and noise of the slow state variables.
_DEX_HALF_LIFE_H = 14 * 24.0
_DEX_LOG_SD = 0.3
_APY_HALF_LIFE_H = 60 * 24.0
_TRANSFER_COUNT_SD = 0.5
_TRANSFER_SIZE_SD = 0.4
_FLOW_COMMON_SD = 0.5
_FLOW_IMBALANCE_SD = 0.3

#: Normal draws per step; fixed so paths never depend on parameters.
_DRAWS_PER_STEP = 8


@dataclass(frozen=True, slots=True)
class _ClassModel:
    """Per-class on-chain parameters.

    Attributes:
        holders_range: Starting holder count is log-uniform in this range.
        holder_growth: Expected yearly growth of the holder count (fraction).
        holder_churn: Yearly rate at which holders leave (and are replaced), which
            sets the day-to-day noise of the count.
        default_size_usd: Market size assumed when the catalog gives none.
        holding_vol: Annualised volatility of the average holding's value.
        daily_turnover: Fraction of TVL transferred on-chain per day.
        avg_transfer_usd: Typical size of one transfer.
        zero_transfer_prob: Probability that a day sees no transfer at all.
        dex_fraction: DEX liquidity as a fraction of TVL for unrestricted tokens.
        exchange_flow_fraction: Daily exchange inflow (and outflow) as a fraction of TVL.
        default_apy: Percent per year used by NAV-pinned funds the catalog gives none.
    """

    holders_range: tuple[float, float]
    holder_growth: float
    holder_churn: float
    default_size_usd: float
    holding_vol: float
    daily_turnover: float
    avg_transfer_usd: float
    zero_transfer_prob: float = 0.0
    dex_fraction: float = 0.02
    exchange_flow_fraction: float = 0.0
    default_apy: float = 0.0


# Rough public figures: tokenized T-bill funds are held by hundreds to a few thousand
# KYC'd wallets moving large tickets; gold tokens by tens of thousands of retail
# wallets; a tokenized house by a few hundred small investors who rarely sell.
_MODELS: dict[str, _ClassModel] = {
    "treasury": _ClassModel(
        holders_range=(150.0, 3000.0),
        holder_growth=0.35,
        holder_churn=0.1,
        default_size_usd=500e6,
        holding_vol=0.15,
        daily_turnover=0.01,
        avg_transfer_usd=250e3,
        default_apy=4.5,
    ),
    "money_market": _ClassModel(
        holders_range=(100.0, 2000.0),
        holder_growth=0.35,
        holder_churn=0.1,
        default_size_usd=300e6,
        holding_vol=0.15,
        daily_turnover=0.01,
        avg_transfer_usd=250e3,
        default_apy=4.3,
    ),
    "gold": _ClassModel(
        holders_range=(10_000.0, 60_000.0),
        holder_growth=0.10,
        holder_churn=0.3,
        default_size_usd=800e6,
        holding_vol=0.2,
        daily_turnover=0.03,
        avg_transfer_usd=15e3,
        dex_fraction=0.04,
        exchange_flow_fraction=0.01,
    ),
    "commodity": _ClassModel(
        holders_range=(2000.0, 15_000.0),
        holder_growth=0.08,
        holder_churn=0.3,
        default_size_usd=50e6,
        holding_vol=0.3,
        daily_turnover=0.03,
        avg_transfer_usd=5e3,
        dex_fraction=0.03,
        exchange_flow_fraction=0.01,
    ),
    "real_estate": _ClassModel(
        holders_range=(100.0, 900.0),
        holder_growth=0.15,
        holder_churn=0.05,
        default_size_usd=3e6,
        holding_vol=0.08,
        daily_turnover=0.002,
        avg_transfer_usd=2e3,
        zero_transfer_prob=0.4,
    ),
    "private_credit": _ClassModel(
        holders_range=(200.0, 3000.0),
        holder_growth=0.25,
        holder_churn=0.15,
        default_size_usd=100e6,
        holding_vol=0.15,
        daily_turnover=0.005,
        avg_transfer_usd=50e3,
        zero_transfer_prob=0.2,
        dex_fraction=0.03,
    ),
    "equity": _ClassModel(
        holders_range=(1000.0, 20_000.0),
        holder_growth=0.5,
        holder_churn=0.5,
        default_size_usd=50e6,
        holding_vol=0.3,
        daily_turnover=0.05,
        avg_transfer_usd=3e3,
        exchange_flow_fraction=0.02,
    ),
    "corporate_bond": _ClassModel(
        holders_range=(200.0, 2000.0),
        holder_growth=0.15,
        holder_churn=0.1,
        default_size_usd=50e6,
        holding_vol=0.1,
        daily_turnover=0.005,
        avg_transfer_usd=50e3,
        zero_transfer_prob=0.1,
        dex_fraction=0.01,
    ),
}


def is_transfer_restricted(asset: Asset) -> bool:
    """Whether on-chain transfers of ``asset`` are limited to allowlisted wallets.

    ``transfer_restricted`` decides where the catalog states it. Where it does not,
    ``kyc_required`` stands in, because a token whose issuer checks identity usually
    also gates who may hold it.
    """
    details = asset.underlying_asset_details
    restricted = details.get("transfer_restricted")
    if isinstance(restricted, bool):
        return restricted
    return bool(details.get("kyc_required", False))


class _AssetSim:
    """One asset's parameters, slow state and random stream."""

    __slots__ = (
        "apy_base",
        "apy_dev",
        "apy_sd",
        "asset",
        "avg_holding",
        "dex_dev",
        "dex_fraction",
        "flow_fraction",
        "holders",
        "last_time",
        "model",
        "nav",
        "nav_pinned",
        "rng",
        "stable",
    )

    def __init__(self, asset: Asset, rng: np.random.Generator) -> None:
        self.asset = asset
        self.rng = rng
        model = _MODELS[asset.asset_class]
        self.model = model
        self.nav_pinned = asset.nav_pinned
        self.stable = self.nav_pinned and abs(asset.reference_price - 1.0) <= _STABLE_NAV_TOLERANCE
        if asset.apy is not None:
            self.apy_base: float | None = asset.apy
        else:
            # A NAV-pinned fund always earns something; other classes without a stated
            # yield report none rather than an invented one.
            self.apy_base = model.default_apy if self.nav_pinned else None
        base = self.apy_base or 0.0
        self.apy_sd = 0.05 + 0.04 * abs(base)
        restricted = is_transfer_restricted(asset)
        self.dex_fraction = _RESTRICTED_DEX_FRACTION if restricted else model.dex_fraction
        exchange_traded = asset.asset_class in _EXCHANGE_TRADED_CLASSES and not restricted
        self.flow_fraction = model.exchange_flow_fraction if exchange_traded else 0.0

        # Initial draws come first and in a fixed order, so every later step sees the
        # same stream whatever the catalog says about the asset.
        u_holders = float(rng.random())
        z_dex = float(rng.standard_normal())
        lo, hi = model.holders_range
        drawn = math.exp(math.log(lo) + u_holders * (math.log(hi) - math.log(lo)))
        details = asset.underlying_asset_details
        self.holders = positive_detail(details, _HOLDER_KEYS) or drawn
        size = positive_detail(details, SIZE_KEYS) or model.default_size_usd
        self.avg_holding = size / self.holders
        self.dex_dev = _DEX_LOG_SD * z_dex
        self.apy_dev = 0.0
        self.nav = 1.0 if self.stable else asset.reference_price
        self.last_time: datetime | None = None

    @property
    def apy(self) -> float | None:
        if self.apy_base is None:
            return None
        return max(self.apy_base + self.apy_dev, 0.0)

    def step(self, dt_h: float) -> dict[str, Any]:
        """Advance the state by ``dt_h`` hours and return the snapshot's payload."""
        rng = self.rng
        model = self.model
        # Always draw the same numbers in the same order so paths never depend on
        # parameters or on which metrics this asset reports.
        z = rng.standard_normal(_DRAWS_PER_STEP).tolist()
        u_zero = float(rng.random())
        z_holders, z_holding, z_dex, z_apy, z_count, z_size, z_common, z_imbalance = z
        dt_y = dt_h / HOURS_PER_YEAR

        # Yield: exact OU step around the catalog figure, before NAV accrues on it.
        a = math.exp(-math.log(2.0) * dt_h / _APY_HALF_LIFE_H)
        self.apy_dev = a * self.apy_dev + self.apy_sd * math.sqrt(1.0 - a * a) * z_apy
        apy = self.apy

        nav_growth = 1.0
        if self.nav_pinned and not self.stable:
            # Accumulating funds compound at the current yield; $1 funds pay it out as
            # new tokens, so their NAV stays at 1.0.
            nav_growth = math.exp(math.log1p((apy or 0.0) / 100.0) * dt_y)
            self.nav *= nav_growth

        # Holders: diffusion limit of a birth-death process (joins at rate g + c,
        # leaves at rate c), so the count drifts up with Poisson-sized noise.
        h = self.holders
        g, c = model.holder_growth, model.holder_churn
        h += h * g * dt_y + math.sqrt(h * (g + 2.0 * c) * dt_y) * z_holders
        self.holders = max(h, 1.0)

        sigma = model.holding_vol
        self.avg_holding *= nav_growth * math.exp(
            -0.5 * sigma * sigma * dt_y + sigma * math.sqrt(dt_y) * z_holding
        )
        tvl = self.holders * self.avg_holding

        a = math.exp(-math.log(2.0) * dt_h / _DEX_HALF_LIFE_H)
        self.dex_dev = a * self.dex_dev + _DEX_LOG_SD * math.sqrt(1.0 - a * a) * z_dex
        dex = tvl * self.dex_fraction * math.exp(self.dex_dev - 0.5 * _DEX_LOG_SD**2)

        # Trailing-24h transfers: a noisy count of noisy-sized tickets, so volume and
        # count move together but not in lockstep.
        if u_zero < model.zero_transfer_prob:
            count = 0
            volume = 0.0
        else:
            expected = tvl * model.daily_turnover / model.avg_transfer_usd
            sd_n, sd_s = _TRANSFER_COUNT_SD, _TRANSFER_SIZE_SD
            count = round(expected * math.exp(sd_n * z_count - 0.5 * sd_n * sd_n))
            ticket = model.avg_transfer_usd * math.exp(sd_s * z_size - 0.5 * sd_s * sd_s)
            volume = count * ticket

        payload: dict[str, Any] = {
            "holder_count": round(self.holders),
            "transfer_volume": volume,
            "transfer_count": count,
            "dex_liquidity": dex,
            "tvl_usd": tvl,
            "chain": self.asset.blockchain_network,
        }
        if self.flow_fraction > 0.0:
            # A shared factor (busy days are busy both ways) and an imbalance factor
            # (net deposits to exchanges, i.e. selling pressure, or withdrawals).
            base = tvl * self.flow_fraction
            var = 0.5 * (_FLOW_COMMON_SD**2 + _FLOW_IMBALANCE_SD**2)
            common = _FLOW_COMMON_SD * z_common
            imbalance = _FLOW_IMBALANCE_SD * z_imbalance
            payload["exchange_inflow"] = base * math.exp(common + imbalance - var)
            payload["exchange_outflow"] = base * math.exp(common - imbalance - var)
        if self.nav_pinned:
            payload["nav"] = self.nav
        if apy is not None:
            payload["apy"] = apy
        _check_payload(self.asset.asset_id, payload)
        return payload

    # -- persistence -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "last_time": self.last_time.isoformat() if self.last_time else None,
            "holders": self.holders,
            "avg_holding": self.avg_holding,
            "nav": self.nav,
            "apy_dev": self.apy_dev,
            "dex_dev": self.dex_dev,
            "rng": self.rng.bit_generator.state,
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        last = snap.get("last_time")
        self.last_time = datetime.fromisoformat(last).astimezone(UTC) if last else None
        self.holders = float(snap["holders"])
        self.avg_holding = float(snap["avg_holding"])
        self.nav = float(snap["nav"])
        self.apy_dev = float(snap["apy_dev"])
        self.dex_dev = float(snap["dex_dev"])
        self.rng.bit_generator.state = snap["rng"]


def _check_payload(asset_id: str, payload: Mapping[str, Any]) -> None:
    """Check every number is finite and non-negative (NAV positive).

    Raises:
        RuntimeError: If the simulation left the valid range, which would be a bug in
            the model parameters, not bad input.
    """
    for key, value in payload.items():
        if key == "chain":
            continue
        if not math.isfinite(value) or value < 0 or (key == "nav" and value <= 0):
            raise RuntimeError(f"simulated {key} for {asset_id} left the valid range: {value}")


class SimulatedOnchain:
    """Deterministic, class-aware simulator of on-chain metrics.

    Assets are always processed in ``asset_id`` order, and each has its own random
    stream, so outputs depend only on the seed, the asset and the call sequence.
    """

    SOURCE = "simulated-onchain"

    def __init__(self, assets: Sequence[Asset], *, seed: int = 7) -> None:
        """Start every asset from its class's typical holders, size and yield.

        Args:
            assets: The assets to simulate; ids must be unique.
            seed: Master seed; each asset's stream derives from ``(seed, asset_id)``.

        Raises:
            ValueError: On duplicate asset ids.
        """
        ids = [a.asset_id for a in assets]
        if len(set(ids)) != len(ids):
            raise ValueError("asset ids must be unique")
        self.seed = seed
        self._sims: list[_AssetSim] = [
            _AssetSim(a, stable_rng("onchain", seed, a.asset_id))
            for a in sorted(assets, key=lambda a: a.asset_id)
        ]

    @property
    def assets(self) -> list[Asset]:
        """The simulated assets in ``asset_id`` order."""
        return [s.asset for s in self._sims]

    def _snapshot_all(self, now: datetime) -> list[Envelope]:
        out: list[Envelope] = []
        for sim in self._sims:
            last = sim.last_time
            # The first snapshot is the starting state; a time at or before the last
            # one is a zero-length step, so asking again never moves time backwards.
            dt_h = 0.0 if last is None else max((now - last).total_seconds() / 3600.0, 0.0)
            payload = sim.step(dt_h)
            if last is None or now > last:
                sim.last_time = now
            out.append(
                make(
                    source=self.SOURCE,
                    kind="onchain",
                    asset_id=sim.asset.asset_id,
                    event_time=now,
                    payload=payload,
                )
            )
        return out

    def snapshot(self, now: datetime) -> list[Envelope]:
        """One ``"onchain"`` envelope per asset at ``now``, continuing each asset's state.

        The state advances by the time since the asset's previous snapshot; flows
        (transfers, exchange in/outflows) are trailing-24-hour figures at ``now``.

        Args:
            now: Timezone-aware event time of the snapshots.

        Raises:
            ValueError: If ``now`` is naive.
        """
        return self._snapshot_all(require_aware(now, "now"))

    def history(self, *, end: datetime, hours: int, every_hours: int = 24) -> Iterator[Envelope]:
        """Snapshots every ``every_hours`` over the ``hours`` ending at ``end`` (floored).

        Snapshot times are the floored ``end`` and each ``every_hours`` before it that
        still lies in the window ``(end - hours, end]``. The simulation runs (and the
        per-asset state advances to the floored ``end``) when this is called; envelopes
        are ordered by time and then by ``asset_id``.

        Args:
            end: Timezone-aware end; floored to the hour, it is the last snapshot's time.
            hours: Length of the window in hours.
            every_hours: Hours between snapshots; daily by default.

        Returns:
            An iterator of ``"onchain"`` envelopes.

        Raises:
            ValueError: If ``end`` is naive, ``hours`` is negative or ``every_hours``
                is not positive.
        """
        if hours < 0:
            raise ValueError("hours must be >= 0")
        if every_hours <= 0:
            raise ValueError("every_hours must be > 0")
        last = floor_hour(require_aware(end, "end"))
        count = -(-hours // every_hours)
        out: list[Envelope] = []
        for k in range(count - 1, -1, -1):
            out.extend(self._snapshot_all(last - k * every_hours * _HOUR))
        return iter(out)

    def state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot: per asset, last time, slow state and RNG."""
        return {
            "version": _STATE_VERSION,
            "seed": self.seed,
            "assets": {sim.asset.asset_id: sim.to_state() for sim in self._sims},
        }

    @classmethod
    def from_state(
        cls, assets: Sequence[Asset], state: Mapping[str, Any], *, seed: int
    ) -> SimulatedOnchain:
        """Resume exactly where a :meth:`state` snapshot left off.

        Assets missing from the snapshot (new to the catalog) start fresh from ``seed``;
        snapshot entries for assets no longer simulated are ignored.

        Args:
            assets: The assets to simulate.
            state: A snapshot from :meth:`state`, possibly round-tripped through JSON.
            seed: Master seed for assets the snapshot lacks.

        Raises:
            ValueError: If the snapshot's version is not understood.
        """
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"unsupported on-chain simulator state version {state.get('version')!r}"
            )
        sim_all = cls(assets, seed=seed)
        snaps: Mapping[str, Any] = state.get("assets", {})
        for sim in sim_all._sims:
            snap = snaps.get(sim.asset.asset_id)
            if snap is None:
                logger.info(
                    "no on-chain simulator state for %s; starting fresh", sim.asset.asset_id
                )
                continue
            sim.restore(snap)
        return sim_all
