"""A deterministic, class-aware simulated market for tokenized real-world assets.

The simulator stands in for live venues in development, tests and demos. Every asset
gets its own numpy ``Generator`` seeded from ``(seed, asset_id)`` through a stable hash,
so an asset's path depends only on the seed, its id and the times it is asked about,
never on which other assets are simulated or on dict/set ordering.

Each asset class has its own shape:

* ``treasury`` / ``money_market`` are NAV-pinned. A fund quoted near $1 keeps a
  constant NAV of 1.0 (yield is paid out as new tokens) and its price jitters a few
  basis points around it; an accumulating fund's NAV compounds at ``apy`` and its price
  is NAV times a small mean-reverting premium/discount. Both report ``nav``.
* ``gold``, ``commodity``, ``equity`` and ``real_estate`` follow geometric random walks
  with class-typical volatility and drift.
* ``private_credit`` accrues at ``apy`` with very low volatility plus rare downward
  jumps (impairments); ``corporate_bond`` accrues at ``apy`` with ~4% volatility.

Time is measured in hours. The random walk scales with ``sqrt(dt)`` and accrual with
``dt``, so a tick one second after the previous one is a tiny move while an hourly bar
is a full hour's worth.
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

#: Default impairment (downward jump) rate for private credit, per hour.
DEFAULT_IMPAIRMENT_RATE = 1.0 / 2000.0


@dataclass(frozen=True, slots=True)
class _ClassModel:
    """Per-class simulation parameters.

    Attributes:
        vol: Annualised volatility of log returns (random walk or premium noise scale).
        drift: Annualised log drift for classes that do not accrue ``apy``.
        accrues: Whether the price (or NAV) compounds at the asset's ``apy``.
        default_apy: Percent per year used when an accruing asset has no ``apy``.
        premium_sd: Stationary std of the NAV premium/discount (NAV-pinned only).
        premium_half_life_h: Half-life in hours of the premium's mean reversion.
        jumps: Whether impairment jumps apply.
        default_size_usd: Market size assumed when the catalog gives none.
        daily_turnover: Fraction of market size traded per day.
        zero_volume_prob: Probability that an hour (or tick) sees no trade at all.
        volume_dispersion: Std of the log-normal volume noise.
    """

    vol: float
    drift: float = 0.0
    accrues: bool = False
    default_apy: float = 0.0
    premium_sd: float = 0.0
    premium_half_life_h: float = 6.0
    jumps: bool = False
    default_size_usd: float = 50e6
    daily_turnover: float = 0.01
    zero_volume_prob: float = 0.0
    volume_dispersion: float = 0.8


# Volatilities and turnovers are rough, public-market-typical figures: tokenized
# T-bills barely move, gold is ~15% vol, silver and friends ~25%, single equities
# ~28%, and appraisal-priced real estate and private credit trade thinly.
_MODELS: dict[str, _ClassModel] = {
    "treasury": _ClassModel(
        vol=0.0,
        accrues=True,
        default_apy=4.5,
        premium_sd=4e-4,
        premium_half_life_h=8.0,
        default_size_usd=500e6,
        daily_turnover=0.005,
    ),
    "money_market": _ClassModel(
        vol=0.0,
        accrues=True,
        default_apy=4.3,
        premium_sd=4e-4,
        premium_half_life_h=8.0,
        default_size_usd=300e6,
        daily_turnover=0.005,
    ),
    "gold": _ClassModel(vol=0.15, drift=0.04, default_size_usd=800e6, daily_turnover=0.03),
    "commodity": _ClassModel(vol=0.25, drift=0.02, default_size_usd=50e6, daily_turnover=0.03),
    "real_estate": _ClassModel(
        vol=0.06,
        drift=0.03,
        default_size_usd=20e6,
        daily_turnover=0.002,
        zero_volume_prob=0.35,
        volume_dispersion=1.0,
    ),
    "private_credit": _ClassModel(
        vol=0.01,
        accrues=True,
        default_apy=9.0,
        jumps=True,
        default_size_usd=100e6,
        daily_turnover=0.002,
        zero_volume_prob=0.5,
        volume_dispersion=1.0,
    ),
    "equity": _ClassModel(vol=0.28, drift=0.07, default_size_usd=50e6, daily_turnover=0.05),
    "corporate_bond": _ClassModel(
        vol=0.04,
        accrues=True,
        default_apy=5.0,
        default_size_usd=50e6,
        daily_turnover=0.005,
    ),
}

# Stable-NAV ($1) funds hold their peg tighter than accumulating funds hold NAV.
_STABLE_PREMIUM_SD = 2e-4
_STABLE_PREMIUM_HALF_LIFE_H = 4.0
# Mint/redeem arbitrage bounds how far a NAV-pinned token can stray from NAV.
_PREMIUM_CLIP_SDS = 6.0
_IMPAIRMENT_RANGE = (0.02, 0.08)


def _market_size(asset: Asset, model: _ClassModel) -> float:
    """The token's market size in USD: from the catalog where given, else the class default."""
    return positive_detail(asset.underlying_asset_details, SIZE_KEYS) or model.default_size_usd


