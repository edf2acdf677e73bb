"""Unit tests for the statsmodels US macro replay."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from statsmodels.datasets import macrodata

from core.envelope import Envelope, decode
from ingestion.macro import SERIES, quarter_start, us_macro_envelopes, us_macro_frame
from ingestion.replay import ReplayQuery, extract, transform

QUARTERS = 203  # 1959Q1 through 2009Q3
REQUIRED = {
    "US.REALGDP",
    "US.CPI",
    "US.INFL",
    "US.UNEMP",
    "US.TBILRATE",
    "US.REALINT",
    "US.M1",
}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return macrodata.load_pandas().data


@pytest.fixture(scope="module")
def envelopes() -> list[Envelope]:
    return us_macro_envelopes()


def test_one_envelope_per_quarter_per_series(data: pd.DataFrame, envelopes: list[Envelope]) -> None:
    assert len(data) == QUARTERS
    series = {e.payload["series"] for e in envelopes}
    assert REQUIRED <= series
    assert len(series) == len(SERIES)
    assert len(envelopes) == QUARTERS * len(SERIES)
    pairs = {(e.event_time, e.payload["series"]) for e in envelopes}
    assert len(pairs) == len(envelopes)


def test_first_realgdp_matches_dataset(data: pd.DataFrame, envelopes: list[Envelope]) -> None:
    gdp = [e for e in envelopes if e.payload["series"] == "US.REALGDP"]
    assert gdp[0].payload["value"] == float(data["realgdp"].iloc[0])
    assert gdp[0].payload["unit"] == "bn chained 2005 USD"
    assert gdp[-1].payload["value"] == float(data["realgdp"].iloc[-1])


def test_event_times_are_quarter_starts(envelopes: list[Envelope]) -> None:
    times = sorted({e.event_time for e in envelopes})
    assert len(times) == QUARTERS
    assert times[0] == datetime(1959, 1, 1, tzinfo=UTC)
    assert times[-1] == datetime(2009, 7, 1, tzinfo=UTC)
    for earlier, later in itertools.pairwise(times):
        months = (later.year - earlier.year) * 12 + later.month - earlier.month
        assert months == 3 and later.day == 1
    # Envelopes come in time order.
    assert [e.event_time for e in envelopes] == sorted(e.event_time for e in envelopes)


def test_envelope_shape(envelopes: list[Envelope]) -> None:
    for env in envelopes:
        assert env.kind == "macro"
        assert env.asset_id is None
        assert env.source == "statsmodels-macrodata"
        assert env.payload["country"] == "United States"
        assert env.payload["frequency"] == "Q"
        assert env.payload["series"].startswith("US.")
        assert env.payload["unit"]
    assert us_macro_envelopes(source="other")[0].source == "other"


def test_all_envelopes_decode(envelopes: list[Envelope]) -> None:
    for env in envelopes:
        assert decode(env.to_bytes()) == env


def test_values_match_dataset_columns(data: pd.DataFrame, envelopes: list[Envelope]) -> None:
    by_key = {(e.event_time, e.payload["series"]): e.payload["value"] for e in envelopes}
    for column, (series, _unit) in SERIES.items():
        for record in data[["year", "quarter", column]].itertuples(index=False):
            start = quarter_start(record.year, record.quarter)
            assert by_key[(start, series)] == pytest.approx(float(record[2]))


def test_frame_replays_to_the_same_envelopes(tmp_path: Path, envelopes: list[Envelope]) -> None:
    path = tmp_path / "us_macro.parquet"
    us_macro_frame().to_parquet(path, index=False)
    query = ReplayQuery(path=path, kind="macro", source="statsmodels-macrodata")
    replayed, rejected = transform(extract(query), query)
    assert rejected == []
    assert [(e.event_time, e.payload) for e in replayed] == [
        (e.event_time, e.payload) for e in envelopes
    ]
