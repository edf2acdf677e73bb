"""Infer the sampling frequency of a price series as a pandas offset alias.

The forecaster needs the frequency twice: to choose a seasonal period and to lay out
the future timestamps after the last observation. ``pd.infer_freq`` answers only for
perfectly regular indexes, so one missing bar would make a series unforecastable;
the fallback here classifies the median spacing and then checks that every
observation sits on the grid of the candidate alias, which tolerates a few gaps but
not jitter or mixed spacings.

Aliases follow pandas 3 spelling: ``"min"``, ``"h"``, ``"D"``, ``"B"``, ``"W-SUN"``,
``"MS"``/``"ME"`` (and business ``"BMS"``/``"BME"``), ``"QS-JAN"``/``"QE-DEC"``,
``"YS-JAN"``/``"YE-DEC"`` and their business variants. Intraday multiples such as
``"15min"`` or ``"4h"`` are kept as they are.
"""

from __future__ import annotations

import logging

import pandas as pd
from pandas.tseries import offsets
from pandas.tseries.frequencies import to_offset

from core.errors import ForecastError

logger = logging.getLogger(__name__)

#: Fewest observations from which a spacing can be told apart from chance.
MIN_POINTS = 3

#: Share of the grid between the first and last observation that must be observed.
#: One or two missing bars in a short series pass; a series that is mostly holes does
#: not, because its "frequency" would be a guess.
MIN_COVERAGE = 0.8

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")

_MINUTE = pd.Timedelta(minutes=1)
_HOUR = pd.Timedelta(hours=1)
_DAY = pd.Timedelta(days=1)


def infer_frequency(times: pd.DatetimeIndex) -> str:
    """Return the pandas offset alias that the observation times follow.

    Unsorted times are sorted first (the order of rows in a file carries no meaning);
    duplicated times are rejected because there is no honest way to pick one value.

    Args:
        times: Observation times, naive or timezone-aware.

    Returns:
        An offset alias usable with ``pd.date_range``, e.g. ``"D"`` or ``"QS-JAN"``.

    Raises:
        ForecastError: Fewer than 3 times, missing or duplicated times, or no regular
            spacing.
    """
    index = _prepare(times)
    alias = _from_pandas(index)
    if alias is not None:
        return alias
    return _from_spacing(index)


