"""Unit tests for the deterministic simulated on-chain metrics."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.catalog import load_catalog
from core.domain import Asset
from core.envelope import Envelope, decode
from ingestion.simulated_onchain import SimulatedOnchain, is_transfer_restricted

END = datetime(2025, 3, 1, 12, 34, 56, tzinfo=UTC)
END_HOUR = datetime(2025, 3, 1, 12, tzinfo=UTC)
DAYS = 365
CATALOG = load_catalog()
BY_ID = {a.asset_id: a for a in CATALOG}

METRICS = (
    "holder_count",
    "transfer_volume",
    "transfer_count",
    "dex_liquidity",
    "exchange_inflow",
    "exchange_outflow",
    "nav",
    "apy",
    "tvl_usd",
)


def make_asset(asset_id: str, asset_class: str, reference_price: float, **details: Any) -> Asset:
    return Asset(
        asset_id=asset_id,
        symbol=asset_id.upper(),
        name=f"Test {asset_id}",
        issuer="Test Issuer",
        asset_class=asset_class,
        blockchain_network="ethereum",
        chains=["ethereum"],
        reference_price=reference_price,
        description="A test asset.",
        underlying_asset_details=details,
    )


def key(envelopes: Iterable[Envelope]) -> list[tuple[Any, ...]]:
    """What must be deterministic: everything but the wall-clock ingest time."""
    return [(e.kind, e.asset_id, e.event_time, e.payload) for e in envelopes]


@pytest.fixture(scope="module")
def year() -> dict[str, list[dict[str, Any]]]:
    """A year of daily snapshots for the whole catalog, payloads per asset in time order."""
    out: dict[str, list[dict[str, Any]]] = {a.asset_id: [] for a in CATALOG}
    for env in SimulatedOnchain(CATALOG, seed=7).history(end=END, hours=DAYS * 24):
        out[env.asset_id or ""].append(env.payload)
    return out


def test_snapshot_gives_one_onchain_envelope_per_asset() -> None:
    envs = SimulatedOnchain(CATALOG).snapshot(END)
    assert [e.asset_id for e in envs] == sorted(a.asset_id for a in CATALOG)
    for env in envs:
        assert env.kind == "onchain"
        assert env.source == "simulated-onchain"
        assert env.event_time == END
        assert env.payload["chain"] == BY_ID[env.asset_id or ""].blockchain_network


def test_history_count_times_and_order() -> None:
    envs = list(SimulatedOnchain(CATALOG).history(end=END, hours=10 * 24))
    assert len(envs) == 10 * len(CATALOG)
    times = sorted({e.event_time for e in envs})
    assert times == [END_HOUR - timedelta(days=k) for k in range(9, -1, -1)]
    assert [(e.event_time, e.asset_id) for e in envs] == sorted(
        (e.event_time, e.asset_id) for e in envs
    )
    hourly = list(SimulatedOnchain(CATALOG[:2]).history(end=END, hours=6, every_hours=1))
    assert len(hourly) == 12
    # A window that is not a whole number of steps still ends at the floored end.
    partial = list(SimulatedOnchain(CATALOG[:1]).history(end=END, hours=36))
    assert [e.event_time for e in partial] == [END_HOUR - timedelta(days=1), END_HOUR]
    assert list(SimulatedOnchain(CATALOG).history(end=END, hours=0)) == []


def test_envelopes_survive_the_codec() -> None:
    for env in SimulatedOnchain(CATALOG).history(end=END, hours=5 * 24):
        assert decode(env.to_bytes()) == env


def test_same_seed_is_deterministic_and_seeds_differ() -> None:
    def run(seed: int) -> list[tuple[Any, ...]]:
        sim = SimulatedOnchain(CATALOG, seed=seed)
        return key([*sim.history(end=END, hours=30 * 24), *sim.snapshot(END + timedelta(hours=5))])

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_asset_path_does_not_depend_on_other_assets() -> None:
    alone = SimulatedOnchain([BY_ID["paxg"]]).history(end=END, hours=20 * 24)
    together = SimulatedOnchain(CATALOG).history(end=END, hours=20 * 24)
    assert key(alone) == key(e for e in together if e.asset_id == "paxg")


def test_metrics_are_non_negative(year: dict[str, list[dict[str, Any]]]) -> None:
    for asset_id, payloads in year.items():
        assert len(payloads) == DAYS, asset_id
        for p in payloads:
            for name in METRICS:
                assert p.get(name) is None or p[name] >= 0, (asset_id, name)
            assert p["holder_count"] >= 1
            assert p["tvl_usd"] > 0


def test_holder_counts_grow_slowly(year: dict[str, list[dict[str, Any]]]) -> None:
    for asset_id, payloads in year.items():
        holders = [p["holder_count"] for p in payloads]
        assert holders[-1] > holders[0], asset_id
        # Growth, not a boom: under doubling in a year, and never far below the start.
        assert holders[-1] < 2 * holders[0], asset_id
        assert min(holders) >= 0.95 * holders[0], asset_id
        daily = [abs(b - a) / a for a, b in itertools.pairwise(holders)]
        assert max(daily) < 0.05, asset_id


def test_holder_scales_are_class_typical(year: dict[str, list[dict[str, Any]]]) -> None:
    for asset in CATALOG:
        first = year[asset.asset_id][0]["holder_count"]
        if asset.asset_class in ("treasury", "money_market"):
            assert 100 <= first <= 5000, asset.asset_id
        elif asset.asset_class == "gold":
            assert 10_000 <= first <= 100_000, asset.asset_id
        elif asset.asset_class == "real_estate":
            assert 50 <= first < 1000, asset.asset_id


def test_details_set_holders_and_size() -> None:
    asset = make_asset("big", "treasury", 1.0, holders=12_345, aum_usd=2e9)
    (env,) = SimulatedOnchain([asset]).snapshot(END)
    assert env.payload["holder_count"] == 12_345
    assert env.payload["tvl_usd"] == pytest.approx(2e9, rel=1e-9)


def test_transfers_scale_with_market_size() -> None:
    small = make_asset("small", "gold", 100.0, market_cap_usd=10e6)
    large = make_asset("large", "gold", 100.0, market_cap_usd=1e9)
    envs = list(SimulatedOnchain([small, large]).history(end=END, hours=60 * 24))

    def mean(asset_id: str, name: str) -> float:
        values = [e.payload[name] for e in envs if e.asset_id == asset_id]
        return sum(values) / len(values)

    for name in ("transfer_volume", "transfer_count", "tvl_usd", "dex_liquidity"):
        assert mean("large", name) > 30 * mean("small", name), name


def test_real_estate_has_days_without_transfers(year: dict[str, list[dict[str, Any]]]) -> None:
    payloads = year["realt-13245-monica"]
    quiet = sum(p["transfer_count"] == 0 for p in payloads)
    assert 0.2 * DAYS < quiet < 0.6 * DAYS
    assert all(p["transfer_volume"] == 0 for p in payloads if p["transfer_count"] == 0)


def test_restricted_tokens_have_no_dex_depth_or_exchange_flows(
    year: dict[str, list[dict[str, Any]]],
) -> None:
    restricted = [a for a in CATALOG if is_transfer_restricted(a)]
    assert {"buidl", "ousg", "jaaa", "realt-13245-monica", "slvon"} <= {
        a.asset_id for a in restricted
    }
    for asset in restricted:
        for p in year[asset.asset_id]:
            assert p["dex_liquidity"] <= 1e-4 * p["tvl_usd"], asset.asset_id
            assert "exchange_inflow" not in p and "exchange_outflow" not in p, asset.asset_id


def test_freely_traded_tokens_have_dex_depth_and_flows_only_where_exchange_traded(
    year: dict[str, list[dict[str, Any]]],
) -> None:
    for asset in CATALOG:
        if is_transfer_restricted(asset):
            continue
        payloads = year[asset.asset_id]
        assert all(p["dex_liquidity"] >= 1e-3 * p["tvl_usd"] for p in payloads), asset.asset_id
        has_flows = asset.asset_class in ("gold", "commodity", "equity")
        for p in payloads:
            assert ("exchange_inflow" in p) == has_flows, asset.asset_id
            assert ("exchange_outflow" in p) == has_flows, asset.asset_id
    paxg = year["paxg"]
    assert any(p["exchange_inflow"] > p["exchange_outflow"] for p in paxg)
    assert any(p["exchange_inflow"] < p["exchange_outflow"] for p in paxg)


def test_nav_only_for_nav_pinned_classes(year: dict[str, list[dict[str, Any]]]) -> None:
    for asset in CATALOG:
        for p in year[asset.asset_id]:
            assert ("nav" in p) == asset.nav_pinned, asset.asset_id


def test_stable_funds_hold_a_dollar_and_accumulating_funds_accrue_apy(
    year: dict[str, list[dict[str, Any]]],
) -> None:
    for asset_id in ("buidl", "benji", "stbt"):
        assert all(p["nav"] == 1.0 for p in year[asset_id])
    for asset_id in ("ousg", "usyc", "ustbl", "eutbl"):
        payloads = year[asset_id]
        navs = [p["nav"] for p in payloads]
        assert all(b > a for a, b in itertools.pairwise(navs)), asset_id
        # 364 daily steps separate the first snapshot from the last.
        growth_pct = ((navs[-1] / navs[0]) ** (365 / 364) - 1) * 100
        assert growth_pct == pytest.approx(BY_ID[asset_id].apy, abs=0.6), asset_id


def test_apy_drifts_slightly_around_the_catalog_yield(
    year: dict[str, list[dict[str, Any]]],
) -> None:
    for asset in CATALOG:
        apys = [p.get("apy") for p in year[asset.asset_id]]
        if asset.apy is None and not asset.nav_pinned:
            assert all(a is None for a in apys), asset.asset_id
            continue
        assert all(a is not None for a in apys), asset.asset_id
        if asset.apy is not None:
            assert apys[0] == pytest.approx(asset.apy, abs=0.1), asset.asset_id
            assert all(abs(a - asset.apy) < 1.5 for a in apys), asset.asset_id
            assert len(set(apys)) > 1, asset.asset_id


def test_state_resume_matches_uninterrupted_run() -> None:
    split = END - timedelta(days=20)
    whole = SimulatedOnchain(CATALOG, seed=3)
    expected = key(
        [*whole.history(end=END, hours=40 * 24), *whole.snapshot(END + timedelta(hours=7))]
    )

    first = SimulatedOnchain(CATALOG, seed=3)
    head = list(first.history(end=split, hours=20 * 24))
    state = json.loads(json.dumps(first.state()))
    resumed = SimulatedOnchain.from_state(CATALOG, state, seed=3)
    tail = [*resumed.history(end=END, hours=20 * 24), *resumed.snapshot(END + timedelta(hours=7))]
    assert key(head + tail) == expected


def test_from_state_starts_unknown_assets_fresh_and_checks_version() -> None:
    old = SimulatedOnchain(CATALOG[:3])
    old.history(end=END, hours=48)
    extra = make_asset("newcomer", "equity", 50.0)
    resumed = SimulatedOnchain.from_state([*CATALOG[:3], extra], old.state(), seed=7)
    fresh = SimulatedOnchain([extra])
    at = END + timedelta(days=1)
    new_env = next(e for e in resumed.snapshot(at) if e.asset_id == "newcomer")
    assert key([new_env]) == key(fresh.snapshot(at))
    with pytest.raises(ValueError, match="version"):
        SimulatedOnchain.from_state(CATALOG, {"version": 99}, seed=7)


def test_repeated_snapshot_time_does_not_advance_holders() -> None:
    sim = SimulatedOnchain(CATALOG[:5])
    first = sim.snapshot(END)
    again = sim.snapshot(END)
    assert [e.payload["holder_count"] for e in first] == [e.payload["holder_count"] for e in again]


def test_rejects_bad_arguments() -> None:
    sim = SimulatedOnchain(CATALOG[:2])
    naive = datetime(2025, 3, 1)
    with pytest.raises(ValueError, match="timezone"):
        sim.snapshot(naive)
    with pytest.raises(ValueError, match="timezone"):
        sim.history(end=naive, hours=24)
    with pytest.raises(ValueError, match="hours"):
        sim.history(end=END, hours=-1)
    with pytest.raises(ValueError, match="every_hours"):
        sim.history(end=END, hours=24, every_hours=0)
    with pytest.raises(ValueError, match="unique"):
        SimulatedOnchain([CATALOG[0], CATALOG[0]])
