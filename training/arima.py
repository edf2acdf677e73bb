"""ARIMA point and interval forecasts, with the order chosen by AIC over a small grid.

Design choices, each for a reason:

* Every candidate differences once (d = 1). Asset prices are integrated, and AIC is
  only comparable between models whose likelihoods cover the same differenced data,
  so mixing d = 0 and d = 1 candidates would compare apples with pears.
* Strictly positive series (prices, NAVs) are modelled in logs. Shocks to prices are
  multiplicative, so log intervals widen in proportion to the level, and the
  back-transformed bounds can never go negative.
* The point forecast in that case is ``exp(mu)``, the *median* of the log-normal
  forecast distribution, not its mean ``exp(mu + s^2/2)``. The median always lies
  inside the back-transformed intervals (which are quantiles too), a random walk's
  forecast stays at the last price instead of creeping upwards with the forecast
  variance, and it does not explode at long horizons when the variance is large.
* The series is shifted and scaled to unit step variance before fitting: the
  optimiser's starting values and tolerances assume unit-ish data, and ARIMA
  forecasts and intervals are equivariant under that affine map, so nothing is lost.
* The search is stepwise, to stay fast on one core: drift or not is decided once,
  on the random walk (0,1,0); (1,1,0) and (0,1,1) are always tried; (1,1,1) only
  when one of them beat the random walk, and (2,1,2) only when (1,1,1) beat
  everything before it. One seasonal AR(1) term at lag s is then tried on the best
  small order, for 2 <= s <= 12 and at least three seasons of data. Hourly (s = 24)
  seasonality is skipped: a lag-24 term on (1,1,1) took 0.3-1.7 s to fit at 400
  points, and intraday price levels rarely follow a daily cycle. Only the latest
  ``MAX_FIT_OBSERVATIONS`` points are fitted, which bounds the cost of long hourly
  histories; low-order ARIMA forecasts gain next to nothing from older data.

Measured fit_forecast times, 400 points, horizon 30, on a shared 2-core machine
under load (medians over 10 series, max in brackets): simulated prices (GBM) 32 ms
(55), with a seasonal period of 7 or 12 about 50 ms (93); ARMA-structured 124 ms
(214); a deterministic trend plus noise, the slow case for the optimiser, 141 ms
(426).
"""

from __future__ import annotations

import functools
import logging
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from statsmodels.tools.sm_exceptions import ModelWarning
from statsmodels.tsa.arima.model import ARIMA

from core.errors import ForecastError

try:
    import threadpoolctl
except ImportError:  # pragma: no cover - only a speed-up, see _single_threaded_blas
    threadpoolctl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

MODEL_VERSION = "arima-aic-v1"

#: Candidate (p, d, q) orders, in the order the stepwise search tries them.
RANDOM_WALK: tuple[int, int, int] = (0, 1, 0)
FIRST_STEP: tuple[tuple[int, int, int], ...] = ((1, 1, 0), (0, 1, 1))
MIXED_ORDER: tuple[int, int, int] = (1, 1, 1)
LARGE_ORDER: tuple[int, int, int] = (2, 1, 2)

#: Longest seasonal period worth a seasonal term; longer ones are too slow to fit.
MAX_SEASONAL_PERIOD = 12

#: Only the most recent observations are fitted; fit time grows linearly with length
#: and (1,1,1) already takes about half a second at 1000 points.
MAX_FIT_OBSERVATIONS = 500

#: Fewest finite observations fit_forecast accepts.
MIN_OBSERVATIONS = 3

#: Observations (after differencing) needed per estimated parameter; keeps short
#: series from being over-fitted by the larger orders.
_OBS_PER_PARAM = 3

#: Step standard deviation below which the series is treated as deterministic,
#: relative to its level; the optimiser cannot fit a variance of zero.
_DETERMINISTIC_TOL = 1e-10

# Standard normal quantiles for the fallback random walk (scipy-free, fixed).
_Z80 = 1.2815515655446004
_Z95 = 1.959963984540054


@dataclass(frozen=True, eq=False)
class ArimaForecast:
    """Forecast bands on the original scale, each an array of length ``horizon``.

    Attributes:
        mean: Point forecast; the median ``exp(mu)`` when ``log_scale`` is true.
        lower_80: Lower bound of the central 80% interval.
        upper_80: Upper bound of the central 80% interval.
        lower_95: Lower bound of the central 95% interval.
        upper_95: Upper bound of the central 95% interval.
        order: The chosen (p, d, q).
        seasonal_order: The chosen (P, D, Q, s), or None without seasonal terms.
        trend: ``"t"`` with a drift term, ``"n"`` without.
        log_scale: Whether the model was fitted on log values.
        aic: AIC of the chosen model on the transformed scale; None when no model
            was fitted (deterministic series or every fit failed).
    """

    mean: np.ndarray
    lower_80: np.ndarray
    upper_80: np.ndarray
    lower_95: np.ndarray
    upper_95: np.ndarray
    order: tuple[int, int, int]
    seasonal_order: tuple[int, int, int, int] | None
    trend: str
    log_scale: bool
    aic: float | None


