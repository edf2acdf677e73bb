"""The ``rwa forecast`` contract: read a ``time,value`` CSV, forecast it, return bands.

Reading is strict on purpose: a row that cannot be parsed is an error naming its
line, never a row quietly dropped, because a silently shortened series gives a
forecast that looks fine and is wrong. Forecasting infers the sampling frequency,
lays the observations on that grid (a few missing bars become gaps), fits the
ensemble of :mod:`training.ensemble` (naive, ARIMA, damped trend, with weights and
conformal intervals from a rolling-origin backtest on the series itself), and
continues the grid past the last observation for the forecast times.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pydantic import BaseModel, ConfigDict

from core.errors import ForecastError
from training import ensemble
from training.components import default_components
from training.frequency import infer_frequency

logger = logging.getLogger(__name__)

#: Fewest observations a series needs before it is worth fitting a model to.
MIN_POINTS = 8

#: Longest horizon accepted; beyond it the intervals say nothing useful.
MAX_HORIZON = 1000

#: A full season must repeat this often in the data before it is modelled.
MIN_SEASONS = 3

# A time part that ends in a UTC offset or "Z", e.g. "T10:00+02:00" or " 10:00Z".
# The time part is required so that a date such as "2024-01-01" does not look like
# "2024-01" with a "-01" offset.
_TZ_SUFFIX = re.compile(
    r"[T ]\d{1,2}(?::\d{2}){0,2}(?:\.\d+)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE
)
_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)


class ForecastPoint(BaseModel):
    """One forecast step: the time and its point forecast with 80% and 95% bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    time: datetime
    mean: float
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float


class ForecastResult(BaseModel):
    """A forecast as ``rwa forecast`` returns it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: str
    frequency: str
    points: list[ForecastPoint]


def read_series_csv(path: Path) -> pd.Series:
    """Read a ``time,value`` CSV into a float series indexed by time.

    Times are ISO 8601 dates or datetimes (``2024-01-31``, ``2024-01``,
    ``2024-01-31T10:00:00Z``) or quarters (``2024Q1``, read as the quarter's first
    day). Naive times stay naive and aware ones keep their zone; a column mixing UTC
    offsets (a DST change) is converted to UTC, the only zone that holds them all.
    Rows are kept in file order; blank lines are skipped. Other columns are ignored.

    Args:
        path: The CSV file, with a header row naming ``time`` and ``value``.

    Returns:
        The values as floats, indexed by a ``DatetimeIndex`` named ``time``.

    Raises:
        ForecastError: The file is missing, empty or not CSV, a column is missing,
            or a row has an unparsable time or a missing or non-numeric value; the
            message names the file and the line.
    """
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            # Parse every cell ourselves so that "NA" or "" is an error, not a NaN.
            keep_default_na=False,
            # Keep blank lines as rows so that row positions map to file lines.
            skip_blank_lines=False,
        )
    except FileNotFoundError as e:
        raise ForecastError(f"{path}: no such file") from e
    except pd.errors.EmptyDataError as e:
        raise ForecastError(f"{path}: the file is empty") from e
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise ForecastError(f"{path}: not a readable CSV file ({e})") from e

    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("time", "value") if c not in frame.columns]
    if missing:
        found = ", ".join(frame.columns) or "none"
        raise ForecastError(f"{path}: missing column(s) {', '.join(missing)}; found {found}")
    frame = frame[["time", "value"]].apply(lambda col: col.str.strip())
    # Line numbers as an editor shows them: the header is line 1.
    frame.index = pd.RangeIndex(2, len(frame) + 2)
    blank = (frame["time"] == "") & (frame["value"] == "")
    frame = frame[~blank]
    if frame.empty:
        raise ForecastError(f"{path}: no data rows below the header")

    times = _parse_times(frame["time"], path)
    values = _parse_values(frame["value"], path)
    return pd.Series(values, index=pd.DatetimeIndex(times, name="time"), name="value")


def forecast_series(series: pd.Series, horizon: int) -> ForecastResult:
    """Forecast ``horizon`` steps past the last observation of ``series``.

    Args:
        series: Finite values indexed by a ``DatetimeIndex``, in any order, without
            duplicated times, at a regular frequency (a few missing steps are fine).
        horizon: Steps to forecast, 1 to ``MAX_HORIZON``.

    Returns:
        The model version, the inferred frequency and one point per future step.

    Raises:
        ForecastError: A bad horizon, too few points, missing or infinite values,
            or times without a regular frequency.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, Integral):
        raise ForecastError(f"horizon must be an integer, got {horizon!r}")
    if not 1 <= horizon <= MAX_HORIZON:
        raise ForecastError(f"horizon must be between 1 and {MAX_HORIZON}, got {horizon}")
    if not isinstance(series, pd.Series) or not isinstance(series.index, pd.DatetimeIndex):
        raise ForecastError("series must be a pandas Series indexed by a DatetimeIndex")
    if len(series) < MIN_POINTS:
        raise ForecastError(f"need at least {MIN_POINTS} observations, got {len(series)}")
    try:
        values = series.astype(float)
    except (TypeError, ValueError) as e:
        raise ForecastError(f"series values are not numeric: {e}") from e
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        raise ForecastError(
            f"series has {int(bad.sum())} missing or infinite value(s), "
            f"first at {values.index[bad.argmax()]}"
        )

    frequency = infer_frequency(series.index)
    values = values.sort_index()
    # Lay the observations on the full grid so that missing steps are gaps rather
    # than silently shortened time; the ARIMA filter skips the NaNs.
    grid = pd.date_range(start=values.index[0], end=values.index[-1], freq=frequency)
    on_grid = values.reindex(grid)
    if len(grid) > len(values):
        logger.info("%d missing %s step(s) left as gaps", len(grid) - len(values), frequency)

    period = seasonal_period(frequency)
    if period is not None and len(grid) < MIN_SEASONS * period:
        period = None
    fc = ensemble.fit_forecast(on_grid.to_numpy(), horizon, default_components(period))
    logger.debug("ensemble weights at step 1: %s", fc.band.weights)
    band = fc.band

    future = pd.date_range(start=grid[-1], periods=horizon + 1, freq=frequency)[1:]
    points = [
        ForecastPoint(
            time=t.to_pydatetime(),
            mean=float(band.mean[i]),
            lower_80=float(band.lower[0.8][i]),
            upper_80=float(band.upper[0.8][i]),
            lower_95=float(band.lower[0.95][i]),
            upper_95=float(band.upper[0.95][i]),
        )
        for i, t in enumerate(future)
    ]
    return ForecastResult(model_version=fc.model_version, frequency=frequency, points=points)


