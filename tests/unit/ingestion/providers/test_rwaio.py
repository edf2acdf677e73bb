"""Contract tests of the RWA.io connector against a local fake of its (partly modeled) API."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from core.catalog import by_id_or_symbol
from core.errors import ProviderAuthError, ProviderBadResponse, ProviderUnavailable
from core.settings import RwaIoSettings
from ingestion.rwaio import RwaIoSource, match_search, pick_series
from tests.fakes.rwaio import BUIDL_ID, KEY, PAXG_ID, RwaIoFake, ms, points
from tests.fakes.server import HTML_ERROR_PAGE, FakeProvider

NOW = datetime(2024, 6, 14, 6, 0, tzinfo=UTC)
ASSETS = [by_id_or_symbol(ref) for ref in ("buidl", "paxg", "kau", "xaut")]
BUIDL = [by_id_or_symbol("buidl")]


def settings(url: str, **overrides) -> RwaIoSettings:
    base = {"enabled": True, "api_key": KEY, "base_url": url, "lookback_days": 3,
            "timeout_s": 2.0, "max_attempts": 3}
    return RwaIoSettings(**{**base, **overrides})


@pytest.fixture
def fake():
    route = RwaIoFake()
    with FakeProvider(route) as server:
        server.data = route
        yield server


def source(fake, sleeps: list[float] | None = None, assets=ASSETS, **overrides) -> RwaIoSource:
    recorder = sleeps.append if sleeps is not None else (lambda s: None)
    return RwaIoSource(settings(fake.url, **overrides), assets=assets, sleep=recorder)


def buidl_only(fake, sleeps: list[float] | None = None, **overrides) -> RwaIoSource:
    """No search: the first request is BUIDL's info."""
    return source(fake, sleeps, assets=BUIDL, symbols={"buidl": BUIDL_ID}, **overrides)


def test_daily_metrics_per_asset(fake) -> None:
    batch = source(fake).poll(None, NOW)

    got = [(e.asset_id, e.event_time.date().isoformat(), e.payload) for e in batch.envelopes]
    assert got == [
        ("buidl", "2024-06-12", {"nav": 1.0, "apy": 5.03, "tvl_usd": 512_000_000.0,
                                 "holder_count": 61, "chain": "ethereum"}),
        ("buidl", "2024-06-13", {"nav": 1.0, "apy": 4.98, "tvl_usd": 514_500_000.5,
                                 "holder_count": 62, "chain": "ethereum"}),
        ("kau", "2024-06-13", {"tvl_usd": 190_000_000.0, "chain": "kinesis"}),
        ("paxg", "2024-06-13", {"holder_count": 71234, "tvl_usd": 530_000_000.0,
                                "chain": "ethereum"}),
    ]
    env = batch.envelopes[0]
    assert env.source == "rwaio" and env.kind == "onchain"
    assert env.event_time == datetime(2024, 6, 12, tzinfo=UTC)
    assert batch.rejects == [] and batch.more is False
    assert batch.cursor == {"next_day": "2024-06-14"}


def test_requests_carry_the_key_header_and_the_window(fake) -> None:
    source(fake).poll(None, NOW)

    assert all(r.headers.get("x-api-key") == KEY for r in fake.requests)
    assert all(KEY not in r.path and KEY not in str(r.query) for r in fake.requests)
    searches = [r.param("query") for r in fake.requests if r.path.endswith("/search")]
    assert searches == ["0x7712c34205737192402172409a8F7ccef8aA2AEc",
                        "0x45804880De22913dAFE09f4980848ECE6EcbAf78", "KAU",
                        "0x68749665FF8D2d112Fa859AA293F07A622782F38"]
    data = [r for r in fake.requests if r.path.endswith("/data")]
    assert {r.param("tsId") for r in data} == {"b-nav", "b-apy", "b-aum", "b-holders",
                                               "p-holders", "p-tv", "k-aum"}
    assert {(r.param("from"), r.param("to")) for r in data} == {
        (str(ms("2024-06-11T00:00")), str(ms("2024-06-14T00:00")))}


def test_configured_ids_skip_the_search(fake) -> None:
    batch = source(fake, symbols={"buidl": BUIDL_ID, "paxg": PAXG_ID}).poll(None, NOW)

    searches = [r.param("query") for r in fake.requests if r.path.endswith("/search")]
    assert searches == ["KAU", "0x68749665FF8D2d112Fa859AA293F07A622782F38"]
    assert {e.asset_id for e in batch.envelopes} == {"buidl", "paxg", "kau"}


def test_unusable_search_covers_configured_ids_only_and_is_retried(caplog) -> None:
    with FakeProvider(RwaIoFake(search=False)) as fake:
        src = source(fake, symbols={"paxg": PAXG_ID})
        batch = src.poll(None, NOW)
        assert {e.asset_id for e in batch.envelopes} == {"paxg"}
        assert "asset search unusable" in caplog.text

        src.poll(batch.cursor, datetime(2024, 6, 15, 6, tzinfo=UTC))
        searches = [r for r in fake.requests if r.path.endswith("/search")]
        assert len(searches) == 2  # one per poll, stopping at the first refusal


