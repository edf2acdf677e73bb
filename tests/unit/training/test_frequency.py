"""Frequency inference: pandas aliases for regular series, a few gaps tolerated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import ForecastError
from training.frequency import infer_frequency

# (start, pandas alias to generate with, alias expected back)
REGULAR = [
    ("2024-01-01", "h", "h"),
    ("2024-01-01", "15min", "15min"),
    ("2024-01-01", "D", "D"),
    ("2024-01-01", "B", "B"),
    ("2024-01-03", "W-WED", "W-WED"),
    ("2020-01-01", "MS", "MS"),
    ("2020-01-31", "ME", "ME"),
    ("2020-01-31", "BME", "BME"),
    ("1959-01-01", "QS-JAN", "QS-JAN"),
    ("2020-03-31", "QE-DEC", "QE-DEC"),
    ("1990-01-01", "YS-JAN", "YS-JAN"),
    ("1990-12-31", "YE-DEC", "YE-DEC"),
    ("1990-06-30", "YE-JUN", "YE-JUN"),
]


@pytest.mark.parametrize(("start", "freq", "expected"), REGULAR)
def test_regular_series(start: str, freq: str, expected: str) -> None:
    times = pd.date_range(start, periods=30, freq=freq)
    assert infer_frequency(times) == expected


@pytest.mark.parametrize(("start", "freq", "expected"), REGULAR)
def test_one_missing_point(start: str, freq: str, expected: str) -> None:
    times = pd.date_range(start, periods=30, freq=freq).delete(11)
    assert infer_frequency(times) == expected


def test_a_few_missing_points_in_a_short_series() -> None:
    times = pd.date_range("2024-01-01", periods=12, freq="D").delete([2, 7])
    assert infer_frequency(times) == "D"


def test_unsorted_times_are_sorted() -> None:
    times = pd.date_range("2020-01-01", periods=24, freq="MS")
    shuffled = times[np.random.default_rng(0).permutation(len(times))]
    assert infer_frequency(pd.DatetimeIndex(shuffled)) == "MS"


def test_quarterly_anchor_is_canonical() -> None:
    # Quarters starting in April are the same grid as QS-JAN; one spelling per grid.
    times = pd.date_range("2020-04-01", periods=12, freq="QS-APR")
    assert infer_frequency(times) == "QS-JAN"
    assert infer_frequency(times.delete(3)) == "QS-JAN"


def test_business_days_with_a_holiday() -> None:
    times = pd.date_range("2024-12-02", periods=40, freq="B")
    times = times[times != pd.Timestamp("2024-12-25")]
    assert infer_frequency(times) == "B"


@pytest.mark.parametrize(("freq", "expected"), [("h", "h"), ("D", "D")])
def test_timezone_aware_across_dst(freq: str, expected: str) -> None:
    times = pd.date_range("2024-03-20", periods=300, freq=freq, tz="Europe/Berlin")
    assert infer_frequency(times) == expected
    assert infer_frequency(times.delete(40)) == expected


def test_month_start_with_time_of_day() -> None:
    times = pd.date_range("2024-01-01 12:00", periods=12, freq="MS").delete(4)
    assert infer_frequency(times) == "MS"


def test_duplicates_are_rejected() -> None:
    times = pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-03"])
    with pytest.raises(ForecastError, match=r"duplicated observation times: 2024-01-02"):
        infer_frequency(times)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_points(n: int) -> None:
    with pytest.raises(ForecastError, match=r"at least 3"):
        infer_frequency(pd.date_range("2024-01-01", periods=n, freq="D"))


def test_irregular_spacing_is_rejected() -> None:
    times = pd.DatetimeIndex(
        ["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-06", "2024-01-09 07:00", "2024-01-13"]
    )
    with pytest.raises(ForecastError, match=r"no regular spacing"):
        infer_frequency(times)


def test_mostly_gaps_is_rejected() -> None:
    times = pd.date_range("2024-01-01", periods=20, freq="D").delete([1, 3, 5, 7, 9])
    with pytest.raises(ForecastError, match=r"only 75% of the 'D' grid"):
        infer_frequency(times)


def test_mid_month_dates_are_rejected() -> None:
    # Monthly on the 15th has no pandas alias; guessing one would misplace forecasts.
    times = pd.DatetimeIndex([f"2024-{m:02d}-15" for m in range(1, 13)])
    with pytest.raises(ForecastError, match=r"no regular spacing"):
        infer_frequency(times)


def test_nat_is_rejected() -> None:
    times = pd.DatetimeIndex(["2024-01-01", None, "2024-01-03", "2024-01-04"])
    with pytest.raises(ForecastError, match=r"NaT"):
        infer_frequency(times)


def test_not_a_datetime_index() -> None:
    with pytest.raises(ForecastError, match=r"DatetimeIndex"):
        infer_frequency(pd.Index([1, 2, 3]))  # type: ignore[arg-type]
