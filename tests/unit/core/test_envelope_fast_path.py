"""``decode_fields`` must accept exactly what ``decode`` accepts, with the same values,
and reject the rest with the same reasons: it is only a cheaper way to the same answer."""

import json
from datetime import UTC, datetime

import pytest

from core.envelope import Envelope, decode, decode_fields, make
from core.errors import InvalidMessage

NOW = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


def _env(kind: str, payload: dict, asset_id: str | None = "paxg") -> dict:
    return json.loads(make(source="simulated", kind=kind, asset_id=asset_id, event_time=NOW,
                           payload=payload).to_bytes())


BAR = _env("bar", {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0})
TICK = _env("tick", {"price": 2650.5, "volume": 3.0})


def _with(base: dict, **changes) -> bytes:
    return json.dumps(base | changes).encode()


def _payload(base: dict, **changes) -> bytes:
    return json.dumps(base | {"payload": base["payload"] | changes}).encode()


ACCEPTED = [
    json.dumps(BAR).encode(),
    json.dumps(TICK),  # str as well as bytes
    json.dumps(_env("bar", {"open": 1, "high": 2, "low": 1, "close": 2, "volume": 0,
                            "interval": "1d", "nav": 1.01})).encode(),
    json.dumps(_env("onchain", {"holder_count": 5, "apy": -3.5, "chain": "ethereum"})).encode(),
    json.dumps(_env("macro", {"series": "US.CPI", "value": -0.2, "unit": "%"}, asset_id=None)).encode(),
    json.dumps(_env("news", {"title": "Fund grows \u00e9\u4e2d", "assets": ["buidl"]})).encode(),
    _with(TICK, event_time="2026-01-01T13:30:00+01:00"),  # converted to UTC
    _with(TICK, event_time=1767270600),  # unix seconds
    _with({k: v for k, v in TICK.items() if k not in ("ingest_time", "schema_version")}),
    _payload(TICK, price="2.5"),  # lax numbers, as pydantic allows them
    _payload(_env("onchain", {"holder_count": 5}), holder_count=7.0),
    (b'  {"source":"s","kind":"tick","asset_id":"a","event_time":"2026-01-01T00:00:00Z",'
     b'"payload":{"price":1,"volume":0},"source":"t"}  '),  # whitespace, a repeated key
    '\ufeff'.encode() + json.dumps(TICK).encode(),  # a BOM: json.loads takes it, so decode does
    json.dumps(TICK).encode("utf-16"),  # json.loads detects UTF-16
    _with(TICK, schema_version=True),  # True == 1 to pydantic's lax Python mode
]

REJECTED = [
    b"", b"{not json", b"[1, 2]", b"\xff\xfe\x00", b"null", b'"text"', b"{}",
    _with(TICK, kind="candle"),
    _with(TICK, kind="bar"),  # a tick payload is not a bar
    _with(BAR, asset_id=None),
    _with({k: v for k, v in BAR.items() if k != "asset_id"}),
    _with(TICK, asset_id=""),
    _with(TICK, source=""),
    _with(TICK, source="x" * 65),
    _with(TICK, schema_version=2),
    _with(TICK, schema_version=1.5),
    _with(TICK, event_time="2026-01-01T00:00:00"),  # naive
    _with(TICK, ingest_time="2026-01-01T00:00:00"),
    _with(TICK, event_time="yesterday"),
    _with(TICK, extra=1),
    _with(TICK, payload=[1, 2]),
    _payload(TICK, price=-1),
    _payload(TICK, price=0),
    _payload(TICK, price="abc"),
    _payload(TICK, colour="red"),
    _payload(BAR, interval="5m"),
    _payload(_env("onchain", {"holder_count": 5}), holder_count=7.5),
    _payload(_env("onchain", {"apy": 5.0}), apy=1001),
    _payload(_env("news", {"title": "t"}), title=""),
    (b'{"source":"a\\ud800","kind":"tick","asset_id":"a","event_time":"2026-01-01T00:00:00Z",'
     b'"payload":{"price":1,"volume":0}}'),  # a lone surrogate
    (b'{"source":"s","kind":"tick","asset_id":"a","event_time":"2026-01-01T00:00:00Z",'
     b'"payload":{"price":NaN,"volume":0}}'),
    json.dumps(TICK).encode() + b"x",
]


def _as_decoded(env: Envelope) -> dict:
    return {name: getattr(env, name) for name in Envelope.model_fields}


@pytest.mark.parametrize("raw", ACCEPTED)
def test_accepts_what_decode_accepts_with_the_same_values(raw: bytes | str) -> None:
    fast, slow = decode_fields(raw), _as_decoded(decode(raw))
    assert fast.keys() == slow.keys()
    raw_json = json.loads(raw)
    for name in fast:
        if name == "ingest_time" and "ingest_time" not in raw_json:
            continue  # stamped at decoding
        assert fast[name] == slow[name], name
    # The payload is the one sent, types and all, not a converted copy.
    assert repr(fast["payload"]) == repr(slow["payload"])
    assert fast["event_time"].tzinfo is UTC and fast["ingest_time"].tzinfo is UTC


@pytest.mark.parametrize("raw", REJECTED)
def test_rejects_what_decode_rejects_with_the_same_reason(raw: bytes) -> None:
    with pytest.raises(InvalidMessage) as slow:
        decode(raw)
    with pytest.raises(InvalidMessage) as fast:
        decode_fields(raw)
    assert fast.value.reason == slow.value.reason


def test_a_missing_ingest_time_is_stamped_now() -> None:
    raw = _with({k: v for k, v in TICK.items() if k != "ingest_time"})
    before = datetime.now(UTC)
    assert before <= decode_fields(raw)["ingest_time"] <= datetime.now(UTC)


def test_the_fast_path_knows_every_rule_of_the_envelope() -> None:
    # decode_fields re-applies the envelope's own rules by hand (timezones, asset
    # required, payload per kind); a new rule on Envelope must be added there too.
    decorators = Envelope.__pydantic_decorators__
    assert set(decorators.field_validators) == {"_aware_utc"}
    assert decorators.field_validators["_aware_utc"].info.fields == ("event_time", "ingest_time")
    assert not decorators.model_validators and not decorators.validators
    assert set(Envelope.model_fields) == {"schema_version", "source", "kind", "asset_id",
                                          "event_time", "ingest_time", "payload"}
