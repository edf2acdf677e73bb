"""Unit tests for the history-file replay source."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.envelope import Envelope, decode
from core.errors import ConfigError
from ingestion.replay import Replayer, ReplayQuery, extract, transform

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


class FakeTime:
    """A clock that only moves when slept on, recording every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def write(tmp_path: Path, rows: list[dict[str, Any]], fmt: str, name: str = "hist") -> Path:
    frame = pd.DataFrame(rows)
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def iso(t: datetime) -> str:
    return t.isoformat()


def load(query: ReplayQuery) -> tuple[list[Envelope], list[tuple[int, str]]]:
    return transform(extract(query), query)


def run_all(query: ReplayQuery, **kwargs: Any) -> tuple[list[Envelope], Any]:
    out: list[Envelope] = []
    stats = Replayer(query, **kwargs).run(out.append)
    return out, stats


# -- round trips -------------------------------------------------------------------------

FORMATS = ["csv", "parquet"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bar_round_trip(tmp_path: Path, fmt: str) -> None:
    rows = [
        {
            "time": iso(T0 + i * HOUR),
            "open": 100.0 + i,
            "high": 102.0 + i,
            "low": 99.0 + i,
            "close": 101.0 + i,
            "volume": 10.0 * i,
            "nav": 100.5,
            "ignored_column": "x",
        }
        for i in range(3)
    ]
    path = write(tmp_path, rows, fmt)
    query = ReplayQuery(path=path, kind="bar", asset_id="ousg", source="my-file")
    envelopes, rejected = load(query)
    assert rejected == []
    assert [e.event_time for e in envelopes] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    first = envelopes[0]
    assert first.kind == "bar" and first.asset_id == "ousg" and first.source == "my-file"
    assert first.payload == {
        "open": 100.0,
        "high": 102.0,
        "low": 99.0,
        "close": 101.0,
        "volume": 0.0,
        "nav": 100.5,
    }
    for env in envelopes:
        assert all(isinstance(v, float) for v in env.payload.values())
        assert decode(env.to_bytes()) == env


@pytest.mark.parametrize("fmt", FORMATS)
def test_tick_round_trip_with_asset_column(tmp_path: Path, fmt: str) -> None:
    rows = [
        {"time": "2025-01-01T00:00:00Z", "asset_id": "paxg", "price": 2650.5, "volume": 1.5},
        {"time": "2025-01-01T00:00:01Z", "asset_id": "", "price": 2650.7, "volume": 0.0},
        {"time": "2025-01-01T00:00:02Z", "asset_id": "xaut", "price": 2651.0, "volume": 2.0},
    ]
    path = write(tmp_path, rows, fmt)
    envelopes, rejected = load(ReplayQuery(path=path, kind="tick", asset_id="default"))
    assert rejected == []
    # The column wins where filled; a blank cell falls back to the query's asset.
    assert [e.asset_id for e in envelopes] == ["paxg", "default", "xaut"]
    assert envelopes[0].payload == {"price": 2650.5, "volume": 1.5}
    assert envelopes[2].event_time == T0 + timedelta(seconds=2)
    assert all(decode(e.to_bytes()) == e for e in envelopes)


@pytest.mark.parametrize("fmt", FORMATS)
def test_macro_round_trip(tmp_path: Path, fmt: str) -> None:
    rows = [
        {"time": "2024-01-01", "value": 5.33, "unit": "%", "country": "United States"},
        {"time": "2024-02-01", "value": 5.33, "unit": "%", "country": "United States"},
    ]
    path = write(tmp_path, rows, fmt)
    envelopes, rejected = load(ReplayQuery(path=path, kind="macro", series="US.FED_FUNDS"))
    assert rejected == []
    assert [e.asset_id for e in envelopes] == [None, None]
    assert envelopes[1].event_time == datetime(2024, 2, 1, tzinfo=UTC)
    assert envelopes[0].payload == {
        "series": "US.FED_FUNDS",
        "value": 5.33,
        "unit": "%",
        "country": "United States",
    }
    assert all(decode(e.to_bytes()) == e for e in envelopes)


@pytest.mark.parametrize("fmt", FORMATS)
def test_macro_series_column_overrides_query(tmp_path: Path, fmt: str) -> None:
    rows = [
        {"time": "2024-01-01", "series": "US.CPI", "value": 308.4, "frequency": "M"},
        {"time": "2024-01-01", "series": None, "value": 5.33, "frequency": "M"},
    ]
    path = write(tmp_path, rows, fmt)
    envelopes, _ = load(ReplayQuery(path=path, kind="macro", series="US.FED_FUNDS"))
    assert [e.payload["series"] for e in envelopes] == ["US.CPI", "US.FED_FUNDS"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_news_round_trip(tmp_path: Path, fmt: str) -> None:
    rows = [
        {
            "time": "2025-03-01T09:30:00+01:00",
            "title": "BlackRock fund crosses $2bn",
            "body": "BUIDL grew again.",
            "url": "https://example.com/a",
            "outlet": "Example Wire",
            "assets": "buidl; ousg",
        },
        {"time": "2025-03-01T10:00:00", "title": "Gold token volumes up", "body": None},
    ]
    path = write(tmp_path, rows, fmt)
    envelopes, rejected = load(ReplayQuery(path=path, kind="news"))
    assert rejected == []
    first, second = envelopes
    assert first.asset_id is None
    assert first.event_time == datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
    assert first.payload == {
        "title": "BlackRock fund crosses $2bn",
        "body": "BUIDL grew again.",
        "url": "https://example.com/a",
        "outlet": "Example Wire",
        "assets": ["buidl", "ousg"],
    }
    # Naive times are UTC; blank cells are simply absent.
    assert second.event_time == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert second.payload == {"title": "Gold token volumes up"}
    assert all(decode(e.to_bytes()) == e for e in envelopes)


def test_onchain_counts_written_as_floats(tmp_path: Path) -> None:
    # pandas writes an int column with gaps as floats ("12.0"); counts must still be ints.
    rows = [
        {"time": "2025-01-01", "holder_count": 12, "tvl_usd": 1e6, "chain": "ethereum"},
        {"time": "2025-01-02", "holder_count": None, "tvl_usd": 2e6, "chain": "ethereum"},
        {"time": "2025-01-03", "holder_count": None, "tvl_usd": None, "chain": None},
    ]
    path = write(tmp_path, rows, "csv")
    envelopes, rejected = load(ReplayQuery(path=path, kind="onchain", asset_id="buidl"))
    assert envelopes[0].payload == {"holder_count": 12, "tvl_usd": 1e6, "chain": "ethereum"}
    assert isinstance(envelopes[0].payload["holder_count"], int)
    assert envelopes[1].payload == {"tvl_usd": 2e6, "chain": "ethereum"}
    assert rejected == [(3, "payload: no onchain metric given")]


def test_parquet_timestamps_naive_and_aware(tmp_path: Path) -> None:
    naive = pd.DataFrame(
        {"time": pd.to_datetime(["2025-01-01 01:00", "2025-01-01 00:00"]), "price": [2.0, 1.0]}
    )
    path = tmp_path / "naive.parquet"
    naive.assign(volume=0.0).to_parquet(path)
    envelopes, _ = load(ReplayQuery(path=path, kind="tick", asset_id="a"))
    assert [e.event_time for e in envelopes] == [T0, T0 + HOUR]
    assert [e.payload["price"] for e in envelopes] == [1.0, 2.0]

    aware = naive.assign(time=naive["time"].dt.tz_localize("Europe/Paris"), volume=0.0)
    path = tmp_path / "aware.parquet"
    aware.to_parquet(path)
    envelopes, _ = load(ReplayQuery(path=path, kind="tick", asset_id="a"))
    assert [e.event_time for e in envelopes] == [T0 - HOUR, T0]


# -- ordering ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_unsorted_input_comes_out_sorted_and_ties_keep_file_order(tmp_path: Path, fmt: str) -> None:
    times = [3, 1, 2, 1, 0]
    rows = [
        {"time": iso(T0 + h * HOUR), "price": 10.0 + i, "volume": 1.0} for i, h in enumerate(times)
    ]
    path = write(tmp_path, rows, fmt)
    query = ReplayQuery(path=path, kind="tick", asset_id="a")
    frame = extract(query)
    assert list(frame.index) == [5, 2, 4, 3, 1]  # 1-based file rows, stably sorted
    envelopes, _ = transform(frame, query)
    assert [e.event_time for e in envelopes] == sorted(e.event_time for e in envelopes)
    assert [e.payload["price"] for e in envelopes] == [14.0, 11.0, 13.0, 12.0, 10.0]


# -- bad rows ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_tick_rows_are_rejected_with_row_and_reason(tmp_path: Path, fmt: str) -> None:
    rows = [
        {"time": "2025-01-01T00:00:00Z", "price": 1.0, "volume": 1.0},
        {"time": "2025-01-01T01:00:00Z", "price": -1.0, "volume": 1.0},  # negative price
        {"time": "not a time", "price": 1.0, "volume": 1.0},  # unparsable time
        {"time": "2025-01-01T02:00:00Z", "price": None, "volume": 1.0},  # missing price
        {"time": "2025-01-01T03:00:00Z", "price": 3.0, "volume": 1.0},
    ]
    path = write(tmp_path, rows, fmt)
    envelopes, rejected = load(ReplayQuery(path=path, kind="tick", asset_id="a"))
    assert [e.payload["price"] for e in envelopes] == [1.0, 3.0]
    by_row = dict(rejected)
    assert set(by_row) == {2, 3, 4}
    assert by_row[2].startswith("price:") and "greater than 0" in by_row[2]
    assert by_row[3].startswith("time:")
    assert by_row[4] == "price: missing"


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_macro_rows_are_rejected(tmp_path: Path, fmt: str) -> None:
    rows = [
        {"time": "2024-01-01", "value": "5.3"},
        {"time": "2024-02-01", "value": None},  # missing value
        {"time": "2024-13-01", "value": "5.3"},  # month 13
        {"time": "2024-04-01", "value": "five"},
        {"time": "2024-05-01", "value": "inf"},
        {"time": "2024-06-01", "value": "5.4"},
    ]
    path = write(tmp_path, rows, fmt)
    envelopes, rejected = load(ReplayQuery(path=path, kind="macro", series="US.X"))
    assert [e.payload["value"] for e in envelopes] == [5.3, 5.4]
    by_row = dict(rejected)
    assert by_row[2] == "value: missing"
    assert by_row[3].startswith("time:")
    assert by_row[4].startswith("value:") and "'five'" in by_row[4]
    assert by_row[5].startswith("value: must be a finite number")


def test_bad_asset_id_and_missing_asset_are_rejected(tmp_path: Path) -> None:
    rows = [
        {"time": "2025-01-01", "asset_id": "x" * 65, "price": 1.0, "volume": 1.0},
        {"time": "2025-01-02", "asset_id": None, "price": 1.0, "volume": 1.0},
        {"time": "2025-01-03", "asset_id": "ok", "price": 1.0, "volume": 1.0},
    ]
    path = write(tmp_path, rows, "csv")
    envelopes, rejected = load(ReplayQuery(path=path, kind="tick"))
    assert [e.asset_id for e in envelopes] == ["ok"]
    by_row = dict(rejected)
    assert by_row[1].startswith("asset_id:")
    assert by_row[2] == "asset_id: missing"


def test_replayer_reports_rejects_and_emits_good_rows(tmp_path: Path) -> None:
    rows = [
        {"time": "2025-01-01T00:00:00Z", "price": 1.0, "volume": 1.0},
        {"time": "garbage", "price": 1.0, "volume": 1.0},
        {"time": "2025-01-01T01:00:00Z", "price": 0.0, "volume": 1.0},
        {"time": "2025-01-01T02:00:00Z", "price": 2.0, "volume": 1.0},
    ]
    path = write(tmp_path, rows, "csv")
    out, stats = run_all(ReplayQuery(path=path, kind="tick", asset_id="a"))
    assert [e.payload["price"] for e in out] == [1.0, 2.0]
    assert stats.emitted == 2
    # Replay order: row 3 (01:00) between the good rows, the unplaceable row 2 last.
    assert [r for r, _ in stats.rejected] == [3, 2]
    assert stats.last_event_time == T0 + 2 * HOUR
    assert not stats.stopped


# -- resume ------------------------------------------------------------------------------


def _tick_rows(n: int) -> list[dict[str, Any]]:
    # Pairs of rows share a time, so a stop can land inside a group.
    return [
        {"time": iso(T0 + (i // 2) * HOUR), "asset_id": f"a{i % 2}", "price": 1.0 + i, "volume": 1}
        for i in range(n)
    ]


def test_start_after_skips_exactly_rows_at_or_before_cursor(tmp_path: Path) -> None:
    path = write(tmp_path, _tick_rows(10), "csv")
    cursor = T0 + 2 * HOUR
    envelopes, _ = load(ReplayQuery(path=path, kind="tick", start_after=cursor))
    assert [e.payload["price"] for e in envelopes] == [7.0, 8.0, 9.0, 10.0]
    assert all(e.event_time > cursor for e in envelopes)
    # A naive cursor is UTC.
    naive, _ = load(ReplayQuery(path=path, kind="tick", start_after=cursor.replace(tzinfo=None)))
    assert [e.payload for e in naive] == [e.payload for e in envelopes]


@pytest.mark.parametrize("stop_after", [1, 2, 3, 5, 8])
def test_stop_and_resume_has_no_gap_or_duplicate(tmp_path: Path, stop_after: int) -> None:
    path = write(tmp_path, _tick_rows(10), "parquet")
    query = ReplayQuery(path=path, kind="tick")
    full, _ = run_all(query)

    stop = threading.Event()
    first: list[Envelope] = []

    def emit(env: Envelope) -> None:
        first.append(env)
        if len(first) == stop_after:
            stop.set()

    stats = Replayer(query).run(emit, stop=stop)
    assert stats.stopped
    assert stats.emitted == len(first) < len(full)
    assert stats.last_event_time == first[-1].event_time

    resumed_query = query.model_copy(update={"start_after": stats.last_event_time})
    second, stats2 = run_all(resumed_query)
    assert not stats2.stopped

    def key(e: Envelope) -> tuple[Any, ...]:
        return (e.event_time, e.asset_id, e.payload["price"])

    union = [key(e) for e in first + second]
    assert union == [key(e) for e in full]
    assert len(set(union)) == len(union)


def test_stop_already_set_emits_nothing_and_keeps_cursor(tmp_path: Path) -> None:
    path = write(tmp_path, _tick_rows(4), "csv")
    cursor = T0
    stop = threading.Event()
    stop.set()
    out: list[Envelope] = []
    stats = Replayer(ReplayQuery(path=path, kind="tick", start_after=cursor)).run(
        out.append, stop=stop
    )
    assert out == [] and stats.stopped and stats.last_event_time == cursor


# -- pacing ------------------------------------------------------------------------------


def test_speed_60_sleeps_a_minute_per_hour_of_event_time(tmp_path: Path) -> None:
    rows = [{"time": iso(T0 + h * HOUR), "price": 1.0, "volume": 1.0} for h in (0, 1, 1, 3)]
    path = write(tmp_path, rows, "csv")
    fake = FakeTime()
    emitted_at: list[float] = []
    stats = Replayer(
        ReplayQuery(path=path, kind="tick", asset_id="a", speed=60.0),
        clock=fake.clock,
        sleep=fake.sleep,
    ).run(lambda env: emitted_at.append(fake.now))
    assert stats.emitted == 4
    assert sum(fake.sleeps) == pytest.approx(180.0)
    assert [t - emitted_at[0] for t in emitted_at] == pytest.approx([0.0, 60.0, 60.0, 180.0])


def test_speed_none_never_sleeps(tmp_path: Path) -> None:
    rows = [{"time": iso(T0 + h * HOUR), "price": 1.0, "volume": 1.0} for h in range(5)]
    path = write(tmp_path, rows, "csv")
    fake = FakeTime()
    _, stats = run_all(
        ReplayQuery(path=path, kind="tick", asset_id="a"), clock=fake.clock, sleep=fake.sleep
    )
    assert stats.emitted == 5 and fake.sleeps == []


def test_pacing_does_not_accumulate_emit_time(tmp_path: Path) -> None:
    rows = [{"time": iso(T0 + h * HOUR), "price": 1.0, "volume": 1.0} for h in range(3)]
    path = write(tmp_path, rows, "csv")
    fake = FakeTime()

    def slow_emit(env: Envelope) -> None:
        fake.now += 10.0  # the consumer takes 10 s of the 60 s budget

    Replayer(
        ReplayQuery(path=path, kind="tick", asset_id="a", speed=60.0),
        clock=fake.clock,
        sleep=fake.sleep,
    ).run(slow_emit)
    assert sum(fake.sleeps) == pytest.approx(100.0)


def test_stop_cuts_a_long_sleep_short(tmp_path: Path) -> None:
    rows = [{"time": iso(T0 + h * HOUR), "price": 1.0, "volume": 1.0} for h in (0, 24)]
    path = write(tmp_path, rows, "csv")
    fake = FakeTime()
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        if fake.now > 1005.0:
            stop.set()

    out: list[Envelope] = []
    stats = Replayer(
        ReplayQuery(path=path, kind="tick", asset_id="a", speed=1.0),
        clock=fake.clock,
        sleep=sleep,
    ).run(out.append, stop=stop)
    assert len(out) == 1 and stats.stopped and stats.last_event_time == T0
    assert sum(fake.sleeps) < 10.0


# -- file-level errors -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hist.json", "hist.xlsx", "hist"])
def test_unsupported_suffix_is_config_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("time,price\n")
    with pytest.raises(ConfigError, match="unsupported suffix"):
        extract(ReplayQuery(path=path, kind="tick", asset_id="a"))


def test_file_level_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        extract(ReplayQuery(path=tmp_path / "missing.csv", kind="tick", asset_id="a"))

    no_time = write(tmp_path, [{"when": "2025-01-01", "price": 1.0, "volume": 1}], "csv", "a")
    with pytest.raises(ConfigError, match="no 'time' column"):
        extract(ReplayQuery(path=no_time, kind="tick", asset_id="a"))

    epoch = write(tmp_path, [{"time": 1735689600, "price": 1.0, "volume": 1}], "parquet", "b")
    with pytest.raises(ConfigError, match="holds numbers"):
        extract(ReplayQuery(path=epoch, kind="tick", asset_id="a"))

    no_close = write(
        tmp_path, [{"time": "2025-01-01", "open": 1, "high": 1, "low": 1, "volume": 1}], "csv", "c"
    )
    with pytest.raises(ConfigError, match="close"):
        load(ReplayQuery(path=no_close, kind="bar", asset_id="a"))

    ticks = write(tmp_path, [{"time": "2025-01-01", "price": 1.0, "volume": 1}], "csv", "d")
    with pytest.raises(ConfigError, match="asset_id"):
        load(ReplayQuery(path=ticks, kind="tick"))

    macro = write(tmp_path, [{"time": "2025-01-01", "value": 1.0}], "csv", "e")
    with pytest.raises(ConfigError, match="series"):
        load(ReplayQuery(path=macro, kind="macro"))


def test_header_only_file_replays_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("time,price,volume\n")
    out, stats = run_all(ReplayQuery(path=path, kind="tick", asset_id="a"))
    assert out == [] and stats.emitted == 0 and stats.rejected == []


def test_query_validation() -> None:
    with pytest.raises(ValueError):
        ReplayQuery(path=Path("x.csv"), kind="tick", speed=0)
    with pytest.raises(ValueError):
        ReplayQuery(path=Path("x.csv"), kind="trade")  # type: ignore[arg-type]
