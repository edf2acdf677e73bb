"""Contract tests of the Trading Economics connector against a local fake of its API."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from urllib.parse import unquote

import pytest

from core.errors import ProviderAuthError, ProviderBadResponse, ProviderUnavailable
from core.settings import TradingEconomicsSettings
from ingestion.tradingeconomics import (
    INDICATORS,
    TradingEconomicsQuery,
    TradingEconomicsSource,
    series_name,
    transform,
)
from tests.fakes.server import HTML_ERROR_PAGE, FakeProvider
from tests.fakes.tradingeconomics import KEY, TradingEconomicsFake, row

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


def settings(url: str, **overrides) -> TradingEconomicsSettings:
    base = {"enabled": True, "api_key": KEY, "base_url": url, "lookback_days": 90,
            "timeout_s": 2.0, "max_attempts": 3, "countries": ["united states", "euro area"]}
    return TradingEconomicsSettings(**{**base, **overrides})


@pytest.fixture
def fake():
    route = TradingEconomicsFake()
    with FakeProvider(route) as server:
        server.data = route
        yield server


def source(fake, sleeps: list[float] | None = None, **overrides) -> TradingEconomicsSource:
    recorder = sleeps.append if sleeps is not None else (lambda s: None)
    return TradingEconomicsSource(settings(fake.url, **overrides), assets=[], sleep=recorder)


def test_first_poll_maps_rows_to_macro_envelopes(fake) -> None:
    batch = source(fake).poll(None, NOW)

    got = [(e.event_time, e.payload["series"], e.payload["value"]) for e in batch.envelopes]
    assert got == [
        (datetime(2024, 3, 20, tzinfo=UTC), "US.POLICY_RATE", 5.5),
        (datetime(2024, 3, 31, tzinfo=UTC), "US.CPI_YOY", 3.5),
        (datetime(2024, 4, 30, tzinfo=UTC), "US.CPI_YOY", 3.4),
        (datetime(2024, 5, 1, tzinfo=UTC), "US.POLICY_RATE", 5.5),
        (datetime(2024, 6, 6, tzinfo=UTC), "EA.POLICY_RATE", 4.25),
        (datetime(2024, 6, 10, tzinfo=UTC), "US.GOV_BOND_10Y", 4.47),
        (datetime(2024, 6, 11, tzinfo=UTC), "US.GOV_BOND_10Y", 4.40),
    ]
    first, bond = batch.envelopes[0], batch.envelopes[-1]
    assert first.source == "tradingeconomics" and first.kind == "macro"
    assert first.asset_id is None
    assert first.payload["country"] == "United States"
    assert first.payload["unit"] == "% per year" and first.payload["frequency"] == "M"
    assert bond.payload["frequency"] == "D"
    assert batch.rejects == [] and batch.more is False
    assert batch.cursor["last"]["US.CPI_YOY"] == "2024-04-30T00:00:00+00:00"


def test_request_uses_documented_path_and_key_parameter(fake) -> None:
    source(fake).poll(None, NOW)

    (request,) = fake.requests
    assert request.method == "GET"
    assert unquote(request.path) == ("/historical/country/united states,euro area/indicator/"
                                     "interest rate,inflation rate,government bond 10y/"
                                     "2024-03-17/2024-06-15")
    assert request.param("c") == KEY and request.param("f") == "json"


def test_resume_from_cursor_repeats_nothing_and_catches_late_prints(fake) -> None:
    src = source(fake)
    first = src.poll(None, NOW)
    again = src.poll(first.cursor, NOW)
    assert again.envelopes == []

    # May's CPI is published in June, dated 31 May: before the last window's end, after
    # the series' mark, so it must still arrive, once.
    fake.data.rows.append(row("United States", "Inflation Rate", "2024-05-31T00:00:00", 3.3))
    later = datetime(2024, 6, 16, 12, tzinfo=UTC)
    late = src.poll(again.cursor, later)
    assert [(e.payload["series"], e.payload["value"]) for e in late.envelopes] == [
        ("US.CPI_YOY", 3.3)]
    assert src.poll(late.cursor, later).envelopes == []
    # Re-polling from an old cursor yields the same events (the actor drops repeats).
    assert [e.payload for e in src.poll(again.cursor, later).envelopes] == [
        e.payload for e in late.envelopes]


def test_long_lookback_is_drained_in_windows(fake) -> None:
    src = source(fake, lookback_days=900)
    cursor, seen, polls = None, [], 0
    while True:
        batch = src.poll(cursor, NOW)
        seen += [(e.payload["series"], e.event_time) for e in batch.envelopes]
        cursor, polls = batch.cursor, polls + 1
        if not batch.more:
            break
    assert polls == 4  # 900 days back, 365-day windows that look back 120 days
    assert len(seen) == len(set(seen)) == 7
    spans = [unquote(r.path).rsplit("/", 2)[1:] for r in fake.requests]
    assert spans[0] == ["2021-12-28", "2022-12-28"]
    assert spans[-1][1] == "2024-06-15"


def test_symbols_setting_adds_an_indicator(fake) -> None:
    fake.data.rows.append(row("United States", "Unemployment Rate", "2024-05-31T00:00:00", 4.0))
    src = source(fake, symbols={"UNEMPLOYMENT": "Unemployment Rate"})

    batch = src.poll(None, NOW)

    assert "unemployment rate" in unquote(fake.requests[0].path)
    assert ("US.UNEMPLOYMENT", 4.0) in [(e.payload["series"], e.payload["value"])
                                        for e in batch.envelopes]


def test_429_with_retry_after_is_waited_out(fake) -> None:
    sleeps: list[float] = []
    fake.fail_next(429, "Too Many Requests", headers={"Retry-After": "3"})

    batch = source(fake, sleeps).poll(None, NOW)

    assert sleeps == [3.0]
    assert len(fake.requests) == 2 and len(batch.envelopes) == 7


def test_5xx_then_success(fake) -> None:
    sleeps: list[float] = []
    fake.fail_next(503, "busy")

    batch = source(fake, sleeps).poll(None, NOW)

    assert len(sleeps) == 1 and len(batch.envelopes) == 7


def test_5xx_persisting_is_unavailable_and_key_stays_out_of_logs(fake, caplog) -> None:
    fake.fail_next(500, f"boom c={KEY}", times=3)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ProviderUnavailable) as info:
        source(fake, []).poll(None, NOW)

    assert len(fake.requests) == 3
    assert KEY not in str(info.value)
    assert caplog.records and KEY not in caplog.text


def test_401_is_an_auth_error() -> None:
    with (FakeProvider(TradingEconomicsFake(key="another-key")) as fake,
          pytest.raises(ProviderAuthError) as info):
        source(fake).poll(None, NOW)
    assert len(fake.requests) == 1  # not retried
    assert KEY not in str(info.value)


@pytest.mark.parametrize("body,ctype", [(HTML_ERROR_PAGE, "text/html"),
                                        ('[{"Country": "United St', "application/json")])
def test_html_or_truncated_json_is_a_bad_response(fake, body, ctype) -> None:
    fake.fail_next(200, body, headers={"Content-Type": ctype})

    with pytest.raises(ProviderBadResponse) as info:
        source(fake).poll(None, NOW)

    assert info.value.raw == body


def test_a_bad_value_is_rejected_not_raised(fake) -> None:
    fake.data.rows += [row("United States", "Inflation Rate", "2024-05-31T00:00:00", None),
                       row("United States", "Interest Rate", "2024-06-12T00:00:00", "n/a")]

    batch = source(fake).poll(None, NOW)

    assert len(batch.envelopes) == 7
    reasons = sorted(r.reason for r in batch.rejects)
    assert reasons == ["'row lacks Value'", "Value is not a finite number: 'n/a'"]
    assert batch.rejects[0].raw["Category"] in {"Inflation Rate", "Interest Rate"}


def test_changed_schema_is_a_bad_response(fake) -> None:
    fake.fail_next(200, {"data": [{"country": "United States", "value": 5.5}]},
                   headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderBadResponse) as info:
        source(fake).poll(None, NOW)

    assert '"data"' in info.value.raw


def test_renamed_fields_are_a_bad_response() -> None:
    rows = [{"country": "United States", "category": "Interest Rate",
             "date": "2024-05-01T00:00:00", "value": 5.5}]
    q = TradingEconomicsQuery(countries=["united states"], indicators=INDICATORS,
                              start=date(2024, 1, 1), end=date(2024, 6, 1))
    with pytest.raises(ProviderBadResponse):
        transform(rows, q, {})


def test_timeout_is_unavailable(fake) -> None:
    fake.fail_next(200, "[]", times=2, delay_s=1.5,
                   headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderUnavailable, match="timeout"):
        source(fake, [], timeout_s=0.1, max_attempts=2).poll(None, NOW)


def test_series_names() -> None:
    assert series_name("United States", "CPI_YOY") == "US.CPI_YOY"
    assert series_name("South Korea", "POLICY_RATE") == "SOUTH_KOREA.POLICY_RATE"
