"""Unit tests for the deterministic simulated newswire."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from core.catalog import load_catalog
from core.envelope import Envelope, NewsPayload, decode
from ingestion.simulated_news import OUTLETS, POLARITIES, TEMPLATES, SimulatedNews, render

START = datetime(2025, 3, 3, tzinfo=UTC)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
CATALOG = load_catalog()
BY_ID = {a.asset_id: a for a in CATALOG}


def key(envelopes: Iterable[Envelope]) -> list[tuple[Any, ...]]:
    """What must be deterministic: everything but the wall-clock ingest time."""
    return [(e.kind, e.asset_id, e.event_time, e.payload) for e in envelopes]


@pytest.fixture(scope="module")
def week() -> list[tuple[Envelope, str]]:
    return SimulatedNews(CATALOG).between_labeled(START, START + WEEK)


def test_same_seed_is_deterministic_and_seeds_differ() -> None:
    a = SimulatedNews(CATALOG, seed=7).between(START, START + DAY)
    b = SimulatedNews(CATALOG, seed=7).between(START, START + DAY)
    c = SimulatedNews(CATALOG, seed=8).between(START, START + DAY)
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_asset_input_order_does_not_matter() -> None:
    forward = SimulatedNews(CATALOG).between(START, START + DAY)
    backward = SimulatedNews(list(reversed(CATALOG))).between(START, START + DAY)
    assert key(forward) == key(backward)


def test_one_day_equals_twenty_four_hours() -> None:
    news = SimulatedNews(CATALOG)
    whole = news.between(START, START + DAY)
    pieces: list[Envelope] = []
    for h in range(24):
        pieces.extend(
            news.between(START + h * timedelta(hours=1), START + (h + 1) * timedelta(hours=1))
        )
    assert key(pieces) == key(whole)
    assert len(whole) > 0


def test_any_split_of_a_window_gives_the_same_items() -> None:
    news = SimulatedNews(CATALOG, seed=11)
    start = START + timedelta(minutes=17, seconds=3)
    end = start + timedelta(hours=30, minutes=5)
    whole = news.between(start, end)
    cuts = [start, start + timedelta(minutes=7), start + timedelta(hours=2, seconds=1)]
    cuts += [start + timedelta(hours=13, minutes=59), end]
    pieces = [env for lo, hi in itertools.pairwise(cuts) for env in news.between(lo, hi)]
    assert key(pieces) == key(whole)


def test_items_are_sorted_within_the_window(week: list[tuple[Envelope, str]]) -> None:
    times = [env.event_time for env, _ in week]
    assert times == sorted(times)
    assert all(START <= t < START + WEEK for t in times)
    start = START + timedelta(minutes=30)
    clipped = SimulatedNews(CATALOG).between(start, start + timedelta(hours=2))
    assert all(start <= e.event_time < start + timedelta(hours=2) for e in clipped)


def test_envelopes_are_news_and_survive_the_codec(week: list[tuple[Envelope, str]]) -> None:
    for env, _ in week:
        assert env.kind == "news"
        assert env.source == "simulated-news"
        assert decode(env.to_bytes()) == env


def test_payload_names_asset_issuer_and_outlet(week: list[tuple[Envelope, str]]) -> None:
    for env, _ in week:
        asset = BY_ID[env.asset_id or ""]
        payload = NewsPayload.model_validate(env.payload)
        assert payload.assets == [asset.asset_id]
        assert payload.issuers == [asset.issuer]
        assert payload.outlet in OUTLETS
        assert payload.body
        assert payload.lang == "en"
        assert asset.symbol in payload.title or asset.name in payload.title, payload.title


def test_polarity_is_not_leaked_into_the_payload(week: list[tuple[Envelope, str]]) -> None:
    for env, polarity in week:
        assert polarity in POLARITIES
        assert set(env.payload) <= set(NewsPayload.model_fields)
        assert polarity not in env.to_bytes().decode().lower()


def test_polarity_is_roughly_balanced(week: list[tuple[Envelope, str]]) -> None:
    counts = Counter(polarity for _, polarity in week)
    for polarity in POLARITIES:
        assert 0.20 < counts[polarity] / len(week) < 0.47, counts


def test_each_polarity_uses_its_own_templates(week: list[tuple[Envelope, str]]) -> None:
    # Placeholders become wildcards; a headline must match a template of its polarity.
    patterns = {
        p: [re.compile(".+".join(map(re.escape, re.split(r"\{[a-z_]+\}", t))) + "$") for t in ts]
        for p, ts in TEMPLATES.items()
    }
    for env, polarity in week[:300]:
        title = env.payload["title"]
        assert any(r.match(title) for r in patterns[polarity]), (polarity, title)


def test_rate_scales_the_number_of_items() -> None:
    base = len(SimulatedNews(CATALOG, rate_per_hour=6.0).between(START, START + WEEK))
    double = len(SimulatedNews(CATALOG, rate_per_hour=12.0).between(START, START + WEEK))
    assert base == pytest.approx(6.0 * 24 * 7, rel=0.15)
    assert 1.7 < double / base < 2.3
    assert SimulatedNews(CATALOG, rate_per_hour=0.0).between(START, START + WEEK) == []


def test_class_mix_of_topics() -> None:
    ids = ["ousg", "buidl", "acred", "fidu", "realt-13245-monica", "paxg"]
    items = SimulatedNews([BY_ID[i] for i in ids], seed=5).between(START, START + 2 * WEEK)
    credit = re.compile(r"default|impairment|loan|delinquenc|missed payment", re.IGNORECASE)
    yield_nav = re.compile(r"\byield\b|\bNAV\b")

    def share(asset_ids: set[str], pattern: re.Pattern[str]) -> float:
        titles = [e.payload["title"] for e in items if e.asset_id in asset_ids]
        return sum(bool(pattern.search(t)) for t in titles) / len(titles)

    treasuries = {"ousg", "buidl"}
    credit_like = {"acred", "fidu", "realt-13245-monica"}
    assert share(credit_like, credit) > 2 * share(treasuries, credit)
    assert share(treasuries, yield_nav) > 2 * share(credit_like, yield_nav)
    # Gold has no yield to rise and no loans to default.
    assert share({"paxg"}, re.compile(r"\byield\b|loan|default", re.IGNORECASE)) == 0.0


def test_templates_cover_every_polarity_and_render_for_every_asset() -> None:
    assert set(TEMPLATES) == set(POLARITIES)
    rng = np.random.default_rng(0)
    for polarity, templates in TEMPLATES.items():
        assert len(templates) >= 6, polarity
        for template in templates:
            assert "{symbol}" in template or "{name}" in template, template
            for asset in CATALOG:
                text = render(template, asset, rng, when=START)
                assert "{" not in text and "}" not in text
                assert asset.symbol in text or asset.name in text


def test_empty_window_and_naive_times() -> None:
    news = SimulatedNews(CATALOG)
    assert news.between(START, START) == []
    assert news.between(START + DAY, START) == []
    with pytest.raises(ValueError, match="timezone"):
        news.between(datetime(2025, 3, 3), START + DAY)
    with pytest.raises(ValueError, match="unique"):
        SimulatedNews([CATALOG[0], CATALOG[0]])
    with pytest.raises(ValueError, match="rate_per_hour"):
        SimulatedNews(CATALOG, rate_per_hour=-1.0)
