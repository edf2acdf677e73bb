"""The forecasters the ensemble combines, each behind one small interface.

A component maps a history (finite values, oldest first, in the series' own units)
and a horizon to a point-forecast path of that many steps. Components only give
points: the ensemble's intervals come from backtest residuals (``training.ensemble``),
which is what makes them cover what they claim whichever components are mixed.

* ``naive``: the last value. The benchmark every scorecard compares against, and
  kept in the mix because on a pure random walk nothing beats it.
* ``arima``: the AIC-chosen ARIMA of :mod:`training.arima` (logs for positive series).
* ``ets``: Holt's linear trend with a damped slope on the same scale. It follows
  smooth trends (NAV accrual, macro aggregates) without ARIMA's tendency to
  extrapolate a drift for ever.
* ``lstm``: the promoted cross-asset LSTM (:mod:`training.lstm`). It reads returns
  standardised per series, so it applies to any strictly positive series.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training import arima

log = logging.getLogger(__name__)

#: Fewest points the damped-trend smoother is fitted on; below it, it repeats the last value.
_ETS_MIN_POINTS = 10


@dataclass(frozen=True)
class Component:
    """One forecaster: ``predict(history, horizon)`` returns the point path."""

    name: str
    version: str
    predict: Callable[[np.ndarray, int], np.ndarray]
    #: Whether it needs a strictly positive series (it works on log returns).
    positive_only: bool = False
    #: Whether it takes missing steps (NaN) in the history; the others get them filled.
    handles_gaps: bool = False

    def applies_to(self, history: np.ndarray) -> bool:
        return not self.positive_only or bool(np.all(history[np.isfinite(history)] > 0))


# Predictors are module-level classes, not closures, so components pickle into the
# backtest's worker processes.


class _LastValue:
    def __call__(self, y: np.ndarray, h: int) -> np.ndarray:
        return np.full(h, float(y[-1]))


def naive() -> Component:
    return Component("naive", "naive", _LastValue())


#: Latest points the ARIMA component fits. Its fit time grows with length (0.5 s for a
#: trending NAV at 300 daily points) and a low-order ARIMA gains little from older data.
ARIMA_WINDOW = 150


@dataclass(frozen=True)
class _Arima:
    seasonal_period: int | None

    def __call__(self, y: np.ndarray, h: int) -> np.ndarray:
        return arima.fit_forecast(y[-ARIMA_WINDOW:], h, seasonal_period=self.seasonal_period).mean


def arima_component(seasonal_period: int | None = None) -> Component:
    return Component("arima", arima.MODEL_VERSION, _Arima(seasonal_period), handles_gaps=True)


def ets_component() -> Component:
    return Component("ets", "ets-damped-v1", _damped_trend)


def _damped_trend(y: np.ndarray, h: int) -> np.ndarray:
    if len(y) < _ETS_MIN_POINTS:
        return np.full(h, float(y[-1]))
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    log_scale = bool(np.all(y > 0))
    x = np.log(y) if log_scale else y
    # The fit is on a unit-scale copy: the optimiser's tolerances assume it, and the
    # forecasts are equivariant under the affine map.
    shift, scale = float(x[-1]), float(np.std(np.diff(x))) or 1.0
    try:
        # A flat series has zero error, and statsmodels takes its log for the AIC.
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")
            fit = ExponentialSmoothing((x - shift) / scale, trend="add", damped_trend=True,
                                       initialization_method="estimated").fit()
        path = np.asarray(fit.forecast(h), dtype=float) * scale + shift
    except (ValueError, np.linalg.LinAlgError) as e:
        log.debug("damped trend failed (%s); repeating the last value", e)
        return np.full(h, float(y[-1]))
    if not np.all(np.isfinite(path)):
        return np.full(h, float(y[-1]))
    return np.exp(path) if log_scale else path


@dataclass(frozen=True)
class _Lstm:
    model: object
    lookback: int
    #: Features one row per point of the series the component is bound to, or None.
    exogenous: np.ndarray | None = None

    def __call__(self, y: np.ndarray, h: int) -> np.ndarray:
        from training import lstm

        if len(y) < self.lookback + 2:
            return np.full(h, float(y[-1]))
        # Histories always start at the series' first point, so its first len(y) rows
        # of features are the ones known along it.
        feats = None if self.exogenous is None else self.exogenous[: len(y)]
        return lstm.forecast(self.model, y, h, lookback=self.lookback, exogenous=feats)


def lstm_component(model, *, lookback: int, version: str,
                   exogenous: np.ndarray | None = None) -> Component:
    """The cross-asset LSTM as a component; its scaler is fitted on each history.

    A model trained with features needs ``exogenous``: one row per point of the
    series it will forecast (:mod:`training.features`).
    """
    return Component("lstm", version, _Lstm(model, lookback, exogenous), positive_only=True)


def default_components(seasonal_period: int | None = None, *,
                       lstm: Component | None = None) -> list[Component]:
    """naive, ARIMA and damped trend, plus the LSTM when one is given."""
    parts = [naive(), arima_component(seasonal_period), ets_component()]
    return [*parts, lstm] if lstm is not None else parts
