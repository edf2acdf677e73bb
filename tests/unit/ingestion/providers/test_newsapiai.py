"""Contract tests of the NewsAPI.ai (Event Registry) connector against a local fake."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from core.catalog import by_id_or_symbol, load_catalog
from core.errors import ProviderAuthError, ProviderBadResponse, ProviderUnavailable
from core.settings import NewsApiAiSettings
from ingestion.newsapiai import NewsApiAiSource, _Matcher, transform
from tests.fakes.newsapiai import KEY, NewsApiAiFake, article
from tests.fakes.server import HTML_ERROR_PAGE, FakeProvider

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
ASSETS = [by_id_or_symbol(ref) for ref in ("buidl", "paxg", "xaut", "usdy", "ousg")]


def settings(url: str, **overrides) -> NewsApiAiSettings:
    base = {"enabled": True, "api_key": KEY, "base_url": url, "lookback_days": 7,
            "timeout_s": 2.0, "max_attempts": 3}
    return NewsApiAiSettings(**{**base, **overrides})


@pytest.fixture
def fake():
    route = NewsApiAiFake()
    with FakeProvider(route) as server:
        server.data = route
        yield server


def source(fake, sleeps: list[float] | None = None, assets=ASSETS, **overrides
           ) -> NewsApiAiSource:
    recorder = sleeps.append if sleeps is not None else (lambda s: None)
    overrides.setdefault("symbols", {"usdy": "Ondo Finance"})
    return NewsApiAiSource(settings(fake.url, **overrides), assets=assets, sleep=recorder)


def test_articles_become_news_envelopes_tagged_with_assets(fake) -> None:
    batch = source(fake).poll(None, NOW)

    by_uri = {e.payload["url"].rsplit("/", 1)[1]: e for e in batch.envelopes}
    assert list(by_uri) == ["8171000001", "8171000002", "8171000003"]  # the deu one filtered
    buidl = by_uri["8171000001"]
    assert buidl.source == "newsapiai" and buidl.kind == "news"
    assert buidl.event_time == datetime(2024, 6, 13, 8, tzinfo=UTC)
    assert buidl.asset_id == "buidl"
    assert buidl.payload["assets"] == ["buidl"]
    assert buidl.payload["issuers"] == ["BlackRock / Securitize"]
    assert buidl.payload["outlet"] == "CoinDesk" and buidl.payload["lang"] == "en"
    assert buidl.payload["body"].startswith("The BlackRock USD")
    gold = by_uri["8171000002"]
    assert gold.payload["assets"] == ["paxg", "xaut"] and gold.asset_id == "paxg"
    # Named by issuer only: both Ondo funds, the first of them as the envelope's asset.
    ondo = by_uri["8171000003"]
    assert ondo.payload["assets"] == ["usdy", "ousg"] and ondo.asset_id == "usdy"
    assert ondo.payload["issuers"] == ["Ondo Finance"]
    assert batch.rejects == [] and batch.more is False


def test_request_body_is_the_documented_query(fake) -> None:
    source(fake).poll(None, NOW)

    (request,) = fake.requests
    assert request.method == "POST" and request.path == "/api/v1/article/getArticles"
    assert request.query == {}  # the key is not in the URL
    body = request.json()
    assert body["apiKey"] == KEY
    assert body["keyword"] == ["BlackRock USD Institutional Digital Liquidity Fund", "BUIDL",
                               "PAX Gold", "PAXG", "Tether Gold", "XAUt", "Ondo Finance",
                               "Ondo Short-Term US Government Bond Fund", "OUSG"]
    assert body["keywordOper"] == "or" and body["lang"] == "eng"
    assert body["dateStart"] == "2024-06-08"
    assert body["articlesSortBy"] == "date" and body["resultType"] == "articles"
    assert body["articlesPage"] == 1 and body["articlesCount"] == 100


def test_keywords_are_batched_and_only_paging_batches_are_asked_again(fake) -> None:
    fake.data.articles = [article(f"91{i:05d}", f"2024-06-13T10:{i % 60:02d}:00",
                                  f"PAX Gold note {i}") for i in range(150)]
    src = source(fake, assets=load_catalog(), symbols={})

    first = src.poll(None, NOW)
    sizes = [len(r.json()["keyword"]) for r in fake.requests]
    assert len(sizes) > 1 and max(sizes) <= 15
    assert first.more is True and len(first.envelopes) == 100

    second = src.poll(first.cursor, NOW)
    (request,) = fake.requests[len(sizes):]
    assert "PAX Gold" in request.json()["keyword"] and request.json()["articlesPage"] == 2
    assert second.more is False and len(second.envelopes) == 50


def test_pages_are_followed_and_resume_yields_no_repeats(fake) -> None:
    fake.data.articles = [
        article(f"90{i:05d}", f"2024-06-1{2 + i // 100}T{i % 24:02d}:{i % 60:02d}:00",
                f"PAX Gold update {i}") for i in range(230)]
    src = source(fake)

    cursor, seen, flags = None, [], []
    for _ in range(3):
        batch = src.poll(cursor, NOW)
        seen += [e.payload["url"] for e in batch.envelopes]
        cursor, flags = batch.cursor, flags + [batch.more]
    assert flags == [True, True, False]
    assert [r.json()["articlesPage"] for r in fake.requests] == [1, 2, 3]
    assert len(seen) == len(set(seen)) == 230

    again = src.poll(cursor, NOW)
    assert again.envelopes == []


def test_same_instant_articles_are_told_apart_by_uri(fake) -> None:
    fake.data.articles = [article("a1", "2024-06-14T10:00:00", "PAX Gold one"),
                          article("a2", "2024-06-14T10:00:00", "PAX Gold two")]
    src = source(fake)
    first = src.poll(None, NOW)
    assert len(first.envelopes) == 2

    fake.data.articles.append(article("a3", "2024-06-14T10:00:00", "PAX Gold three"))
    second = src.poll(first.cursor, NOW)

    assert [e.payload["title"] for e in second.envelopes] == ["PAX Gold three"]
    assert src.poll(second.cursor, NOW).envelopes == []


def test_429_with_retry_after_is_waited_out(fake) -> None:
    sleeps: list[float] = []
    fake.fail_next(429, "slow down", headers={"Retry-After": "2"})

    batch = source(fake, sleeps).poll(None, NOW)

    assert sleeps == [2.0] and len(batch.envelopes) == 3


def test_5xx_then_success(fake) -> None:
    sleeps: list[float] = []
    fake.fail_next(502, HTML_ERROR_PAGE, headers={"Content-Type": "text/html"})

    batch = source(fake, sleeps).poll(None, NOW)

    assert len(sleeps) == 1 and len(batch.envelopes) == 3


def test_5xx_persisting_is_unavailable_and_the_echoed_key_is_never_logged(fake, caplog) -> None:
    fake.fail_next(500, json.dumps({"request": {"apiKey": KEY}}), times=3,
                   headers={"Content-Type": "application/json"})
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ProviderUnavailable) as info:
        source(fake, []).poll(None, NOW)

    assert len(fake.requests) == 3
    assert KEY not in str(info.value)
    assert "try 2 of 3" in caplog.text and KEY not in caplog.text


def test_echoed_key_is_scrubbed_from_bad_response_raw(fake) -> None:
    fake.fail_next(400, json.dumps({"error": "bad query", "apiKey": KEY}),
                   headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderBadResponse) as info:
        source(fake).poll(None, NOW)

    assert KEY not in str(info.value) and KEY not in info.value.raw
    assert "***" in info.value.raw


def test_wrong_key_is_an_auth_error() -> None:
    with (FakeProvider(NewsApiAiFake(key="someone-elses-key")) as fake,
          pytest.raises(ProviderAuthError) as info):
        source(fake).poll(None, NOW)
    assert len(fake.requests) == 1 and KEY not in str(info.value)


def test_error_answer_naming_the_key_is_an_auth_error(fake) -> None:
    fake.fail_next(200, {"error": "Invalid API key."},
                   headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderAuthError, match="Invalid API key"):
        source(fake).poll(None, NOW)


@pytest.mark.parametrize("body,ctype", [(HTML_ERROR_PAGE, "text/html"),
                                        ('{"articles": {"results": [{"uri": "81',
                                         "application/json")])
def test_html_or_truncated_json_is_a_bad_response(fake, body, ctype) -> None:
    fake.fail_next(200, body, headers={"Content-Type": ctype})

    with pytest.raises(ProviderBadResponse) as info:
        source(fake).poll(None, NOW)

    assert info.value.raw == body


def test_a_bad_article_is_rejected_not_raised(fake) -> None:
    broken = article("8171000009", "2024-06-14T11:00:00", "x", "PAX Gold in the body")
    broken["title"] = ""
    undated = article("8171000010", "2024-06-14T12:00:00", "PAX Gold again")
    undated["dateTime"] = "yesterday"
    fake.data.articles += [broken, undated]

    batch = source(fake).poll(None, NOW)

    assert len(batch.envelopes) == 3
    assert sorted(r.reason for r in batch.rejects) == [
        "Invalid isoformat string: 'yesterday'", "article has no title"]
    assert {r.raw["uri"] for r in batch.rejects} == {"8171000009", "8171000010"}


def test_changed_schema_is_a_bad_response(fake) -> None:
    fake.fail_next(200, {"results": [], "page": 1},
                   headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderBadResponse, match="articles.results") as info:
        source(fake).poll(None, NOW)

    assert '"results"' in info.value.raw


def test_timeout_is_unavailable(fake) -> None:
    fake.fail_next(200, {"articles": {"results": [], "pages": 0}}, times=2, delay_s=1.5,
                   headers={"Content-Type": "application/json"})

    with pytest.raises(ProviderUnavailable, match="timeout"):
        source(fake, [], timeout_s=0.1, max_attempts=2).poll(None, NOW)


def test_matcher_needs_whole_words_and_case_for_short_symbols() -> None:
    kau = by_id_or_symbol("kau")
    matcher = _Matcher([kau, by_id_or_symbol("usyc")])

    assert matcher.match("Kinesis KAU holders") == [kau]
    assert matcher.match("a kaufhaus in Berlin") == []
    assert [a.asset_id for a in matcher.match("Hashnote's fund")] == ["usyc"]
    pairs, rejects, pages = transform({"articles": {"results": [], "pages": 0}}, matcher)
    assert (pairs, rejects, pages) == ([], [], 0)
