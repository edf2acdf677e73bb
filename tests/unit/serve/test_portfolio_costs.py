"""Weighted average cost, Transfer-log parsing and the pure valuation helpers."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from serve.portfolio.chain import TRANSFER_TOPIC, address_topic, parse_transfer
from serve.portfolio.costs import Movement, average_cost, movement, to_tokens
from serve.portfolio.valuation import MIN_RETURNS, allocation, composite_risk, historical_var

WALLET = "0x00000000000000000000000000000000000000aa"
OTHER = "0x00000000000000000000000000000000000000bb"


def m(quantity: str, price: float | None) -> Movement:
    return Movement(Decimal(quantity), price)


def test_average_cost_weights_inflows_and_outflows_leave_the_average() -> None:
    p = average_cost([m("10", 2000.0), m("5", 2300.0), m("-6", 2500.0)])
    assert p.quantity == Decimal(9)
    assert p.avg_purchase_price == Decimal(2100)
    assert p.cost == Decimal(18900)
    assert p.realised_pnl == Decimal(6 * 400)  # sold 6 at 2500 against 2100


def test_an_emptied_position_starts_afresh() -> None:
    p = average_cost([m("2", 100.0), m("-2", 150.0), m("1", 300.0)])
    assert (p.quantity, p.avg_purchase_price, p.realised_pnl) == (1, 300, 100)


def test_outflows_beyond_the_known_quantity_stop_at_zero() -> None:
    p = average_cost([m("1", 10.0), m("-5", 12.0)])
    assert (p.quantity, p.cost, p.avg_purchase_price) == (0, 0, None)
    assert p.realised_pnl == Decimal(2)  # only the known token counts


def test_an_unpriced_inflow_makes_the_cost_unknown_until_emptied() -> None:
    p = average_cost([m("1", 10.0), m("1", None)])
    assert (p.quantity, p.cost, p.avg_purchase_price) == (2, None, None)
    assert average_cost([m("1", None), m("-1", 5.0), m("3", 7.0)]).avg_purchase_price == 7


def test_movement_signs_and_self_transfers() -> None:
    assert movement(wallet=WALLET, sender=OTHER, receiver=WALLET.upper().replace("0X", "0x"),
                    amount_raw=15 * 10**5, decimals=6, price=1.0).quantity == Decimal("1.5")
    assert movement(wallet=WALLET, sender=WALLET, receiver=OTHER, amount_raw=3, decimals=0,
                    price=None).quantity == -3
    assert movement(wallet=WALLET, sender=WALLET, receiver=WALLET, amount_raw=3, decimals=0,
                    price=None).quantity == 0
    assert to_tokens(10**30, 18) == Decimal(10**12)


def test_parse_transfer_reads_data_or_an_indexed_amount() -> None:
    entry = {
        "address": "0xAbC0000000000000000000000000000000000001",
        "topics": [bytes.fromhex(TRANSFER_TOPIC[2:]), address_topic(OTHER),
                   address_topic(WALLET)],
        "data": (1234).to_bytes(32, "big"),
        "transactionHash": "0xDEAD", "logIndex": 3, "blockNumber": 7,
    }
    t = parse_transfer(entry)
    assert t is not None
    assert (t.contract, t.sender, t.receiver, t.amount_raw, t.tx_hash, t.log_index,
            t.block_number) == ("0xabc0000000000000000000000000000000000001", OTHER, WALLET,
                                1234, "0xdead", 3, 7)
    indexed = entry | {"topics": [*entry["topics"], "0x" + "00" * 31 + "09"], "data": "0x"}
    assert parse_transfer(indexed).amount_raw == 9
    assert parse_transfer(entry | {"topics": ["0x" + "11" * 32, *entry["topics"][1:]]}) is None
    assert parse_transfer(entry | {"data": b""}) is None


def test_allocation_and_composite_risk() -> None:
    valued = [
        {"asset_id": "a", "symbol": "A", "asset_class": "gold", "market_value": 30.0},
        {"asset_id": "a", "symbol": "A", "asset_class": "gold", "market_value": 30.0},
        {"asset_id": "b", "symbol": "B", "asset_class": "treasury", "market_value": 40.0},
        {"asset_id": "c", "symbol": "C", "asset_class": "treasury", "market_value": None},
    ]
    alloc = allocation(valued)
    assert [(r["asset_id"], r["weight"]) for r in alloc["by_asset"]] == [("a", 0.6), ("b", 0.4)]
    assert [(r["asset_class"], r["value"]) for r in alloc["by_asset_class"]] == [
        ("gold", 60.0), ("treasury", 40.0)]
    assert allocation([]) == {"by_asset": [], "by_asset_class": []}
    risk = composite_risk({"a": 60.0, "b": 40.0, "c": 0.0},
                          {"a": {"composite_score": 50.0, "market_risk": None},
                           "c": {"composite_score": 99.0}})
    assert risk["composite_score"] == 50.0 and risk["market_risk"] is None
    assert risk["scored_weight"] == 0.6 and risk["unscored_assets"] == ["b"]


def test_historical_var_needs_enough_common_days() -> None:
    start = date(2026, 1, 1)
    days = [start + timedelta(days=i) for i in range(MIN_RETURNS + 1)]
    closes = {"a": {d: 100.0 * (1.01 if i % 2 else 0.99) for i, d in enumerate(days)}}
    full = historical_var({"a": 2.0}, closes, {"a": 200.0})
    assert full["returns_used"] == MIN_RETURNS
    assert full["var_95_1d_pct"] == pytest.approx(1 - 0.99 / 1.01)
    assert full["var_95_1d"] == pytest.approx(200.0 * (1 - 0.99 / 1.01))
    short = historical_var({"a": 2.0}, {"a": dict(list(closes["a"].items())[:-1])},
                           {"a": 200.0})
    assert short["var_95_1d"] is None and short["returns_used"] == MIN_RETURNS - 1
    # A second asset without those days shrinks the common window.
    other = {"b": {days[0]: 1.0, days[1]: 1.0}}
    assert historical_var({"a": 2.0, "b": 1.0}, closes | other,
                          {"a": 200.0, "b": 1.0})["returns_used"] == 1
