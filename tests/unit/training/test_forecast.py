"""The ``rwa forecast`` contract: CSV in, frequency-continuing forecast bands out."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.datasets import macrodata

from core.errors import ForecastError
from training.ensemble import ENSEMBLE_VERSION
from training.forecast import (
    MAX_HORIZON,
    ForecastResult,
    forecast_series,
    read_series_csv,
    seasonal_period,
)


def _prices(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, n)))


def _write(tmp_path: Path, times: list[str], values: np.ndarray | list[str]) -> Path:
    path = tmp_path / "series.csv"
    rows = [f"{t},{v}" for t, v in zip(times, values, strict=True)]
    path.write_text("time,value\n" + "\n".join(rows) + "\n")
    return path


def _assert_nested(result: ForecastResult) -> None:
    for p in result.points:
        assert p.lower_95 <= p.lower_80 <= p.mean <= p.upper_80 <= p.upper_95


def test_daily_round_trip(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=90, freq="D")
    path = _write(tmp_path, [t.strftime("%Y-%m-%d") for t in times], _prices(90))
    series = read_series_csv(path)
    assert series.name == "value"
    assert series.index.name == "time"
    assert len(series) == 90

    result = forecast_series(series, 5)
    assert result.model_version.startswith(f"{ENSEMBLE_VERSION}(naive+arima-aic-v1+ets-damped-v1")
    assert result.frequency == "D"
    assert [p.time for p in result.points] == [
        datetime(2024, 3, 31) + timedelta(days=k) for k in range(5)
    ]
    assert all(p.lower_95 > 0 for p in result.points)
    _assert_nested(result)
    assert ForecastResult.model_validate_json(result.model_dump_json()) == result


@pytest.mark.parametrize(
    ("freq", "last", "expected"),
    [
        ("MS", "2023-12-01", ["2024-01-01", "2024-02-01", "2024-03-01"]),
        ("ME", "2023-12-31", ["2024-01-31", "2024-02-29", "2024-03-31"]),
    ],
)
def test_monthly_round_trip(tmp_path: Path, freq: str, last: str, expected: list[str]) -> None:
    times = pd.date_range(end=last, periods=48, freq=freq)
    path = _write(tmp_path, [t.strftime("%Y-%m-%d") for t in times], _prices(48, seed=1))
    result = forecast_series(read_series_csv(path), 3)
    assert result.frequency == freq
    assert [p.time for p in result.points] == [datetime.fromisoformat(e) for e in expected]
    _assert_nested(result)


@pytest.mark.parametrize("style", ["iso", "quarter-label"])
def test_quarterly_round_trip(tmp_path: Path, style: str) -> None:
    periods = pd.period_range(end="2009Q3", periods=40, freq="Q")
    labels = [
        str(p) if style == "quarter-label" else p.start_time.strftime("%Y-%m-%d") for p in periods
    ]
    path = _write(tmp_path, labels, _prices(40, seed=2))
    series = read_series_csv(path)
    assert series.index[-1] == pd.Timestamp("2009-07-01")

    result = forecast_series(series, 3)
    assert result.frequency == "QS-JAN"
    assert [p.time for p in result.points] == [
        datetime(2009, 10, 1),
        datetime(2010, 1, 1),
        datetime(2010, 4, 1),
    ]


def test_timezone_aware_hourly_keeps_its_zone(tmp_path: Path) -> None:
    times = pd.date_range("2024-05-01T00:00:00Z", periods=72, freq="h")
    path = _write(tmp_path, [t.isoformat() for t in times], _prices(72, seed=3))
    result = forecast_series(read_series_csv(path), 2)
    assert result.frequency == "h"
    assert result.points[0].time == datetime(2024, 5, 4, 0, tzinfo=UTC)
    assert result.points[0].time.utcoffset() == timedelta(0)


def test_mixed_utc_offsets_become_utc(tmp_path: Path) -> None:
    # Hourly local times across the spring DST change carry +01:00 then +02:00.
    times = pd.date_range("2024-03-30 12:00", periods=30, freq="h", tz="Europe/Berlin")
    path = _write(tmp_path, [t.isoformat() for t in times], _prices(30, seed=4))
    series = read_series_csv(path)
    assert str(series.index.tz) == "UTC"
    assert forecast_series(series, 1).frequency == "h"


def test_gaps_and_unsorted_rows(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=60, freq="D").delete([10, 30])
    order = np.random.default_rng(5).permutation(len(times))
    labels = [times[i].strftime("%Y-%m-%d") for i in order]
    path = _write(tmp_path, labels, _prices(len(times), seed=5)[order])
    result = forecast_series(read_series_csv(path), 2)
    assert result.frequency == "D"
    assert result.points[0].time == datetime(2024, 3, 1)


def test_blank_lines_are_skipped_but_line_numbers_kept(tmp_path: Path) -> None:
    path = tmp_path / "series.csv"
    path.write_text("time,value\n2024-01-01,1\n\n2024-01-02,2\n2024-01-03,oops\n")
    with pytest.raises(ForecastError, match=r"line 5: value 'oops' is not a finite number"):
        read_series_csv(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", r"the file is empty"),
        ("time,value\n", r"no data rows"),
        ("date,price\n2024-01-01,1\n", r"missing column\(s\) time, value; found date, price"),
        ("time\n2024-01-01\n", r"missing column\(s\) value"),
        (
            "time,value\n2024-01-01,1\n2024-01-02,2\nnot-a-date,3\n",
            r"line 4: cannot parse time 'not-a-date'",
        ),
        ("time,value\n2024-01-01,1\n,2\n", r"line 3: missing time"),
        ("time,value\n2024-01-01,1\n2024-01-02,\n", r"line 3: missing value"),
        (
            "time,value\n2024-01-01,abc\n2024-01-02,2\n",
            r"line 2: value 'abc' is not a finite number",
        ),
        ("time,value\n2024-01-01,1\n2024-01-02,NA\n", r"line 3: value 'NA'"),
        ("time,value\n2024-01-01,inf\n", r"line 2: value 'inf'"),
        (
            "time,value\n2024-01-01T00:00Z,1\n2024-01-01T01:00,2\n",
            r"line 3: time '2024-01-01T01:00' has no UTC offset",
        ),
    ],
)
def test_bad_csv(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ForecastError, match=match):
        read_series_csv(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ForecastError, match=r"no such file"):
        read_series_csv(tmp_path / "absent.csv")


def _daily(n: int) -> pd.Series:
    return pd.Series(_prices(n), index=pd.date_range("2024-01-01", periods=n, freq="D"))


@pytest.mark.parametrize("horizon", [0, -1, MAX_HORIZON + 1])
def test_horizon_out_of_range(horizon: int) -> None:
    with pytest.raises(ForecastError, match=r"horizon must be between 1 and 1000"):
        forecast_series(_daily(30), horizon)


def test_horizon_must_be_an_integer() -> None:
    with pytest.raises(ForecastError, match=r"horizon must be an integer"):
        forecast_series(_daily(30), 2.5)  # type: ignore[arg-type]


def test_longest_horizon() -> None:
    result = forecast_series(_daily(60), MAX_HORIZON)
    assert len(result.points) == MAX_HORIZON
    assert result.points[-1].time == datetime(2024, 2, 29) + timedelta(days=MAX_HORIZON)


def test_too_short() -> None:
    with pytest.raises(ForecastError, match=r"at least 8 observations, got 7"):
        forecast_series(_daily(7), 1)


def test_missing_values_are_rejected() -> None:
    series = _daily(30)
    series.iloc[4] = np.nan
    with pytest.raises(
        ForecastError, match=r"1 missing or infinite value\(s\), first at 2024-01-05"
    ):
        forecast_series(series, 1)


def test_duplicated_times_are_rejected() -> None:
    series = _daily(30)
    series.index = series.index.where(
        series.index != pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-02")
    )
    with pytest.raises(ForecastError, match=r"duplicated"):
        forecast_series(series, 1)


def test_not_time_indexed() -> None:
    with pytest.raises(ForecastError, match=r"DatetimeIndex"):
        forecast_series(pd.Series(np.arange(20.0)), 1)


def test_constant_series() -> None:
    series = pd.Series(1.0, index=pd.date_range("2024-01-01", periods=30, freq="D"))
    result = forecast_series(series, 3)
    assert all(p.lower_95 == p.mean == p.upper_95 == pytest.approx(1.0) for p in result.points)


def test_seasonal_periods() -> None:
    assert seasonal_period("h") == 24
    assert seasonal_period("D") == 7
    assert seasonal_period("MS") == 12
    assert seasonal_period("QE-DEC") == 4
    assert seasonal_period("QS-JAN") == 4
    assert seasonal_period("YS-JAN") is None
    assert seasonal_period("W-SUN") is None
    assert seasonal_period("4h") is None


def test_realgdp_eight_quarters() -> None:
    data = macrodata.load_pandas().data
    times = pd.period_range("1959Q1", periods=len(data), freq="Q").to_timestamp()
    series = pd.Series(data["realgdp"].to_numpy(), index=times)
    last = float(series.iloc[-1])

    result = forecast_series(series, 8)
    assert result.frequency == "QS-JAN"
    assert result.points[0].time == datetime(2009, 10, 1)
    assert result.points[-1].time == datetime(2011, 7, 1)
    _assert_nested(result)
    means = np.array([p.mean for p in result.points])
    # US real GDP grows about 0.8% a quarter; eight quarters out stays near that path.
    assert (means > 0.9 * last).all() and (means < 1.2 * last).all()
    assert means[-1] > last
    widths = [p.upper_95 - p.lower_95 for p in result.points]
    assert all(b > a for a, b in itertools.pairwise(widths))
    assert all(p.lower_95 > 0 for p in result.points)