@dataclass(frozen=True)
class _Spec:
    """One candidate model."""

    order: tuple[int, int, int]
    trend: str
    seasonal_order: tuple[int, int, int, int] | None = None

    @property
    def n_params(self) -> int:
        """Estimated parameters, the innovation variance included."""
        p, _, q = self.order
        seasonal = (
            0 if self.seasonal_order is None else self.seasonal_order[0] + self.seasonal_order[2]
        )
        return p + q + seasonal + (self.trend == "t") + 1


@dataclass(frozen=True, eq=False)
class _Fit:
    spec: _Spec
    aic: float
    result: Any


def fit_forecast(
    values: np.ndarray, horizon: int, *, seasonal_period: int | None = None
) -> ArimaForecast:
    """Fit ARIMA candidates, keep the lowest AIC, and forecast ``horizon`` steps.

    Args:
        values: Observations at a regular spacing, oldest first. NaN marks a missing
            observation (the state-space filter skips it); infinities are rejected.
        horizon: Number of steps to forecast, at least 1.
        seasonal_period: Season length in steps (e.g. 7 for daily data), or None.
            Used only when it is at most ``MAX_SEASONAL_PERIOD`` and the fitted
            window holds at least three full seasons.

    Returns:
        The forecast bands and the chosen model.

    Raises:
        ForecastError: Too few observations, infinite values or a bad horizon.
    """
    y = _validate(values, horizon)
    observed = ~np.isnan(y)
    log_scale = bool(np.all(y[observed] > 0))
    x = np.log(y) if log_scale else y
    anchor = float(x[observed][-1])
    steps = np.diff(x)
    steps = steps[~np.isnan(steps)]
    if steps.size == 0:
        raise ForecastError("no two consecutive observations to estimate a step from")
    scale = float(np.std(steps))

    if scale <= _DETERMINISTIC_TOL * max(1.0, abs(anchor)):
        # A constant series (or one moving by an exact constant step): there is no
        # noise to model, so continue the line and report zero-width intervals.
        drift = float(np.mean(steps))
        path = anchor + drift * np.arange(1, horizon + 1)
        trend = "n" if drift == 0 else "t"
        return _finish(path, path, path, path, path, log_scale, _Spec(RANDOM_WALK, trend), None)

    z = (x - anchor) / scale
    n_obs = int(observed.sum())
    with _single_threaded_blas():
        fits = _search(z, n_obs, seasonal_period)
        for fit in sorted(fits, key=lambda f: f.aic):
            bands = _forecast(fit.result, horizon)
            if bands is None:
                logger.debug("discarding %s: non-finite forecast", fit.spec)
                continue
            mu, lo80, hi80, lo95, hi95 = (anchor + scale * band for band in bands)
            logger.debug("chose %s with AIC %.2f", fit.spec, fit.aic)
            return _finish(mu, lo80, hi80, lo95, hi95, log_scale, fit.spec, fit.aic)

    # Every fit failed: fall back to a driftless random walk whose step variance is
    # the sample variance (1 on the scaled data), which is still a calibrated model
    # for most prices.
    logger.warning("every ARIMA fit failed; falling back to a random walk")
    spread = np.sqrt(np.arange(1, horizon + 1))
    mu = np.full(horizon, anchor)
    return _finish(
        mu,
        mu - _Z80 * scale * spread,
        mu + _Z80 * scale * spread,
        mu - _Z95 * scale * spread,
        mu + _Z95 * scale * spread,
        log_scale,
        _Spec(RANDOM_WALK, "n"),
        None,
    )


@functools.cache
def _blas_controller() -> Any:
    """The process's BLAS libraries, scanned once (a scan costs milliseconds)."""
    return None if threadpoolctl is None else threadpoolctl.ThreadpoolController()


def _single_threaded_blas() -> AbstractContextManager[Any]:
    """Limit BLAS to one thread while fitting.

    The Kalman filter multiplies tiny matrices through scipy's OpenBLAS, whose worker
    threads only spin and contend for cores: measured on a busy 2-core machine, a
    fit took ~10x longer with the default thread pool. The limit is process-wide
    while it lasts (BLAS has no per-thread setting), which at worst slows a
    concurrent large matrix product elsewhere in the process for that time.
    threadpoolctl is optional; without it the fit is merely slower.
    """
    controller = _blas_controller()
    if controller is None:
        return nullcontext()
    return controller.limit(limits=1, user_api="blas")