def _prepare(times: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Validate the index and return it sorted."""
    if not isinstance(times, pd.DatetimeIndex):
        raise ForecastError(f"times must be a DatetimeIndex, got {type(times).__name__}")
    if len(times) < MIN_POINTS:
        raise ForecastError(
            f"need at least {MIN_POINTS} observation times to infer a frequency, got {len(times)}"
        )
    if times.hasnans:
        raise ForecastError("observation times contain missing values (NaT)")
    duplicated = times[times.duplicated()].unique()
    if len(duplicated) > 0:
        shown = ", ".join(str(t) for t in duplicated[:3])
        more = f" and {len(duplicated) - 3} more" if len(duplicated) > 3 else ""
        raise ForecastError(f"duplicated observation times: {shown}{more}")
    if not times.is_monotonic_increasing:
        logger.debug("sorting %d unsorted observation times", len(times))
        times = times.sort_values()
    return times


def _from_pandas(index: pd.DatetimeIndex) -> str | None:
    """Ask ``pd.infer_freq`` and keep its answer only when it is a supported alias."""
    try:
        # pandas 3.1 warns that infer_freq will return an offset; opt in to that now.
        with pd.option_context("future.infer_freq_returns_offset", True):
            inferred = pd.infer_freq(index)
    except ValueError:
        return None
    if inferred is None:
        return None
    offset = to_offset(inferred)
    alias = _canonical(offset)
    if alias is None:
        logger.debug("pandas inferred unsupported frequency %s", offset.freqstr)
    return alias


def _canonical(offset: offsets.BaseOffset) -> str | None:
    """Map a supported offset to one spelling per grid, or None if unsupported.

    Quarterly anchors name the same grid three ways (QS-JAN = QS-APR = ...); the
    canonical one keeps results stable whichever month the data start in.
    """
    if isinstance(offset, (offsets.Minute, offsets.Hour)):
        return offset.freqstr
    if offset.n != 1:
        return None
    if isinstance(offset, offsets.Day):
        return "D"
    if isinstance(offset, offsets.BusinessDay):
        return "B"
    if isinstance(offset, offsets.Week):
        return None if offset.weekday is None else f"W-{_WEEKDAYS[offset.weekday]}"
    simple = {
        offsets.MonthBegin: "MS",
        offsets.MonthEnd: "ME",
        offsets.BusinessMonthBegin: "BMS",
        offsets.BusinessMonthEnd: "BME",
    }
    for kind, alias in simple.items():
        if type(offset) is kind:
            return alias
    quarterly = {
        offsets.QuarterBegin: ("QS", 0),
        offsets.BQuarterBegin: ("BQS", 0),
        offsets.QuarterEnd: ("QE", 9),
        offsets.BQuarterEnd: ("BQE", 9),
    }
    for kind, (prefix, base) in quarterly.items():
        if type(offset) is kind:
            month = base + (offset.startingMonth - 1) % 3
            return f"{prefix}-{_MONTHS[month]}"
    yearly = {
        offsets.YearBegin: "YS",
        offsets.BYearBegin: "BYS",
        offsets.YearEnd: "YE",
        offsets.BYearEnd: "BYE",
    }
    for kind, prefix in yearly.items():
        if type(offset) is kind:
            return f"{prefix}-{_MONTHS[offset.month - 1]}"
    return None


def _candidates(index: pd.DatetimeIndex, step: pd.Timedelta) -> list[str]:
    """Aliases whose nominal spacing matches the median step."""
    first = index[0]
    month = _MONTHS[first.month - 1]
    if step < pd.Timedelta(hours=20):
        if step < _MINUTE or step % _MINUTE != pd.Timedelta(0):
            return []
        if step % _HOUR == pd.Timedelta(0):
            hours = step // _HOUR
            return ["h" if hours == 1 else f"{hours}h"]
        minutes = step // _MINUTE
        return ["min" if minutes == 1 else f"{minutes}min"]
    days = step / _DAY
    if days <= 1.2:
        return ["D", "B"]
    if 6.5 <= days <= 7.5:
        return [f"W-{_WEEKDAYS[first.weekday()]}"]
    if 27 <= days <= 32:
        return ["MS", "ME", "BMS", "BME"]
    if 88 <= days <= 93:
        # Same canonical anchors as _canonical: QS-JAN/FEB/MAR, QE-OCT/NOV/DEC.
        start_anchor = _MONTHS[(first.month - 1) % 3]
        end_anchor = _MONTHS[9 + (first.month - 1) % 3]
        return [
            f"QS-{start_anchor}",
            f"QE-{end_anchor}",
            f"BQS-{start_anchor}",
            f"BQE-{end_anchor}",
        ]
    if 360 <= days <= 370:
        return [f"{prefix}-{month}" for prefix in ("YS", "YE", "BYS", "BYE")]
    return []


def _from_spacing(index: pd.DatetimeIndex) -> str:
    """Classify the median spacing, then keep the finest grid holding every time."""
    steps = index[1:] - index[:-1]
    step = steps.median()
    # Cheap bound first: a grid far larger than the data is not "a few gaps", and
    # materialising it for minute aliases over years would be slow.
    if (index[-1] - index[0]) / step + 1 > 2 * len(index) / MIN_COVERAGE:
        raise ForecastError(
            f"observation times are too sparse for any regular spacing (median step {step})"
        )
    best: tuple[float, str] | None = None
    for alias in _candidates(index, step):
        grid = pd.date_range(start=index[0], end=index[-1], freq=alias)
        if len(grid) == 0 or not index.isin(grid).all():
            continue
        coverage = len(index) / len(grid)
        if best is None or coverage > best[0]:
            best = (coverage, alias)
    if best is None:
        raise ForecastError(
            f"observation times have no regular spacing (median step {step}); "
            "expected minutes, hours, days, business days, weeks, months, "
            "quarters or years"
        )
    coverage, alias = best
    if coverage < MIN_COVERAGE:
        raise ForecastError(
            f"observation times follow {alias!r} but only {coverage:.0%} of the "
            f"{alias!r} grid is observed; at least {MIN_COVERAGE:.0%} is needed"
        )
    logger.debug("inferred %s from spacing (coverage %.2f)", alias, coverage)
    return alias
