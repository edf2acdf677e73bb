"""Contract tests of the Amberdata connector against a local fake of its REST API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.catalog import load_catalog
from core.domain import Asset
from core.errors import ProviderAuthError, ProviderBadResponse, ProviderUnavailable
from core.settings import AmberdataSettings
from ingestion.amberdata import AmberdataOptions, AmberdataSource, targets
from tests.fakes.amberdata import API_KEY, AmberdataFake, ok, transfer
from tests.fakes.server import HTML_ERROR_PAGE, FakeProvider

CATALOG = {a.asset_id: a for a in load_catalog()}
BUIDL = CATALOG["buidl"].contract_address or ""
PAXG = CATALOG["paxg"].contract_address or ""
MAY1 = datetime(2024, 5, 1, tzinfo=UTC)
MAY2 = MAY1 + timedelta(days=1)
NOW = datetime(2024, 5, 3, 2, 0, tzinfo=UTC)  # May 1 and May 2 are closed and settled
H = timedelta(hours=1)


def _fake() -> AmberdataFake:
    fake = AmberdataFake()
    fake.add_transfers(BUIDL, [
        transfer(BUIDL, MAY1 + 1 * H, "1000", decimals=6),
        transfer(BUIDL, MAY1 + 5 * H, "250.5", decimals=6),
        transfer(BUIDL, MAY1 + 23 * H, "0.5", decimals=6),
        transfer(BUIDL, MAY2, "7", decimals=6),  # exactly midnight: May 2's, not May 1's
        transfer(BUIDL, MAY2 + 12 * H, "3", decimals=6),
    ])
    fake.add_holders(BUIDL, [(MAY1, 61), (MAY2, 63)])
    fake.add_holders(PAXG, [(MAY1, 72_000), (MAY2, 72_010)])
    return fake


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(_fake()) as server:
        yield server


def _assets(*ids: str) -> list[Asset]:
    return [CATALOG[i] for i in ids]


def _source(server: FakeProvider, *, key: str = API_KEY, sleeps: list[float] | None = None,
            assets: list[Asset] | None = None, options: AmberdataOptions | None = None,
            **settings: object) -> AmberdataSource:
    config = AmberdataSettings(api_key=key, base_url=server.url, lookback_days=2,
                               **settings)  # type: ignore[arg-type]
    recorder = sleeps if sleeps is not None else []
    return AmberdataSource(config, assets=assets or _assets("buidl"),
                           sleep=recorder.append,
                           options=options or AmberdataOptions(page_size=2))


def _payloads(batch: object) -> dict[tuple[str, datetime], dict[str, object]]:
    return {(e.asset_id, e.event_time): e.payload for e in batch.envelopes}  # type: ignore[attr-defined]


def test_maps_holders_and_transfers_per_asset_and_day(fake: FakeProvider) -> None:
    source = _source(fake, assets=_assets("buidl", "paxg", "benji", "kau"))
    batch = source.poll(None, NOW)
    got = _payloads(batch)
    assert set(got) == {("buidl", MAY1), ("buidl", MAY2), ("paxg", MAY1), ("paxg", MAY2)}
    assert got[("buidl", MAY1)] == {"holder_count": 61, "transfer_count": 3,
                                    "transfer_volume": pytest.approx(1251.0),
                                    "chain": "ethereum"}
    assert got[("buidl", MAY2)]["transfer_count"] == 2
    assert got[("buidl", MAY2)]["transfer_volume"] == pytest.approx(10.0)
    assert got[("paxg", MAY2)] == {"holder_count": 72_010, "transfer_count": 0,
                                   "transfer_volume": 0.0, "chain": "ethereum"}
    for envelope in batch.envelopes:
        assert envelope.source == "amberdata" and envelope.kind == "onchain"
        assert envelope.event_time.tzinfo is not None
    assert batch.rejects == [] and batch.more is False


def test_sends_key_chain_header_and_documented_parameters(fake: FakeProvider) -> None:
    _source(fake).poll(None, NOW)
    assert fake.requests
    for request in fake.requests:
        assert request.headers["x-api-key"] == API_KEY
        assert request.headers["x-amberdata-blockchain-id"] == "ethereum-mainnet"
    supplies = [r for r in fake.requests if r.path.endswith("/supplies/historical")]
    transfers = [r for r in fake.requests if r.path.endswith("/transfers")]
    assert supplies[0].path == f"/blockchains/tokens/{BUIDL.lower()}/supplies/historical"
    assert supplies[0].param("startDate") == "2024-05-01T00:00:00Z"
    assert supplies[0].param("endDate") == "2024-05-02T00:00:00Z"
    assert transfers[0].param("size") == "2" and transfers[0].param("timeFormat") == "ms"
    assert [r.param("page") for r in transfers[:2]] == ["0", "1"]


def test_pages_resume_from_the_cursor_without_repeats(fake: FakeProvider) -> None:
    source = _source(fake, options=AmberdataOptions(page_size=2, max_requests_per_poll=2))
    first = source.poll(None, NOW)  # holders + the first page of May 1
    assert first.envelopes == [] and first.more is True
    assert first.cursor["assets"]["buidl"]["page"] == 1
    second = source.poll(first.cursor, NOW)
    assert [(e.event_time, e.payload["transfer_count"]) for e in second.envelopes] == [(MAY1, 3)]
    again = source.poll(first.cursor, NOW)  # the same window again: the same events
    assert [e.payload for e in again.envelopes] == [e.payload for e in second.envelopes]
    cursor, seen = second.cursor, [e.event_time for e in second.envelopes]
    while True:
        batch = source.poll(cursor, NOW)
        seen += [e.event_time for e in batch.envelopes]
        cursor = batch.cursor
        if not batch.more:
            break
    assert seen == [MAY1, MAY2]
    calls = len(fake.requests)
    idle = source.poll(cursor, NOW)
    assert idle.envelopes == [] and idle.more is False and len(fake.requests) == calls
    later = source.poll(cursor, NOW + timedelta(days=1))
    assert [e.event_time for e in later.envelopes] == [MAY2 + timedelta(days=1)]


def test_429_with_retry_after_is_waited_out(fake: FakeProvider) -> None:
    sleeps: list[float] = []
    fake.fail_next(429, "slow down", headers={"Retry-After": "2"})
    batch = _source(fake, sleeps=sleeps).poll(None, NOW)
    assert sleeps == [2.0]
    assert len(batch.envelopes) == 2


def test_5xx_then_success_is_retried(fake: FakeProvider) -> None:
    sleeps: list[float] = []
    fake.fail_next(503, "busy")
    batch = _source(fake, sleeps=sleeps).poll(None, NOW)
    assert len(sleeps) == 1 and len(batch.envelopes) == 2


def test_5xx_persisting_is_unavailable(fake: FakeProvider) -> None:
    fake.fail_next(500, "boom", times=3)
    with pytest.raises(ProviderUnavailable):
        _source(fake, max_attempts=3).poll(None, NOW)
    assert len(fake.requests) == 3


def test_401_is_an_auth_error_without_the_key(fake: FakeProvider) -> None:
    wrong = "wrong-key-abcdef"
    with pytest.raises(ProviderAuthError) as info:
        _source(fake, key=wrong).poll(None, NOW)
    assert wrong not in str(info.value) and len(fake.requests) == 1


@pytest.mark.parametrize("body, ctype", [
    (HTML_ERROR_PAGE, "text/html"),
    ('{"status": 200, "title": "OK", "payload": {"metadata": {"col', "application/json"),
])
def test_html_or_truncated_json_is_a_bad_response(fake: FakeProvider, body: str,
                                                  ctype: str) -> None:
    fake.fail_next(200, body, headers={"Content-Type": ctype})
    with pytest.raises(ProviderBadResponse) as info:
        _source(fake, max_attempts=1).poll(None, NOW)
    assert info.value.raw == body


def test_changed_schema_is_a_bad_response(fake: FakeProvider) -> None:
    fake.fail_next(200, {"status": 200, "title": "OK", "payload": {"rows": []}},
                   headers={"Content-Type": "application/json"})
    with pytest.raises(ProviderBadResponse) as info:
        _source(fake).poll(None, NOW)
    assert info.value.raw is not None and '"rows"' in info.value.raw


def test_transfers_without_records_array_is_a_bad_response() -> None:
    route = _fake()

    def changed(request):  # type: ignore[no-untyped-def]
        if request.path.endswith("/transfers"):
            return ok({"totalRecords": 1, "records": {"0": {}}})
        return route(request)

    with FakeProvider(changed) as server, pytest.raises(ProviderBadResponse):
        _source(server).poll(None, NOW)


def test_bad_records_are_rejected_not_raised() -> None:
    route = _fake()
    route.add_transfers(BUIDL, [transfer(BUIDL, MAY1 + 2 * H, "1", decimals=6,
                                         amount="12.5abc")])
    route.add_transfers(PAXG, [transfer(PAXG, MAY1 + 3 * H, "2", decimals=18)])
    route.add_transfers(PAXG, [transfer(PAXG, MAY1, "1", timestamp="yesterday")],
                        at=MAY1 + 4 * H)
    route.holders[("ethereum-mainnet", PAXG.lower())] = [(MAY1, "many")]
    with FakeProvider(route) as server:
        batch = _source(server, assets=_assets("buidl", "paxg")).poll(None, NOW)
    got = _payloads(batch)
    assert got[("buidl", MAY1)]["transfer_count"] == 3  # the good ones still count
    assert got[("paxg", MAY1)]["transfer_count"] == 1
    assert "holder_count" not in got[("paxg", MAY1)]
    reasons = sorted(r.reason for r in batch.rejects)
    assert len(reasons) == 3
    assert any("numHolders" in r for r in reasons)
    assert any(r.startswith("amberdata transfer") and "12.5abc" in r for r in reasons)
    assert any(r.raw.get("timestamp") == "yesterday" for r in batch.rejects)


def test_timeout_is_unavailable(fake: FakeProvider) -> None:
    fake.fail_next(200, "{}", headers={"Content-Type": "application/json"}, delay_s=1.5,
                   times=2)
    with pytest.raises(ProviderUnavailable, match="timeout"):
        _source(fake, timeout_s=0.05, max_attempts=2).poll(None, NOW)


def test_targets_use_evm_contracts_and_symbol_overrides() -> None:
    other = "0x" + "ab" * 20
    got = targets(_assets("buidl", "benji", "kau", "realt-13245-monica", "nvdax"),
                  {"kau": f"polygon-mainnet:{other}"})
    assert [(t.asset_id, t.provider_chain, t.chain, t.address) for t in got] == [
        ("buidl", "ethereum-mainnet", "ethereum", BUIDL.lower()),
        ("kau", "polygon-mainnet", "polygon", other),
    ]


def test_a_token_the_provider_refuses_is_dead_lettered_while_the_others_go_on() -> None:
    from tests.fakes.server import Response

    inner = _fake()

    def route(request):
        if PAXG.lower() in request.path:
            return Response(404, "Unknown address or address is not a contract",
                            {"Content-Type": "text/plain"})
        return inner(request)

    with FakeProvider(route) as server:
        source = _source(server, assets=_assets("buidl", "paxg"))
        batch = source.poll(None, NOW)
    assert {e.asset_id for e in batch.envelopes} == {"buidl"}
    assert len(batch.rejects) == 1
    assert batch.rejects[0].reason.startswith("paxg: 404")
    assert "not a contract" in batch.rejects[0].raw
    assert batch.cursor["assets"]["paxg"] == batch.cursor["assets"]["paxg"] | {"page": 0}