def _validate(values: np.ndarray, horizon: int) -> np.ndarray:
    """Return the fitting window of the values as a 1-D float array, or raise."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ForecastError(f"horizon must be a positive integer, got {horizon!r}")
    try:
        y = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise ForecastError(f"values are not numeric: {e}") from e
    if y.ndim != 1:
        raise ForecastError(f"values must be one-dimensional, got shape {y.shape}")
    if np.isinf(y).any():
        raise ForecastError("values contain infinities")
    y = y[-MAX_FIT_OBSERVATIONS:]
    n_obs = int((~np.isnan(y)).sum())
    if n_obs < MIN_OBSERVATIONS:
        raise ForecastError(
            f"need at least {MIN_OBSERVATIONS} observations in the last "
            f"{MAX_FIT_OBSERVATIONS} steps, got {n_obs}"
        )
    return y


def _search(z: np.ndarray, n_obs: int, seasonal_period: int | None) -> list[_Fit]:
    """Run the stepwise search and return every successful fit."""
    budget = (n_obs - 1) // _OBS_PER_PARAM
    fits: list[_Fit] = []

    def attempt(spec: _Spec) -> _Fit | None:
        if spec.n_params > budget:
            return None
        fit = _fit(z, spec)
        if fit is not None:
            fits.append(fit)
        return fit

    def best_order() -> tuple[int, int, int] | None:
        return min(fits, key=lambda f: f.aic).spec.order if fits else None

    # Drift or not is decided once, on the random walk, where it is cheapest to fit.
    walks = [f for f in (attempt(_Spec(RANDOM_WALK, t)) for t in ("n", "t")) if f is not None]
    trend = min(walks, key=lambda f: f.aic).spec.trend if walks else "n"
    for order in FIRST_STEP:
        attempt(_Spec(order, trend))
    # Stepwise: grow the model only while the last step paid for itself. Most prices
    # stop at the random walk, and the mixed models are the slow ones to fit (their
    # AR and MA roots nearly cancel on random-walk data, a ridge for the optimiser).
    if best_order() not in (None, RANDOM_WALK):
        attempt(_Spec(MIXED_ORDER, trend))
    if best_order() == MIXED_ORDER:
        attempt(_Spec(LARGE_ORDER, trend))

    period = seasonal_period
    if period is None or not 2 <= period <= MAX_SEASONAL_PERIOD or n_obs < 3 * period:
        return fits
    small = [f for f in fits if f.spec.order != LARGE_ORDER]
    if small:
        best = min(small, key=lambda f: f.aic).spec
        attempt(_Spec(best.order, best.trend, (1, 0, 0, period)))
    return fits


def _fit(z: np.ndarray, spec: _Spec) -> _Fit | None:
    """Fit one candidate quietly; None when statsmodels cannot fit it."""
    has_params = spec.n_params > 1
    try:
        with warnings.catch_warnings():
            # Non-converged or odd-start fits are still valid candidates (AIC judges
            # them); ConvergenceWarning, EstimationWarning and kin would only flood
            # the caller's logs. Scoped to this block, never process-wide.
            warnings.simplefilter("ignore", ModelWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"statsmodels\.")
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"statsmodels\.")
            model = ARIMA(
                z,
                order=spec.order,
                trend=spec.trend,
                seasonal_order=spec.seasonal_order or (0, 0, 0, 0),
                # Profiling the variance out speeds the optimiser up; a model without
                # any other parameter has nothing left to optimise over.
                concentrate_scale=has_params,
            )
            # The parameter covariance is not needed for forecast intervals and its
            # numerical Hessian costs as much as the fit itself.
            result = model.fit(cov_type="none")
    except (ValueError, np.linalg.LinAlgError, ArithmeticError) as e:
        logger.debug("fit %s failed: %s", spec, e)
        return None
    aic = float(result.aic)
    if not np.isfinite(aic):
        logger.debug("fit %s has non-finite AIC", spec)
        return None
    return _Fit(spec, aic, result)


def _forecast(result: Any, horizon: int) -> tuple[np.ndarray, ...] | None:
    """Mean and 80%/95% bounds on the fitted scale, or None if not finite."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"statsmodels\.")
        prediction = result.get_forecast(horizon)
        mu = np.asarray(prediction.predicted_mean, dtype=float)
        ci80 = np.asarray(prediction.conf_int(alpha=0.2), dtype=float)
        ci95 = np.asarray(prediction.conf_int(alpha=0.05), dtype=float)
    bands = (mu, ci80[:, 0], ci80[:, 1], ci95[:, 0], ci95[:, 1])
    if not all(np.isfinite(band).all() for band in bands):
        return None
    return bands


def _finish(
    mu: np.ndarray,
    lo80: np.ndarray,
    hi80: np.ndarray,
    lo95: np.ndarray,
    hi95: np.ndarray,
    log_scale: bool,
    spec: _Spec,
    aic: float | None,
) -> ArimaForecast:
    """Back-transform the bands and package them."""
    bands = [np.array(band, dtype=float) for band in (mu, lo80, hi80, lo95, hi95)]
    if log_scale:
        with np.errstate(over="ignore"):
            bands = [np.exp(band) for band in bands]
    if not all(np.isfinite(band).all() for band in bands):
        raise ForecastError("forecast overflowed; the horizon is too long for this series")
    mean, lower_80, upper_80, lower_95, upper_95 = bands
    return ArimaForecast(
        mean=mean,
        lower_80=lower_80,
        upper_80=upper_80,
        lower_95=lower_95,
        upper_95=upper_95,
        order=spec.order,
        seasonal_order=spec.seasonal_order,
        trend=spec.trend,
        log_scale=log_scale,
        aic=aic,
    )