def _check_bars(asset_id: str, *arrays: np.ndarray) -> None:
    """Bulk-check what BarPayload would check per message: prices/NAV > 0, volume >= 0.

    Raises:
        RuntimeError: If the simulation produced a non-finite or out-of-range value,
            which would be a bug in the model parameters, not bad input.
    """
    *prices, volume, nav = arrays
    ok = all(bool(np.all(np.isfinite(a) & (a > 0))) for a in (*prices, nav))
    ok = ok and bool(np.all(np.isfinite(volume) & (volume >= 0)))
    if not ok:
        raise RuntimeError(f"simulated bars for {asset_id} left the valid range")


class _AssetSim:
    """One asset's parameters, path state and random stream."""

    __slots__ = (
        "asset",
        "jump_rate",
        "kappa",
        "last_time",
        "log_growth_h",
        "model",
        "mu",
        "nav",
        "nav_pinned",
        "notional_h",
        "premium",
        "premium_sd",
        "price",
        "rng",
        "sigma_h",
        "stable",
    )

    def __init__(self, asset: Asset, rng: np.random.Generator, *, impairment_rate: float) -> None:
        model = _MODELS[asset.asset_class]
        self.asset = asset
        self.model = model
        self.rng = rng
        self.nav_pinned = asset.nav_pinned
        self.stable = self.nav_pinned and abs(asset.reference_price - 1.0) <= _STABLE_NAV_TOLERANCE
        apy = asset.apy if asset.apy is not None else model.default_apy
        # Stable funds distribute yield as tokens, so their NAV does not grow.
        growth = 0.0 if self.stable or not model.accrues else math.log1p(apy / 100.0)
        self.log_growth_h = growth / HOURS_PER_YEAR
        self.sigma_h = model.vol / math.sqrt(HOURS_PER_YEAR)
        # mu is the hourly log drift of the random walk, Ito-corrected so the
        # expected price (not the median) grows at the nominal rate.
        annual = growth if model.accrues else model.drift
        self.mu = annual / HOURS_PER_YEAR - 0.5 * self.sigma_h**2
        if self.stable:
            self.premium_sd = _STABLE_PREMIUM_SD
            half_life = _STABLE_PREMIUM_HALF_LIFE_H
        else:
            self.premium_sd = model.premium_sd
            half_life = model.premium_half_life_h
        self.kappa = math.log(2.0) / half_life
        self.jump_rate = impairment_rate if model.jumps else 0.0
        self.notional_h = _market_size(asset, model) * model.daily_turnover / 24.0
        self.last_time: datetime | None = None
        self.nav = 1.0 if self.stable else asset.reference_price
        self.premium = 0.0
        self.price = self.nav if self.nav_pinned else asset.reference_price

    # -- paths -------------------------------------------------------------------------

    def _premium_path(self, z: np.ndarray) -> np.ndarray:
        """Hourly AR(1) (exact OU) premium path starting from the current premium."""
        a = math.exp(-self.kappa)
        scale = self.premium_sd * math.sqrt(1.0 - a * a)
        bound = _PREMIUM_CLIP_SDS * self.premium_sd
        out = np.empty(z.shape[0])
        p = self.premium
        # A plain loop: the recursion is sequential and 8760 steps cost ~1 ms.
        for i, e in enumerate((z * scale).tolist()):
            p = min(max(a * p + e, -bound), bound)
            out[i] = p
        return out

    def _volume(
        self,
        prices: np.ndarray,
        dt_h: float,
        z_vol: np.ndarray,
        u_zero: np.ndarray,
        shock: np.ndarray,
    ) -> np.ndarray:
        """Token volume: log-normal noise around size-scaled notional, busier on big moves."""
        disp = self.model.volume_dispersion
        noise = np.exp(disp * z_vol - 0.5 * disp * disp)
        # E|N(0,1)| = sqrt(2/pi), so this factor averages 1 and doubles on 3-sigma moves.
        activity = 0.5 + 0.5 * np.abs(shock) / math.sqrt(2.0 / math.pi)
        volume = self.notional_h * dt_h * noise * activity / prices
        return np.where(u_zero < self.model.zero_volume_prob, 0.0, volume)

    def bars(self, n: int) -> tuple[np.ndarray, ...]:
        """Simulate ``n`` hourly bars from the current state and advance it.

        Returns:
            Arrays ``(open, high, low, close, volume, nav)``; ``nav`` is empty unless
            the asset is NAV-pinned.
        """
        rng = self.rng
        # Always draw every stream in the same order so paths never depend on parameters.
        z = rng.standard_normal(n)
        u_jump = rng.random(n)
        jump_size = rng.uniform(*_IMPAIRMENT_RANGE, n)
        u_high = rng.random(n)
        u_low = rng.random(n)
        z_vol = rng.standard_normal(n)
        u_zero = rng.random(n)

        if self.nav_pinned:
            steps = np.arange(1, n + 1, dtype=float)
            nav = self.nav * np.exp(self.log_growth_h * steps)
            premium = self._premium_path(z)
            close = nav * (1.0 + premium)
            open_ = np.empty(n)
            open_[0] = self.price
            open_[1:] = close[:-1]
            log_ret = np.log(close / open_)
            # Intrabar noise of an OU process: its instantaneous vol per sqrt(hour).
            bridge_sigma = self.premium_sd * math.sqrt(2.0 * self.kappa)
            self.nav = float(nav[-1])
            self.premium = float(premium[-1])
        else:
            log_ret = self.mu + self.sigma_h * z
            if self.jump_rate > 0.0:
                p_jump = -math.expm1(-self.jump_rate)
                log_ret = log_ret + np.where(u_jump < p_jump, np.log1p(-jump_size), 0.0)
            close = self.price * np.exp(np.cumsum(log_ret))
            open_ = np.empty(n)
            open_[0] = self.price
            open_[1:] = close[:-1]
            bridge_sigma = self.sigma_h
            nav = np.empty(0)

        # Extremes of a Brownian bridge from 0 to b over one hour (exact distribution),
        # so wicks are as wide as the hour's volatility warrants.
        var2 = 2.0 * bridge_sigma**2
        root_hi = np.sqrt(log_ret**2 - var2 * np.log1p(-u_high))
        root_lo = np.sqrt(log_ret**2 - var2 * np.log1p(-u_low))
        high = open_ * np.exp(0.5 * (log_ret + root_hi))
        low = open_ * np.exp(0.5 * (log_ret - root_lo))
        # Guard the OHLC invariants against last-ulp rounding between the two routes.
        high = np.maximum(high, np.maximum(open_, close))
        low = np.minimum(low, np.minimum(open_, close))

        volume = self._volume(close, 1.0, z_vol, u_zero, z)
        _check_bars(self.asset.asset_id, open_, high, low, close, volume, nav)
        self.price = float(close[-1])
        return open_, high, low, close, volume, nav

    def step(self, dt_h: float) -> tuple[float, float]:
        """Advance the path by ``dt_h`` hours for a tick; returns ``(price, volume)``."""
        rng = self.rng
        z = float(rng.standard_normal())
        u_jump = float(rng.random())
        jump_size = float(rng.uniform(*_IMPAIRMENT_RANGE))
        z_vol = float(rng.standard_normal())
        u_zero = float(rng.random())

        if self.nav_pinned:
            self.nav *= math.exp(self.log_growth_h * dt_h)
            a = math.exp(-self.kappa * dt_h)
            bound = _PREMIUM_CLIP_SDS * self.premium_sd
            p = a * self.premium + self.premium_sd * math.sqrt(1.0 - a * a) * z
            self.premium = min(max(p, -bound), bound)
            self.price = self.nav * (1.0 + self.premium)
        else:
            log_ret = self.mu * dt_h + self.sigma_h * math.sqrt(dt_h) * z
            if self.jump_rate > 0.0 and u_jump < -math.expm1(-self.jump_rate * dt_h):
                log_ret += math.log1p(-jump_size)
            self.price *= math.exp(log_ret)

        volume = self._volume(
            np.array([self.price]), dt_h, np.array([z_vol]), np.array([u_zero]), np.array([z])
        )
        return self.price, float(volume[0])

    # -- persistence -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "last_time": self.last_time.isoformat() if self.last_time else None,
            "price": self.price,
            "nav": self.nav,
            "premium": self.premium,
            "rng": self.rng.bit_generator.state,
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        last = snap.get("last_time")
        self.last_time = datetime.fromisoformat(last).astimezone(UTC) if last else None
        self.price = float(snap["price"])
        self.nav = float(snap["nav"])
        self.premium = float(snap["premium"])
        self.rng.bit_generator.state = snap["rng"]