def test_matching_needs_the_exact_contract_or_a_unique_symbol() -> None:
    buidl, kau = by_id_or_symbol("buidl"), by_id_or_symbol("kau")
    lookalike = {"results": [{"id": "x1", "symbol": "BUIDL", "contractAddress": "0xdead"}]}
    assert match_search(buidl, lookalike) is None
    twins = {"results": [{"id": "k1", "symbol": "KAU"}, {"id": "k2", "symbol": "kau"}]}
    assert match_search(kau, twins) is None
    assert match_search(kau, {"results": [{"id": "k1", "symbol": "KAU"}]}) == "k1"


def test_resume_yields_each_day_once(fake) -> None:
    src = source(fake)
    first = src.poll(None, NOW)
    asked = len(fake.requests)

    again = src.poll(first.cursor, NOW)
    assert again.envelopes == [] and len(fake.requests) == asked  # today is not over

    fake.data.assets[PAXG_ID]["series"][0]["records"] += points(("2024-06-14T12:00", "71300"))
    tomorrow = datetime(2024, 6, 15, 1, tzinfo=UTC)
    nxt = src.poll(again.cursor, tomorrow)
    assert [(e.asset_id, e.event_time.day, e.payload.get("holder_count"))
            for e in nxt.envelopes] == [("paxg", 14, 71300)]
    assert nxt.cursor == {"next_day": "2024-06-15"}
    assert [e.payload for e in src.poll(again.cursor, tomorrow).envelopes] == [
        e.payload for e in nxt.envelopes]


def test_long_lookback_is_fetched_in_windows(fake) -> None:
    src = source(fake, lookback_days=40)

    first = src.poll(None, NOW)
    second = src.poll(first.cursor, NOW)

    assert first.more is True and first.cursor == {"next_day": "2024-06-05"}
    assert first.envelopes == []
    assert second.more is False and len(second.envelopes) == 4


def test_429_with_retry_after_is_waited_out(fake) -> None:
    sleeps: list[float] = []
    fake.fail_next(429, "", headers={"Retry-After": "4"})

    batch = buidl_only(fake, sleeps).poll(None, NOW)

    assert sleeps == [4.0] and len(batch.envelopes) == 2


def test_5xx_then_success(fake) -> None:
    sleeps: list[float] = []
    fake.fail_next(503, "upstream busy")

    batch = buidl_only(fake, sleeps).poll(None, NOW)

    assert len(sleeps) == 1 and len(batch.envelopes) == 2


def test_5xx_persisting_is_unavailable_without_leaking_the_key(fake, caplog) -> None:
    fake.fail_next(500, f"error for key {KEY}", times=3)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ProviderUnavailable) as info:
        buidl_only(fake, []).poll(None, NOW)

    assert len(fake.requests) == 3
    assert KEY not in str(info.value) and KEY not in caplog.text


def test_401_is_an_auth_error() -> None:
    with (FakeProvider(RwaIoFake(key="other")) as fake,
          pytest.raises(ProviderAuthError)):
        source(fake).poll(None, NOW)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("body,ctype", [(HTML_ERROR_PAGE, "text/html"),
                                        ('{"infos": [{"id": "b-n', "application/json")])
def test_html_or_truncated_json_is_a_bad_response(fake, body, ctype) -> None:
    fake.fail_next(200, body, headers={"Content-Type": ctype})

    with pytest.raises(ProviderBadResponse) as info:
        buidl_only(fake).poll(None, NOW)

    assert info.value.raw == body


def test_a_bad_value_is_rejected_not_raised(fake) -> None:
    apy = fake.data.assets[BUIDL_ID]["series"][1]
    apy["records"] += points(("2024-06-11T00:00", "n/a"), ("2024-06-11T01:00", "4000"))

    batch = buidl_only(fake).poll(None, NOW)

    reasons = [r.reason for r in batch.rejects]
    assert reasons[0] == "value is not a finite number: 'n/a'"
    assert "apy" in reasons[1]  # 4000 % is outside the payload's range
    assert batch.rejects[0].raw["tsId"] == "b-apy"
    assert [e.event_time.day for e in batch.envelopes] == [12, 13]


def test_changed_schema_is_a_bad_response(fake) -> None:
    fake.fail_next(200, {"series": [{"id": "b-nav"}]},
                   headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderBadResponse, match="lacks infos"):
        buidl_only(fake).poll(None, NOW)


def test_timeout_is_unavailable(fake) -> None:
    fake.fail_next(200, {"infos": []}, times=2, delay_s=1.5,
                   headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderUnavailable, match="timeout"):
        buidl_only(fake, [], timeout_s=0.1, max_attempts=2).poll(None, NOW)


def test_pick_series_prefers_asset_wide_and_known_presets() -> None:
    infos = [{"id": "h-eth", "presetId": "holders", "chainId": "ethereum"},
             {"id": "h-all", "presetId": "holders", "chainId": None},
             {"id": "tv", "presetId": "tokenized-value"}, {"id": "aum", "presetId": "aum"},
             {"id": "px", "presetId": "price"}, "junk"]
    assert pick_series(infos) == {"holder_count": "h-all", "tvl_usd": "aum"}
