from datetime import UTC, datetime

import pytest

from core.envelope import Envelope, decode, make
from core.errors import InvalidMessage


def _tick(**payload) -> Envelope:
    return make(source="simulated", kind="tick", asset_id="paxg",
                event_time=datetime(2026, 1, 1, tzinfo=UTC), payload=payload or {"price": 1.0, "volume": 0})


def test_round_trip_keeps_every_field() -> None:
    env = _tick(price=2650.5, volume=3.0)
    back = decode(env.to_bytes())
    assert back == env
    assert back.schema_version == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not JSON"),
        (b'{"source": "s"}', "kind"),
    ],
)
def test_garbage_is_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as e:
        decode(raw)
    assert reason in e.value.reason


def test_payload_rules_are_enforced_per_kind() -> None:
    good = _tick().model_dump(mode="json")
    negative = good | {"payload": {"price": -1, "volume": 0}}
    with pytest.raises(InvalidMessage, match="price"):
        decode(__import__("json").dumps(negative))
    bar_with_tick_payload = good | {"kind": "bar"}
    with pytest.raises(InvalidMessage, match="payload invalid for kind 'bar'"):
        decode(__import__("json").dumps(bar_with_tick_payload))


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make(source="s", kind="tick", asset_id="a", event_time=datetime(2026, 1, 1),
             payload={"price": 1.0, "volume": 0})


def test_unknown_fields_are_refused() -> None:
    data = _tick().model_dump(mode="json") | {"extra": 1}
    with pytest.raises(InvalidMessage, match="extra"):
        decode(__import__("json").dumps(data))


def test_every_kind_has_its_payload_rules() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    macro = make(source="statsmodels", kind="macro", asset_id=None, event_time=now,
                 payload={"series": "US.REALGDP", "value": 13000.5, "unit": "bn USD"})
    assert decode(macro.to_bytes()).payload["series"] == "US.REALGDP"
    news = make(source="simulated", kind="news", asset_id="buidl", event_time=now,
                payload={"title": "BlackRock fund grows", "assets": ["buidl"]})
    assert decode(news.to_bytes()).asset_id == "buidl"
    with pytest.raises(ValueError, match="asset_id is required"):
        make(source="s", kind="onchain", asset_id=None, event_time=now, payload={"holder_count": 5})
    with pytest.raises(ValueError, match="holder_count"):
        make(source="s", kind="onchain", asset_id="paxg", event_time=now, payload={"holder_count": -1})


def test_committed_json_schema_is_current_and_accepts_what_decode_accepts() -> None:
    import json
    from pathlib import Path

    import jsonschema

    from core.envelope import json_schema

    committed = json.loads((Path(__file__).resolve().parents[3] / "core" / "schemas" /
                            "envelope.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), "regenerate core/schemas/envelope.schema.json"
    validator = jsonschema.Draft202012Validator(committed)
    good = json.loads(_tick(price=2.0, volume=1.0).to_bytes())
    validator.validate(good)
    bad = good | {"payload": {"price": -2.0, "volume": 1.0}}
    assert list(validator.iter_errors(bad))
    no_asset = {k: v for k, v in good.items() if k != "asset_id"}
    assert list(validator.iter_errors(no_asset))
