"""Unit tests for the deterministic simulated market."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from core.domain import ASSET_CLASSES, Asset
from core.envelope import Envelope, decode
from ingestion.simulated import SimulatedMarket

END = datetime(2025, 3, 1, 12, 34, 56, tzinfo=UTC)
END_HOUR = datetime(2025, 3, 1, 12, tzinfo=UTC)
YEAR = 8760


def make_asset(
    asset_id: str,
    asset_class: str,
    reference_price: float,
    apy: float | None = None,
    **details: Any,
) -> Asset:
    return Asset(
        asset_id=asset_id,
        symbol=asset_id.upper(),
        name=f"Test {asset_id}",
        issuer="Test Issuer",
        asset_class=asset_class,
        blockchain_network="ethereum",
        chains=["ethereum"],
        reference_price=reference_price,
        apy=apy,
        description="A test asset.",
        underlying_asset_details=details,
    )


BUIDL = make_asset("buidl", "treasury", 1.0, 4.5)
OUSG = make_asset("ousg", "treasury", 105.0, 4.8)
BENJI = make_asset("benji", "money_market", 1.0, 4.3)
PAXG = make_asset("paxg", "gold", 2650.0)
SILVER = make_asset("silver", "commodity", 30.0)
REALT = make_asset("realt", "real_estate", 50.0)
CREDIT = make_asset("credit", "private_credit", 1.0, 9.0)
EQUITY = make_asset("equity", "equity", 200.0)
BOND = make_asset("bond", "corporate_bond", 100.0, 5.0)
ALL = [BUIDL, OUSG, BENJI, PAXG, SILVER, REALT, CREDIT, EQUITY, BOND]


def key(envelopes: Iterable[Envelope]) -> list[tuple[Any, ...]]:
    """What must be deterministic: everything but the wall-clock ingest time."""
    return [(e.kind, e.asset_id, e.event_time, e.payload) for e in envelopes]


def by_asset(envelopes: Iterable[Envelope]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in envelopes:
        out.setdefault(e.asset_id, []).append(e.payload)
    return out


def series(payloads: list[dict[str, Any]], field: str) -> np.ndarray:
    return np.array([p[field] for p in payloads], dtype=float)


def hourly_log_returns(payloads: list[dict[str, Any]]) -> np.ndarray:
    closes = series(payloads, "close")
    return np.diff(np.log(np.concatenate([[payloads[0]["open"]], closes])))


def annual_vol(payloads: list[dict[str, Any]]) -> float:
    return float(hourly_log_returns(payloads).std() * math.sqrt(YEAR))


@pytest.fixture(scope="module")
def year_bars() -> dict[str, list[dict[str, Any]]]:
    market = SimulatedMarket(ALL, seed=7)
    return by_asset(market.history(end=END, hours=YEAR))


def test_every_asset_class_is_covered() -> None:
    assert {a.asset_class for a in ALL} == set(ASSET_CLASSES)


def test_history_count_order_and_shape() -> None:
    market = SimulatedMarket([PAXG, BUIDL, REALT], seed=1)
    bars = list(market.history(end=END, hours=48))

    assert len(bars) == 48 * 3
    expected_times = [END_HOUR - timedelta(hours=48 - i) for i in range(48)]
    assert [e.event_time for e in bars[::3]] == expected_times
    assert [(e.event_time, e.asset_id) for e in bars] == sorted(
        (e.event_time, e.asset_id) for e in bars
    )
    assert all(e.kind == "bar" and e.source == SimulatedMarket.SOURCE for e in bars)
    assert all(e.payload["interval"] == "1h" for e in bars)
    assert all(e.event_time.tzinfo is not None for e in bars)
    # nav only for NAV-pinned classes.
    assert all(("nav" in e.payload) == (e.asset_id == "buidl") for e in bars)


def test_history_envelopes_survive_the_codec() -> None:
    market = SimulatedMarket(ALL, seed=3)
    for e in market.history(end=END, hours=5):
        assert decode(e.to_bytes()) == e


def test_zero_hours_yields_nothing() -> None:
    assert list(SimulatedMarket(ALL).history(end=END, hours=0)) == []


def test_same_seed_is_deterministic() -> None:
    a = SimulatedMarket(ALL, seed=11)
    b = SimulatedMarket(list(reversed(ALL)), seed=11)

    assert key(a.history(end=END, hours=200)) == key(b.history(end=END, hours=200))
    for seconds in (1, 2, 30, 3600):
        now = END_HOUR + timedelta(seconds=seconds)
        assert key(a.ticks(now)) == key(b.ticks(now))


def test_different_seed_differs() -> None:
    a = key(SimulatedMarket(ALL, seed=1).history(end=END, hours=24))
    b = key(SimulatedMarket(ALL, seed=2).history(end=END, hours=24))
    assert a != b


def test_asset_path_does_not_depend_on_other_assets() -> None:
    alone = by_asset(SimulatedMarket([PAXG], seed=5).history(end=END, hours=100))
    together = by_asset(SimulatedMarket(ALL, seed=5).history(end=END, hours=100))
    assert alone["paxg"] == together["paxg"]


def test_ohlc_consistent_and_positive_for_every_class(
    year_bars: dict[str, list[dict[str, Any]]],
) -> None:
    assert set(year_bars) == {a.asset_id for a in ALL}
    for asset_id, payloads in year_bars.items():
        assert len(payloads) == YEAR
        o, h, lo, c, v = (series(payloads, f) for f in ("open", "high", "low", "close", "volume"))
        assert np.all(lo > 0), asset_id
        assert np.all(lo <= np.minimum(o, c)), asset_id
        assert np.all(np.maximum(o, c) <= h), asset_id
        assert np.all(v >= 0), asset_id
        # Each bar opens at the previous close.
        assert np.array_equal(o[1:], c[:-1]), asset_id


def test_paths_start_near_reference_price(
    year_bars: dict[str, list[dict[str, Any]]],
) -> None:
    for asset in ALL:
        first_open = year_bars[asset.asset_id][0]["open"]
        assert first_open == pytest.approx(asset.reference_price, rel=0.01), asset.asset_id


def test_accumulating_treasury_nav_accrues_apy(
    year_bars: dict[str, list[dict[str, Any]]],
) -> None:
    payloads = year_bars["ousg"]
    nav = series(payloads, "nav")
    close = series(payloads, "close")

    growth = nav[-1] / OUSG.reference_price - 1.0
    assert growth == pytest.approx(0.048, abs=0.002)
    assert np.all(np.diff(nav) > 0)
    assert np.all(np.abs(close / nav - 1.0) < 0.005)
    assert np.all(np.abs(series(payloads, "high") / nav - 1.0) < 0.005)
    assert np.all(np.abs(series(payloads, "low") / nav - 1.0) < 0.005)


@pytest.mark.parametrize("asset_id", ["buidl", "benji"])
def test_stable_nav_funds_hold_a_dollar(
    year_bars: dict[str, list[dict[str, Any]]], asset_id: str
) -> None:
    payloads = year_bars[asset_id]
    assert np.all(series(payloads, "nav") == 1.0)
    for field in ("open", "high", "low", "close"):
        values = series(payloads, field)
        assert np.all(np.abs(values - 1.0) <= 0.01), field
    # It does jitter, rather than sitting exactly on 1.
    assert series(payloads, "close").std() > 0


def test_gold_volatility_is_plausible(year_bars: dict[str, list[dict[str, Any]]]) -> None:
    assert 0.08 <= annual_vol(year_bars["paxg"]) <= 0.25


def test_volatility_ordering_across_classes(
    year_bars: dict[str, list[dict[str, Any]]],
) -> None:
    gold = annual_vol(year_bars["paxg"])
    assert annual_vol(year_bars["realt"]) < gold
    assert annual_vol(year_bars["bond"]) < gold
    assert annual_vol(year_bars["silver"]) > gold
    assert 0.20 <= annual_vol(year_bars["equity"]) <= 0.35


def test_real_estate_trades_thinly(year_bars: dict[str, list[dict[str, Any]]]) -> None:
    volume = series(year_bars["realt"], "volume")
    assert 0 < np.mean(volume == 0) < 1


def test_larger_tokens_trade_more() -> None:
    big = make_asset("big-gold", "gold", 2650.0, market_cap_usd=2e9)
    small = make_asset("small-gold", "gold", 2650.0, market_cap_usd=2e7)
    bars = by_asset(SimulatedMarket([big, small], seed=4).history(end=END, hours=500))

    def notional(payloads: list[dict[str, Any]]) -> float:
        return float(np.mean(series(payloads, "volume") * series(payloads, "close")))

    assert notional(bars["big-gold"]) > 10 * notional(bars["small-gold"])


def test_private_credit_has_rare_impairments_at_default_rate(
    year_bars: dict[str, list[dict[str, Any]]],
) -> None:
    returns = hourly_log_returns(year_bars["credit"])
    jumps = returns[returns < -0.015]
    # With ~4.4 expected jumps a year, the fixed seed gives at least one.
    assert 1 <= jumps.size <= 20
    assert np.all(jumps >= math.log(1 - 0.08) - 0.001)
    # Outside the jumps the path is a smooth accrual.
    calm = returns[returns >= -0.015]
    assert calm.std() * math.sqrt(YEAR) < 0.02


def test_private_credit_jump_mechanism_with_high_rate() -> None:
    market = SimulatedMarket([CREDIT], seed=9, impairment_rate=0.05)
    returns = hourly_log_returns(by_asset(market.history(end=END, hours=2000))["credit"])
    jumps = returns[returns < -0.015]
    assert 50 <= jumps.size <= 150  # about 2000 * (1 - exp(-0.05)) = 98
    assert np.all(jumps <= math.log(1 - 0.02) + 0.001)
    assert np.all(jumps >= math.log(1 - 0.08) - 0.001)


def test_no_impairments_when_rate_is_zero() -> None:
    market = SimulatedMarket([CREDIT], seed=9, impairment_rate=0.0)
    returns = hourly_log_returns(by_asset(market.history(end=END, hours=YEAR))["credit"])
    assert returns.min() > -0.01


def test_ticks_continue_from_last_close() -> None:
    market = SimulatedMarket(ALL, seed=7)
    last = {aid: p[-1] for aid, p in by_asset(market.history(end=END, hours=72)).items()}

    now = END_HOUR + timedelta(seconds=1)
    ticks = market.ticks(now)
    assert sorted(t.asset_id for t in ticks) == sorted(a.asset_id for a in ALL)
    for tick in ticks:
        assert tick.kind == "tick"
        assert tick.event_time == now
        assert tick.payload["price"] > 0 and tick.payload["volume"] >= 0
        assert tick.payload["price"] == pytest.approx(last[tick.asset_id]["close"], rel=1e-3)
        assert ("nav" in tick.payload) == (tick.asset_id in {"buidl", "ousg", "benji"})


def test_tick_moves_scale_with_elapsed_time() -> None:
    market = SimulatedMarket([PAXG], seed=21)
    list(market.history(end=END, hours=1))
    prices = [PAXG.reference_price]
    for second in range(1, 3601):
        prices.append(market.ticks(END_HOUR + timedelta(seconds=second))[0].payload["price"])
    per_second = np.diff(np.log(prices))
    realised = per_second.std() * math.sqrt(YEAR * 3600)
    assert 0.12 <= realised <= 0.18
    # One-second moves are tiny.
    assert np.abs(per_second).max() < 0.001


def test_repeated_tick_time_does_not_move_the_price() -> None:
    market = SimulatedMarket([PAXG, OUSG], seed=2)
    list(market.history(end=END, hours=3))
    now = END_HOUR + timedelta(seconds=5)
    first = market.ticks(now)
    again = market.ticks(now)
    assert [t.payload["price"] for t in first] == [t.payload["price"] for t in again]
    assert all(t.payload["volume"] == 0 for t in again)


def test_state_resume_matches_uninterrupted_run() -> None:
    uninterrupted = SimulatedMarket(ALL, seed=13)
    list(uninterrupted.history(end=END, hours=100))
    uninterrupted.ticks(END_HOUR + timedelta(seconds=1))

    snapshot = json.loads(json.dumps(uninterrupted.state()))
    resumed = SimulatedMarket.from_state(ALL, snapshot, seed=13)

    for seconds in (2, 3, 60, 7200):
        now = END_HOUR + timedelta(seconds=seconds)
        assert key(resumed.ticks(now)) == key(uninterrupted.ticks(now))
    later = END + timedelta(days=3)
    assert key(resumed.history(end=later, hours=24)) == key(
        uninterrupted.history(end=later, hours=24)
    )


def test_from_state_starts_unknown_assets_fresh() -> None:
    snapshot = SimulatedMarket([PAXG], seed=13).state()
    resumed = SimulatedMarket.from_state([PAXG, BOND], snapshot, seed=13)
    fresh = SimulatedMarket([BOND], seed=13)
    assert (
        by_asset(resumed.history(end=END, hours=10))["bond"]
        == by_asset(fresh.history(end=END, hours=10))["bond"]
    )


def test_rejects_naive_times_and_duplicate_ids() -> None:
    market = SimulatedMarket([PAXG])
    with pytest.raises(ValueError):
        market.ticks(datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        market.history(end=datetime(2025, 1, 1), hours=1)
    with pytest.raises(ValueError):
        SimulatedMarket([PAXG, PAXG])


def test_a_year_for_thirty_assets_has_every_bar() -> None:
    # Speed is measured by bench/, never asserted here.
    assets = [
        make_asset(f"asset-{i:02d}", a.asset_class, a.reference_price, a.apy)
        for i, a in enumerate(ALL * 4)
    ][:30]
    market = SimulatedMarket(assets, seed=7)
    count = sum(1 for _ in market.history(end=END, hours=YEAR))
    assert count == 30 * YEAR
