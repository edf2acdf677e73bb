"""The keyless sources as the actor drives them: windows on a grid, recomputable from
the cursor, so polling from an old cursor repeats exactly and consecutive polls leave
no gap."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from core.catalog import load_catalog
from ingestion.keyless import (
    FileReplaySource,
    MacroReplaySource,
    SimulatedNewsSource,
    SimulatedOnchainSource,
    floor_to,
)
from ingestion.replay import ReplayQuery

NOW = datetime(2026, 11, 25, 12, 0, 7, tzinfo=UTC)
ASSETS = load_catalog()[:4]


def _roundtrip(cursor):
    return json.loads(json.dumps(cursor))  # cursors live as JSON in PostgreSQL


def test_floor_to_grid():
    assert floor_to(NOW, 5) == datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
    assert floor_to(NOW, 3600) == datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_onchain_first_poll_sends_daily_history_then_grid_points():
    src = SimulatedOnchainSource(ASSETS, seed=3, interval_s=5, history_hours=72)
    first = src.poll(None, NOW)
    assert len(first.envelopes) == 3 * len(ASSETS)
    assert {e.kind for e in first.envelopes} == {"onchain"}
    second = src.poll(_roundtrip(first.cursor), NOW + timedelta(seconds=21))
    times = sorted({e.event_time for e in second.envelopes})
    assert times == [floor_to(NOW, 5) + timedelta(seconds=5 * k) for k in range(1, 5)]
    assert all(sum(1 for e in second.envelopes if e.event_time == t) == len(ASSETS)
               for t in times)


def test_onchain_replay_from_old_cursor_is_identical_and_gapless():
    src = SimulatedOnchainSource(ASSETS, seed=3, interval_s=5, history_hours=0)
    c0 = _roundtrip(src.poll(None, NOW).cursor)
    a = src.poll(c0, NOW + timedelta(seconds=10))
    b = src.poll(c0, NOW + timedelta(seconds=10))  # a restart from the same checkpoint
    assert [e.payload for e in a.envelopes] == [e.payload for e in b.envelopes]
    c = src.poll(_roundtrip(a.cursor), NOW + timedelta(seconds=20))
    ta = sorted({e.event_time for e in a.envelopes})
    tc = sorted({e.event_time for e in c.envelopes})
    assert tc[0] - ta[-1] == timedelta(seconds=5)


def test_onchain_catch_up_is_paged():
    src = SimulatedOnchainSource(ASSETS, seed=3, interval_s=1, history_hours=0,
                                 max_points_per_poll=10)
    c0 = _roundtrip(src.poll(None, NOW).cursor)
    batch = src.poll(c0, NOW + timedelta(seconds=30))
    assert batch.more and len({e.event_time for e in batch.envelopes}) == 10


def test_news_windows_tile_without_overlap():
    src = SimulatedNewsSource(ASSETS, seed=3, interval_s=60, history_hours=48, chunk_hours=24,
                              rate_per_hour=20)
    first = src.poll(None, NOW)
    assert first.more
    second = src.poll(_roundtrip(first.cursor), NOW)
    assert not second.more
    whole = SimulatedNewsSource(ASSETS, seed=3, interval_s=60, history_hours=48,
                                chunk_hours=48, rate_per_hour=20).poll(None, NOW)
    assert [e.payload["url"] for e in first.envelopes + second.envelopes] == \
        [e.payload["url"] for e in whole.envelopes]
    assert all(e.payload["assets"] for e in whole.envelopes)


def test_macro_sends_once_then_nothing():
    src = MacroReplaySource(interval_s=3600)
    first = src.poll(None, NOW)
    assert len(first.envelopes) > 2000 and first.envelopes[0].asset_id is None
    assert src.poll(_roundtrip(first.cursor), NOW).envelopes == []


def test_file_replay_pages_without_splitting_a_time_and_rejects_bad_rows(tmp_path):
    path = tmp_path / "h.csv"
    rows = []
    for h in range(10):
        for asset in ("paxg", "xaut"):
            rows.append({"time": f"2024-01-01T{h:02d}:00:00Z", "asset_id": asset,
                         "price": -1 if (h, asset) == (4, "xaut") else 100 + h, "volume": 1})
    pd.DataFrame(rows).to_csv(path, index=False)
    src = FileReplaySource(ReplayQuery(path=path, kind="tick"), batch_rows=3)
    seen, rejects, cursor = [], [], None
    for _ in range(20):
        batch = src.poll(cursor, NOW)
        seen += batch.envelopes
        rejects += batch.rejects
        cursor = _roundtrip(batch.cursor)
        if not batch.more:
            break
    assert len(seen) == 19 and len(rejects) == 1
    assert "price" in rejects[0].reason and rejects[0].raw["row"] == 10
    assert len({(e.asset_id, e.event_time) for e in seen}) == 19
    assert src.poll(cursor, NOW).envelopes == []


def test_file_replay_paces_by_speed(tmp_path):
    path = tmp_path / "h.csv"
    pd.DataFrame({"time": [f"2024-01-01T00:{m:02d}:00Z" for m in range(10)],
                  "price": 1.0, "volume": 0}).to_csv(path, index=False)
    src = FileReplaySource(ReplayQuery(path=path, kind="tick", asset_id="paxg", speed=60))
    first = src.poll(None, NOW)
    assert len(first.envelopes) == 1  # the first minute goes out at once
    later = src.poll(_roundtrip(first.cursor), NOW + timedelta(seconds=3))
    assert len(later.envelopes) == 3  # 3 s at 60x = 3 more minutes of history


def test_envelopes_carry_their_source_name(tmp_path):
    # The actor finds what a killed incarnation published by this name; a mismatch would
    # silently disable its duplicate check.
    path = tmp_path / "h.csv"
    pd.DataFrame({"time": ["2024-01-01T00:00:00Z"], "price": [1.0], "volume": [0]}).to_csv(
        path, index=False)
    sources = [
        SimulatedOnchainSource(ASSETS, seed=1, interval_s=60, history_hours=24),
        SimulatedNewsSource(ASSETS, seed=1, interval_s=60, history_hours=24, rate_per_hour=20),
        MacroReplaySource(interval_s=60),
        FileReplaySource(ReplayQuery(path=path, kind="tick", asset_id="paxg", source="mine")),
    ]
    for src in sources:
        envelopes = src.poll(None, NOW).envelopes
        assert envelopes and {e.source for e in envelopes} == {src.name}