class SimulatedMarket:
    """Deterministic, class-aware market simulator.

    Assets are always processed in ``asset_id`` order, and each has its own random
    stream, so outputs depend only on the seed, the asset and the call sequence.
    """

    SOURCE = "simulated"

    def __init__(
        self,
        assets: Sequence[Asset],
        *,
        seed: int = 7,
        impairment_rate: float = DEFAULT_IMPAIRMENT_RATE,
    ) -> None:
        """Start every asset at its reference price.

        Args:
            assets: The assets to simulate; ids must be unique.
            seed: Master seed; each asset's stream derives from ``(seed, asset_id)``.
            impairment_rate: Private-credit impairment jumps per hour (Poisson rate).

        Raises:
            ValueError: On duplicate asset ids or a negative impairment rate.
        """
        if impairment_rate < 0:
            raise ValueError("impairment_rate must be >= 0")
        ids = [a.asset_id for a in assets]
        if len(set(ids)) != len(ids):
            raise ValueError("asset ids must be unique")
        self.seed = seed
        self.impairment_rate = impairment_rate
        self._sims: list[_AssetSim] = [
            _AssetSim(a, stable_rng(seed, a.asset_id), impairment_rate=impairment_rate)
            for a in sorted(assets, key=lambda a: a.asset_id)
        ]

    @property
    def assets(self) -> list[Asset]:
        """The simulated assets in ``asset_id`` order."""
        return [s.asset for s in self._sims]

    def history(self, *, end: datetime, hours: int) -> Iterator[Envelope]:
        """Hourly OHLCV bars for the ``hours`` whole hours ending at ``end`` (floored).

        The simulation runs (and the per-asset state advances to the last close at the
        floored ``end``) when this is called; the returned iterator only builds the
        envelopes, ordered by bar start time and then by ``asset_id``.

        Args:
            end: Timezone-aware end; floored to the hour, it is the last bar's close.
            hours: Number of bars per asset.

        Returns:
            An iterator of ``"bar"`` envelopes with interval ``"1h"``.

        Raises:
            ValueError: If ``end`` is naive or ``hours`` is negative.
        """
        if hours < 0:
            raise ValueError("hours must be >= 0")
        last_close = floor_hour(require_aware(end, "end"))
        if hours == 0 or not self._sims:
            return iter(())
        start = last_close - hours * _HOUR
        times = [start + i * _HOUR for i in range(hours)]
        columns = []
        for sim in self._sims:
            o, h, lo, c, v, nav = sim.bars(hours)
            sim.last_time = last_close
            columns.append(
                (
                    sim.asset.asset_id,
                    o.tolist(),
                    h.tolist(),
                    lo.tolist(),
                    c.tolist(),
                    v.tolist(),
                    nav.tolist() if sim.nav_pinned else None,
                )
            )
        return self._bar_envelopes(times, columns)

    def daily_series(self, days: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each asset's daily closes and NAVs (empty unless NAV-pinned) over ``days``
        days of hourly simulation, for backtests that need paths without envelopes.

        Advances the simulation like :meth:`history` does.
        """
        if days < 0:
            raise ValueError("days must be >= 0")
        out = {}
        for sim in self._sims:
            _, _, _, close, _, nav = sim.bars(days * 24)
            out[sim.asset.asset_id] = (close[23::24].copy(), nav[23::24].copy())
        return out

    def _bar_envelopes(
        self, times: list[datetime], columns: list[tuple[Any, ...]]
    ) -> Iterator[Envelope]:
        # Full pydantic validation costs ~10 us a message, which dominates a year of
        # history for a whole catalog. The arrays were already checked in bulk
        # (_check_bars), so one envelope is built through make() as a validated template
        # and the rest are model_copy()'d from it, which skips re-validation.
        template: Envelope | None = None
        for i, t in enumerate(times):
            ingest_time = datetime.now(UTC)
            for asset_id, o, h, lo, c, v, nav in columns:
                payload: dict[str, Any] = {
                    "open": o[i],
                    "high": h[i],
                    "low": lo[i],
                    "close": c[i],
                    "volume": v[i],
                    "interval": "1h",
                }
                if nav is not None:
                    payload["nav"] = nav[i]
                if template is None:
                    template = make(
                        source=self.SOURCE,
                        kind="bar",
                        asset_id=asset_id,
                        event_time=t,
                        payload=payload,
                    )
                    yield template
                    continue
                yield template.model_copy(
                    update={
                        "asset_id": asset_id,
                        "event_time": t,
                        "ingest_time": ingest_time,
                        "payload": payload,
                    }
                )

    def ticks(self, now: datetime) -> list[Envelope]:
        """One ``"tick"`` per asset at ``now``, continuing each asset's path.

        The move scales with the time since the asset's previous bar or tick; a time
        at or before it (or the very first call) gives a zero-length step.

        Args:
            now: Timezone-aware event time of the ticks.

        Raises:
            ValueError: If ``now`` is naive.
        """
        now = require_aware(now, "now")
        out: list[Envelope] = []
        for sim in self._sims:
            last = sim.last_time
            dt_h = 0.0 if last is None else max((now - last).total_seconds() / 3600.0, 0.0)
            price, volume = sim.step(dt_h)
            if last is None or now > last:
                sim.last_time = now
            payload: dict[str, Any] = {"price": price, "volume": volume}
            if sim.nav_pinned:
                payload["nav"] = sim.nav
            out.append(
                make(
                    source=self.SOURCE,
                    kind="tick",
                    asset_id=sim.asset.asset_id,
                    event_time=now,
                    payload=payload,
                )
            )
        return out

    def state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot: per asset, last time, price, NAV, premium, RNG."""
        return {
            "version": _STATE_VERSION,
            "seed": self.seed,
            "assets": {sim.asset.asset_id: sim.snapshot() for sim in self._sims},
        }

    @classmethod
    def from_state(
        cls,
        assets: Sequence[Asset],
        state: Mapping[str, Any],
        *,
        seed: int,
        impairment_rate: float = DEFAULT_IMPAIRMENT_RATE,
    ) -> SimulatedMarket:
        """Resume exactly where a :meth:`state` snapshot left off.

        Assets missing from the snapshot (new to the catalog) start fresh from ``seed``;
        snapshot entries for assets no longer simulated are ignored.

        Args:
            assets: The assets to simulate.
            state: A snapshot from :meth:`state`, possibly round-tripped through JSON.
            seed: Master seed for assets the snapshot lacks.
            impairment_rate: Private-credit impairment jumps per hour.

        Raises:
            ValueError: If the snapshot's version is not understood.
        """
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported simulator state version {state.get('version')!r}")
        market = cls(assets, seed=seed, impairment_rate=impairment_rate)
        snaps: Mapping[str, Any] = state.get("assets", {})
        for sim in market._sims:
            snap = snaps.get(sim.asset.asset_id)
            if snap is None:
                logger.info("no simulator state for %s; starting fresh", sim.asset.asset_id)
                continue
            sim.restore(snap)
        return market
