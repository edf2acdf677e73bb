import json

from pipeline.live import live_tick

SYMBOLS = {"paxg": "PAXG"}


def _raw(**over) -> bytes:
    msg = {"kind": "tick", "asset_id": "paxg", "event_time": "2026-01-01T00:00:00+00:00",
           "ingest_time": "2026-01-01T00:00:00.1+00:00", "source": "simulated",
           "payload": {"price": 2650.0, "volume": 2.0}}
    return json.dumps(msg | over).encode()


def test_a_good_tick_becomes_the_live_message() -> None:
    msg, reason = live_tick(_raw(), SYMBOLS)
    assert reason is None
    assert msg == {"asset_id": "paxg", "symbol": "PAXG", "time": "2026-01-01T00:00:00+00:00",
                   "price": 2650.0, "volume": 2.0, "nav": None, "source": "simulated",
                   "ingest_time": "2026-01-01T00:00:00.1+00:00"}


def test_cheap_checks_skip_what_is_not_a_live_tick() -> None:
    assert live_tick(b"{oops", SYMBOLS) == (None, "malformed")
    assert live_tick(_raw(kind="bar"), SYMBOLS) == (None, "not_a_tick")
    assert live_tick(_raw(asset_id="nope"), SYMBOLS) == (None, "unknown_asset")
    assert live_tick(_raw(payload={"price": -1}), SYMBOLS) == (None, "bad_price")
    assert live_tick(_raw(payload={"price": "NaN"}), SYMBOLS) == (None, "bad_price")
    assert live_tick(_raw(payload={"price": float("inf")}), SYMBOLS)[1] == "bad_price"