def seasonal_period(frequency: str) -> int | None:
    """The season length in steps for a frequency alias, or None without one.

    Args:
        frequency: An alias as :func:`training.frequency.infer_frequency` returns.

    Returns:
        24 for hourly, 7 for daily, 5 for business-daily, 12 for monthly and 4 for
        quarterly data; None otherwise (multiples such as ``"4h"`` included).
    """
    offset = to_offset(frequency)
    if offset.n != 1:
        return None
    base = frequency.split("-")[0]
    periods = {
        "h": 24,
        "D": 7,
        "B": 5,
        "MS": 12,
        "ME": 12,
        "BMS": 12,
        "BME": 12,
        "QS": 4,
        "QE": 4,
        "BQS": 4,
        "BQE": 4,
    }
    return periods.get(base)


def _parse_times(raw: pd.Series, path: Path) -> pd.DatetimeIndex:
    """Parse the time column; raise naming the first bad line."""
    quarters = raw.str.extract(_QUARTER)
    if quarters.notna().all(axis=None):
        labels = quarters[0] + "Q" + quarters[1]
        return pd.PeriodIndex(labels, freq="Q").to_timestamp()
    try:
        parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce")
    except ValueError as e:
        # pandas refuses to hold several zones in one column.
        aware = raw.str.contains(_TZ_SUFFIX)
        if not aware.all():
            line = aware.index[(~aware).argmax()]
            raise ForecastError(
                f"{path}: line {line}: time {raw[line]!r} has no UTC offset while "
                "other times do; use one convention for the whole column"
            ) from e
        logger.info("%s: times carry several UTC offsets; converting to UTC", path)
        parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
    bad = parsed.isna()
    if bad.any():
        line = bad.index[bad.to_numpy().argmax()]
        value = raw[line]
        what = "missing time" if value == "" else f"cannot parse time {value!r}"
        raise ForecastError(
            f"{path}: line {line}: {what} (expected an ISO 8601 date or datetime, "
            f"or a quarter like 2024Q1); {int(bad.sum())} bad time(s) in total"
        )
    return pd.DatetimeIndex(parsed)


def _parse_values(raw: pd.Series, path: Path) -> np.ndarray:
    """Parse the value column; raise naming the first bad line."""
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = ~np.isfinite(numbers.to_numpy(dtype=float))
    if bad.any():
        line = raw.index[bad.argmax()]
        value = raw[line]
        what = "missing value" if value == "" else f"value {value!r} is not a finite number"
        raise ForecastError(f"{path}: line {line}: {what}; {int(bad.sum())} bad value(s) in total")
    return numbers.to_numpy(dtype=float)
