"""ARIMA forecaster: calibrated, nested, positive intervals, and no crash on odd input."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from core.errors import ForecastError
from training import arima
from training.arima import MODEL_VERSION, ArimaForecast, fit_forecast


def _gbm(
    n: int, seed: int, start: float = 100.0, drift: float = 0.0003, vol: float = 0.02
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(drift, vol, n)))


def _assert_nested(fc: ArimaForecast, horizon: int) -> None:
    bands = (fc.lower_95, fc.lower_80, fc.mean, fc.upper_80, fc.upper_95)
    for band in bands:
        assert band.shape == (horizon,)
        assert np.isfinite(band).all()
    for lower, upper in itertools.pairwise(bands):
        assert (lower <= upper).all()


def test_model_version() -> None:
    assert MODEL_VERSION == "arima-aic-v1"


def test_next_step_coverage_on_gbm() -> None:
    # 100 rolling origins, each a fresh fit on the previous 100 prices, scored on the
    # next (held-out) price. With a correct model, coverage is Binomial(100, 0.8).
    window, origins = 100, 100
    prices = _gbm(window + origins, seed=7)
    hits_80 = hits_95 = 0
    for start in range(origins):
        fc = fit_forecast(prices[start : start + window], 1)
        actual = prices[start + window]
        hits_80 += bool(fc.lower_80[0] <= actual <= fc.upper_80[0])
        hits_95 += bool(fc.lower_95[0] <= actual <= fc.upper_95[0])
    assert 0.65 <= hits_80 / origins <= 0.92
    assert 0.85 <= hits_95 / origins <= 1.0


@pytest.mark.parametrize(
    "values",
    [
        _gbm(300, seed=1),
        np.cumsum(np.random.default_rng(2).normal(0, 1, 300)) - 40.0,  # crosses zero
        50 + 0.3 * np.arange(300) + np.random.default_rng(3).normal(0, 1, 300),
    ],
    ids=["gbm", "signed-walk", "trend-plus-noise"],
)
def test_intervals_are_nested_and_widen(values: np.ndarray) -> None:
    fc = fit_forecast(values, 30)
    _assert_nested(fc, 30)
    width = fc.upper_95 - fc.lower_95
    assert width[-1] > width[0] > 0


def test_positive_series_stays_positive() -> None:
    # Volatile and close to zero: additive intervals would go negative here.
    prices = _gbm(250, seed=4, start=0.05, drift=-0.002, vol=0.08)
    fc = fit_forecast(prices, 200)
    assert fc.log_scale
    assert (fc.lower_95 > 0).all()
    _assert_nested(fc, 200)


def test_non_positive_series_is_modelled_on_its_own_scale() -> None:
    values = np.cumsum(np.random.default_rng(5).normal(0, 1, 200)) - 100.0
    fc = fit_forecast(values, 5)
    assert not fc.log_scale
    assert (fc.lower_95 < 0).all()


@pytest.mark.parametrize("level", [1.0, 0.0, -3.5])
def test_constant_series(level: float) -> None:
    fc = fit_forecast(np.full(60, level), 10)
    for band in (fc.mean, fc.lower_80, fc.upper_80, fc.lower_95, fc.upper_95):
        np.testing.assert_allclose(band, level)
    assert fc.order == (0, 1, 0)
    assert fc.aic is None


@pytest.mark.parametrize("slope", [0.8, -0.8])
def test_trend_direction_continues(slope: float) -> None:
    rng = np.random.default_rng(6)
    values = 400 + slope * np.arange(250) + rng.normal(0, 1.0, 250)
    fc = fit_forecast(values, 20)
    assert fc.trend == "t"
    step = (fc.mean[-1] - values[-1]) / 20
    assert np.sign(step) == np.sign(slope)
    # Loose on size: the drift is fitted in logs, so a linear decline continues at
    # its average relative rate, which is a smaller absolute step near the end.
    assert 0.4 * abs(slope) < abs(step) < 1.6 * abs(slope)


def test_missing_observations_are_gaps() -> None:
    prices = _gbm(200, seed=8)
    prices[[50, 51, 120]] = np.nan
    fc = fit_forecast(prices, 5)
    _assert_nested(fc, 5)


def test_seasonal_period_is_accepted() -> None:
    rng = np.random.default_rng(9)
    n = 12 * 15
    season = 5 * np.sin(2 * np.pi * np.arange(n) / 12)
    values = 200 + np.cumsum(rng.normal(0, 0.5, n)) + season
    fc = fit_forecast(values, 12, seasonal_period=12)
    _assert_nested(fc, 12)
    assert fc.seasonal_order in (None, (1, 0, 0, 12))


def test_short_series_uses_small_models() -> None:
    fc = fit_forecast(_gbm(8, seed=10), 3)
    assert fc.order == (0, 1, 0)
    _assert_nested(fc, 3)


def test_convergence_warnings_stay_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    original_fit = arima.ARIMA.fit

    def noisy_fit(self: arima.ARIMA, *args: Any, **kwargs: Any) -> Any:
        warnings.warn("optimization failed to converge", ConvergenceWarning, stacklevel=2)
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(arima.ARIMA, "fit", noisy_fit)
    filters_before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fc = fit_forecast(_gbm(120, seed=11), 5)
    _assert_nested(fc, 5)
    # Silenced locally, never by a process-wide filter left behind.
    assert warnings.filters == filters_before
    with pytest.warns(ConvergenceWarning):
        noisy_fit(arima.ARIMA(np.arange(10.0), order=(0, 1, 0)))


@pytest.mark.parametrize(
    ("values", "horizon", "match"),
    [
        (np.array([1.0, 2.0]), 1, "at least 3"),
        (np.array([1.0, np.nan, np.nan, 2.0, np.nan]), 1, "at least 3"),
        (np.array([1.0, 2.0, np.inf, 3.0]), 1, "infinities"),
        (np.ones((4, 2)), 1, "one-dimensional"),
        (np.array([1.0, 2.0, 3.0, 4.0]), 0, "horizon"),
        (np.array(["a", "b", "c"]), 1, "not numeric"),
    ],
)
def test_bad_input(values: np.ndarray, horizon: int, match: str) -> None:
    with pytest.raises(ForecastError, match=match):
        fit_forecast(values, horizon)
