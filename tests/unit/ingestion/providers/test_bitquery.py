"""Contract tests of the Bitquery connector against a local fake of its GraphQL API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.catalog import load_catalog
from core.domain import Asset
from core.errors import ProviderAuthError, ProviderBadResponse, ProviderUnavailable
from core.settings import BitquerySettings
from ingestion.bitquery import BitqueryOptions, BitquerySource, targets
from ingestion.source import Batch
from tests.fakes.bitquery import TOKEN, BitqueryFake, PoolEvent, Transfer
from tests.fakes.server import HTML_ERROR_PAGE, FakeProvider

CATALOG = {a.asset_id: a for a in load_catalog()}
BUIDL = (CATALOG["buidl"].contract_address or "").lower()
PAXG = (CATALOG["paxg"].contract_address or "").lower()
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
NOW = T0 + 3 * H + 15 * M  # hours 00, 01 and 02 are over and settled
START = {"v": 1, "next": {"eth": T0.isoformat()}}


def _route() -> BitqueryFake:
    return BitqueryFake(
        transfers=[Transfer("eth", BUIDL, T0 + 10 * M, 100.0),
                   Transfer("eth", BUIDL, T0 + 50 * M, 50.5),
                   Transfer("eth", BUIDL, T0 + 2 * H + 30 * M, 7.0),
                   Transfer("eth", PAXG, T0 + H + 15 * M, 2.5),
                   Transfer("bsc", BUIDL, T0 + 20 * M, 999.0),  # another network
                   Transfer("eth", BUIDL, T0 + 3 * H + 5 * M, 1.0)],  # hour not over
        pools=[PoolEvent("eth", "0x" + "01" * 20, BUIDL, USDC, T0 + H, 1_000_000, 900_000),
               PoolEvent("eth", "0x" + "01" * 20, BUIDL, USDC, T0 + 2 * H, 1_100_000, 950_000),
               PoolEvent("eth", "0x" + "02" * 20, USDC, BUIDL, T0 + 2 * H, 20_000, 30_000),
               # after the window's end: must not be seen
               PoolEvent("eth", "0x" + "01" * 20, BUIDL, USDC, T0 + 3 * H + M, 1.0, 1.0)])


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(_route()) as server:
        yield server


def _source(server: FakeProvider, *, key: str = TOKEN, sleeps: list[float] | None = None,
            assets: list[Asset] | None = None, options: BitqueryOptions | None = None,
            **settings: Any) -> BitquerySource:
    config = BitquerySettings(api_key=key, base_url=f"{server.url}/graphql", **settings)
    recorder = sleeps if sleeps is not None else []
    return BitquerySource(config, assets=assets or [CATALOG["buidl"], CATALOG["paxg"]],
                          sleep=recorder.append, options=options)


def _payloads(batch: Batch) -> dict[tuple[str | None, datetime], dict[str, Any]]:
    return {(e.asset_id, e.event_time): e.payload for e in batch.envelopes}


def _json_fail(server: FakeProvider, body: Any) -> None:
    server.fail_next(200, body, headers={"Content-Type": "application/json"})


def test_maps_hourly_transfers_and_liquidity(fake: FakeProvider) -> None:
    assets = [CATALOG[i] for i in ("buidl", "paxg", "benji", "realt-13245-monica")]
    batch = _source(fake, assets=assets).poll(START, NOW)
    got = _payloads(batch)
    assert set(got) == {(a, T0 + h * H) for a in ("buidl", "paxg") for h in range(3)}
    assert got[("buidl", T0)] == {"transfer_count": 2, "transfer_volume": pytest.approx(150.5),
                                  "chain": "ethereum"}
    assert got[("buidl", T0 + H)] == {"transfer_count": 0, "transfer_volume": 0.0,
                                      "chain": "ethereum"}
    assert got[("paxg", T0 + H)]["transfer_count"] == 1
    assert got[("paxg", T0 + H)]["transfer_volume"] == pytest.approx(2.5)
    # liquidity as of 03:00: both pools' latest reserves before it, on the last hour only
    assert got[("buidl", T0 + 2 * H)]["dex_liquidity"] == pytest.approx(2_100_000.0)
    assert "dex_liquidity" not in got[("buidl", T0 + H)]
    assert "dex_liquidity" not in got[("paxg", T0 + 2 * H)]
    assert all(e.source == "bitquery" and e.kind == "onchain" for e in batch.envelopes)
    assert batch.rejects == [] and batch.more is False
    assert batch.cursor["next"] == {"eth": (T0 + 3 * H).isoformat()}


def test_sends_bearer_token_and_query_variables(fake: FakeProvider) -> None:
    _source(fake).poll(START, NOW)
    assert [r.path for r in fake.requests] == ["/graphql", "/graphql"]
    for request in fake.requests:
        assert request.method == "POST"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
    transfers, pools = (r.json() for r in fake.requests)
    assert "Transfers(" in transfers["query"] and "DEXPoolEvents(" in pools["query"]
    assert transfers["variables"] == {"network": "eth", "tokens": sorted([BUIDL, PAXG]),
                                      "since": "2024-05-01T00:00:00Z",
                                      "till": "2024-05-01T03:00:00Z", "limit": 10_000}
    assert pools["variables"]["till"] == "2024-05-01T03:00:00Z"


def test_windows_advance_and_resume_without_repeats(fake: FakeProvider) -> None:
    source = _source(fake, options=BitqueryOptions(max_hours_per_request=2))
    first = source.poll(START, NOW)
    assert first.more is True and len(fake.requests) == 1  # no liquidity while behind
    assert {e.event_time for e in first.envelopes} == {T0, T0 + H}
    second = source.poll(first.cursor, NOW)
    assert {e.event_time for e in second.envelopes} == {T0 + 2 * H}
    assert second.more is False and "DEXPoolEvents(" in fake.requests[-1].json()["query"]
    again = source.poll(first.cursor, NOW)
    assert _payloads(again) == _payloads(second)
    calls = len(fake.requests)
    idle = source.poll(second.cursor, NOW + 10 * M)
    assert idle.envelopes == [] and idle.more is False and len(fake.requests) == calls
    later = source.poll(second.cursor, NOW + H)
    assert {e.event_time for e in later.envelopes} == {T0 + 3 * H}
    assert _payloads(later)[("buidl", T0 + 3 * H)]["transfer_count"] == 1


def test_first_start_goes_back_lookback_days(fake: FakeProvider) -> None:
    batch = _source(fake, lookback_days=1,
                    options=BitqueryOptions(dex_liquidity=False)).poll(None, NOW)
    times = sorted({e.event_time for e in batch.envelopes})
    assert times[0] == T0 + 3 * H - timedelta(days=1) and times[-1] == T0 + 2 * H
    assert len(times) == 24 and batch.more is False


def test_429_with_retry_after_is_waited_out(fake: FakeProvider) -> None:
    sleeps: list[float] = []
    fake.fail_next(429, "Too Many Sessions: 429", headers={"Retry-After": "3"})
    batch = _source(fake, sleeps=sleeps).poll(START, NOW)
    assert sleeps == [3.0] and len(batch.envelopes) == 6


def test_5xx_then_success_is_retried(fake: FakeProvider) -> None:
    sleeps: list[float] = []
    fake.fail_next(502, HTML_ERROR_PAGE, headers={"Content-Type": "text/html"})
    batch = _source(fake, sleeps=sleeps).poll(START, NOW)
    assert len(sleeps) == 1 and len(batch.envelopes) == 6


def test_5xx_persisting_is_unavailable(fake: FakeProvider) -> None:
    fake.fail_next(500, "boom", times=2)
    with pytest.raises(ProviderUnavailable):
        _source(fake, max_attempts=2).poll(START, NOW)
    assert len(fake.requests) == 2


def test_401_is_an_auth_error_without_the_token(fake: FakeProvider) -> None:
    wrong = "ory_at_wrong-token-abcdef"
    with pytest.raises(ProviderAuthError) as info:
        _source(fake, key=wrong).poll(START, NOW)
    assert wrong not in str(info.value)


@pytest.mark.parametrize("message", ["Unauthorized", "invalid access token",
                                     "Token is expired"])
def test_graphql_auth_error_is_an_auth_error(fake: FakeProvider, message: str) -> None:
    _json_fail(fake, {"errors": [{"message": message}], "data": None})
    with pytest.raises(ProviderAuthError, match=message):
        _source(fake).poll(START, NOW)
    assert len(fake.requests) == 1  # not retried


def test_graphql_error_is_a_bad_response_with_raw(fake: FakeProvider) -> None:
    body = {"errors": [{"message": "Cannot query field \"Transferz\" on type \"EVM\""}]}
    _json_fail(fake, body)
    with pytest.raises(ProviderBadResponse, match="Transferz") as info:
        _source(fake).poll(START, NOW)
    assert info.value.raw is not None and "Transferz" in info.value.raw


def test_missing_field_in_data_is_a_bad_response(fake: FakeProvider) -> None:
    _json_fail(fake, {"data": {"EVM": {"TokenTransfers": []}}})
    with pytest.raises(ProviderBadResponse, match=r"data\.EVM\.Transfers") as info:
        _source(fake).poll(START, NOW)
    assert info.value.raw is not None and "TokenTransfers" in info.value.raw


@pytest.mark.parametrize("body, ctype", [
    (HTML_ERROR_PAGE, "text/html"),
    ('{"data": {"EVM": {"Transfers": [{"Block": {"Ti', "application/json"),
])
def test_html_or_truncated_json_is_a_bad_response(fake: FakeProvider, body: str,
                                                  ctype: str) -> None:
    fake.fail_next(200, body, headers={"Content-Type": ctype})
    with pytest.raises(ProviderBadResponse) as info:
        _source(fake, max_attempts=1).poll(START, NOW)
    assert info.value.raw == body


def test_bad_rows_are_rejected_not_raised() -> None:
    route = _route()
    bad = [{"Block": {"Time": "2024-05-01T01:00:00Z"},
            "Transfer": {"Currency": {"SmartContract": BUIDL}}, "count": "many", "volume": "1"},
           {"Block": {"Time": "2024-05-01T01:00:00Z"},
            "Transfer": {"Currency": {"SmartContract": PAXG}}, "count": "1", "volume": "-5"},
           {"Block": {"Time": "2024-05-01T01:00:00Z"}, "count": "1", "volume": "1"}]
    route.extra_rows = list(bad)
    with FakeProvider(route) as server:
        batch = _source(server).poll(START, NOW)
    got = _payloads(batch)
    assert got[("buidl", T0)]["transfer_count"] == 2  # good rows still map
    assert got[("buidl", T0 + H)]["transfer_count"] == 0
    assert [r.raw for r in batch.rejects] == bad
    reasons = [r.reason for r in batch.rejects]
    assert "count" in reasons[0] and "-5" in reasons[1] and "missing field" in reasons[2]


def test_timeout_is_unavailable(fake: FakeProvider) -> None:
    fake.fail_next(200, "{}", headers={"Content-Type": "application/json"}, delay_s=1.5,
                   times=2)
    with pytest.raises(ProviderUnavailable, match="timeout"):
        _source(fake, timeout_s=0.05, max_attempts=2).poll(START, NOW)


def test_the_fake_refuses_a_query_missing_the_hourly_interval(
        fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    import ingestion.bitquery as bq

    broken = bq.TRANSFERS_QUERY.replace("Time(interval: {in: hours, count: 1})", "Time")
    monkeypatch.setattr(bq, "TRANSFERS_QUERY", broken)
    with pytest.raises(ProviderBadResponse, match="query lacks"):
        _source(fake).poll(START, NOW)


def test_targets_group_evm_tokens_by_network() -> None:
    other = "0x" + "cd" * 20
    got = targets([CATALOG[i] for i in ("paxg", "benji", "kau", "realt-13245-monica")],
                  {"kau": f"base:{other}"})
    assert [(t.asset_id, t.provider_chain, t.chain, t.address) for t in got] == [
        ("kau", "base", "base", other), ("paxg", "eth", "ethereum", PAXG)]


def test_row_limit_hit_is_a_bad_response(fake: FakeProvider) -> None:
    _json_fail(fake, {"data": {"EVM": {"Transfers": [
        {"Block": {"Time": "2024-05-01T00:00:00Z"},
         "Transfer": {"Currency": {"SmartContract": BUIDL}}, "count": "1", "volume": "1"}]}}})
    with pytest.raises(ProviderBadResponse, match="row limit"):
        _source(fake, options=BitqueryOptions(row_limit=1)).poll(START, NOW)
