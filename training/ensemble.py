"""The forecasting ensemble: components weighted by rolling-origin backtest errors,
with prediction intervals calibrated on the same backtest's residuals (split conformal).

How a forecast is made, and why:

1. **Rolling origins.** Each component forecasts from up to ``max_origins`` past
   points of the series (origins), using only the data up to each. These are honest
   out-of-sample errors, the only kind that says how a model will do next.
2. **Normalised errors.** An error at origin ``o`` and horizon ``h`` is divided by
   ``s_o * sqrt(h)``, where ``s_o`` is a robust (MAD) scale of one-step changes just
   before ``o``. That is the spread of a random walk, so the scores of calm and
   turbulent periods, and of short and long horizons, become comparable and can be
   pooled; a horizon borrows the scores of horizons within a factor 1.5 of it.
3. **Weights** per horizon are inverse mean squared normalised errors: a component
   twice as accurate gets four times the weight, and one that cannot help fades out.
4. **Intervals.** The ensemble's own normalised absolute errors are the conformity
   scores; the 80 % and 95 % bands are ``± q * s * sqrt(h)`` with ``q`` their
   finite-sample conformal quantile (rank ``ceil((n + 1) * level)``). Under
   exchangeable scores that covers at least the level; a series too short to have
   scores falls back to the random-walk normal band.
5. Everything happens on log values for strictly positive series (multiplicative
   shocks, bands that never go negative) and on raw values otherwise.

Only residuals whose actual value was known at the time are used: calibrating at
origin ``o`` reads errors of origins ``o'`` with ``o' + h <= o``. That is the same
rule live forecasting follows, which is why backtest coverage predicts live coverage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from training.components import Component

ENSEMBLE_VERSION = "ens-v1"

#: Interval levels, and the band names they are stored under.
LEVELS: tuple[float, ...] = (0.8, 0.95)

#: Horizons pool scores with those within this factor of them.
POOL_FACTOR = 1.5

#: The 95/80 % tail ratio of a horizon is read from horizons within this factor of it.
TAIL_FACTOR = 3

#: Fewest scores a tail ratio is read from.
MIN_TAIL_SCORES = 10

#: One-step changes the scale at an origin is measured on.
SCALE_WINDOW = 60

#: Default number of rolling origins; more is steadier and slower (one fit each).
MAX_ORIGINS = 24

#: Fewest points before the first origin: enough for ARIMA's order search.
MIN_TRAIN = 30


def model_version(components: Sequence[Component]) -> str:
    return f"{ENSEMBLE_VERSION}({'+'.join(c.version for c in components)})"


def transform(y: np.ndarray, log_scale: bool) -> np.ndarray:
    return np.log(y) if log_scale else np.asarray(y, dtype=float)


def inverse(z: np.ndarray, log_scale: bool) -> np.ndarray:
    return np.exp(z) if log_scale else z


def fill_gaps(y: np.ndarray) -> np.ndarray:
    """Missing steps filled by linear interpolation (ends held flat)."""
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y)
    if ok.all():
        return y
    idx = np.arange(len(y))
    return np.interp(idx, idx[ok], y[ok])


def step_scale(z: np.ndarray) -> float:
    """A robust spread of the latest one-step changes of ``z`` (never zero)."""
    d = np.diff(z[-(SCALE_WINDOW + 1):])
    d = d[np.isfinite(d)]
    floor = 1e-9 * max(1.0, float(np.nanmax(np.abs(z[-(SCALE_WINDOW + 1):]))))
    if len(d) == 0:
        return floor
    mad = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    if mad <= floor:
        mad = float(np.std(d))
    return max(mad, floor)


@dataclass(frozen=True)
class Origin:
    """The components' forecasts from one point of the series."""

    index: int  #: position of the last observation the components saw
    scale: float  #: step scale at the origin (transformed units)
    paths: Mapping[str, np.ndarray]  #: transformed point path per component


def origin_grid(n: int, *, max_origins: int = MAX_ORIGINS,
                min_train: int = MIN_TRAIN) -> list[int]:
    """Evenly spaced origins from the end of the first training window to ``n - 2``.

    The last origin leaves one actual value after it; earlier ones leave more, so the
    grid covers every horizon up to ``horizon`` when the series is long enough.
    """
    first, last = min(max(min_train, 8), n - 1) - 1, n - 2
    if last < first or max_origins < 1:
        return []
    count = min(max_origins, last - first + 1)
    return sorted({int(round(x)) for x in np.linspace(first, last, count)})


def run_origins(y: np.ndarray, components: Sequence[Component], origins: Sequence[int],
                horizon: int, *, log_scale: bool) -> list[Origin]:
    """Each component's forecast from each origin (the expensive part: one fit each)."""
    filled = fill_gaps(y)
    out = []
    for o in origins:
        out.append(forecast_origin(y, filled, components, o, horizon, log_scale=log_scale))
    return out


def forecast_origin(y: np.ndarray, filled: np.ndarray, components: Sequence[Component],
                    o: int, horizon: int, *, log_scale: bool) -> Origin:
    history, history_filled = y[: o + 1], filled[: o + 1]
    paths = {}
    for c in components:
        if not c.applies_to(history_filled):
            continue
        path = c.predict(history if c.handles_gaps else history_filled, horizon)
        path = np.asarray(path, dtype=float)
        if path.shape == (horizon,) and np.all(np.isfinite(path)) and (
                not log_scale or np.all(path > 0)):
            paths[c.name] = transform(path, log_scale)
    return Origin(o, step_scale(transform(history_filled, log_scale)), paths)


@dataclass(frozen=True)
class HorizonCalibration:
    """Weights and conformal quantiles (in units of ``scale * sqrt(h)``) for one horizon."""

    weights: Mapping[str, float]
    quantiles: Mapping[float, float]
    n_scores: int


@dataclass(frozen=True)
class Calibration:
    horizons: list[HorizonCalibration] = field(default_factory=list)

    def at(self, h: int) -> HorizonCalibration | None:
        if not self.horizons:
            return None
        return self.horizons[min(h, len(self.horizons)) - 1]

    def to_json(self) -> list[dict]:
        return [{"weights": dict(c.weights), "quantiles": {str(k): v for k, v in c.quantiles.items()},
                 "n_scores": c.n_scores} for c in self.horizons]

    @classmethod
    def from_json(cls, data: Sequence[Mapping]) -> Calibration:
        return cls([HorizonCalibration(dict(d["weights"]),
                                       {float(k): float(v) for k, v in d["quantiles"].items()},
                                       int(d["n_scores"])) for d in data])


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) * level)``-th smallest score.

    With too few scores for that rank, the larger of the largest score and the normal
    quantile at their root mean square, rather than an infinite band.
    """
    n = len(scores)
    if n == 0:
        return float(norm.ppf(0.5 + level / 2))
    k = math.ceil((n + 1) * level)
    ordered = np.sort(scores)
    if k <= n:
        return float(ordered[k - 1])
    rms = float(np.sqrt(np.mean(ordered**2)))
    return max(float(ordered[-1]), float(norm.ppf(0.5 + level / 2)) * rms)


def calibrate(origins: Sequence[Origin], z: np.ndarray, *, upto: int, horizon: int,
              names: Sequence[str]) -> Calibration:
    """Weights and quantiles for horizons 1..``horizon`` from errors known at ``upto``.

    Args:
        origins: Component forecasts from :func:`run_origins`.
        z: The transformed series (NaN where a step is missing).
        upto: The last position whose value counts as known.
        horizon: Horizons to calibrate.
        names: The components to weigh.
    """
    # errors[h]: one {component: normalised error} per origin whose actual is known.
    errors: dict[int, list[dict[str, float]]] = {h: [] for h in range(1, horizon + 1)}
    for org in origins:
        for h in range(1, horizon + 1):
            t = org.index + h
            if t > upto or t >= len(z) or not np.isfinite(z[t]):
                continue
            if not all(n in org.paths for n in names):
                continue
            norm_ = org.scale * math.sqrt(h)
            errors[h].append({n: (z[t] - org.paths[n][h - 1]) / norm_ for n in names})
    out = []
    for h in range(1, horizon + 1):
        pool = [e for g in range(max(1, math.floor(h / POOL_FACTOR)),
                                 min(horizon, math.ceil(h * POOL_FACTOR)) + 1)
                for e in errors[g]]
        out.append(_calibrate_horizon(pool, names))
    return Calibration(_widen_tails(out, errors, names))


def _widen_tails(horizons: list[HorizonCalibration], errors: Mapping[int, list],
                 names: Sequence[str]) -> list[HorizonCalibration]:
    """Keep each horizon's outer bands at least as wide as the tail shape near it.

    A long horizon's pool holds few independent origins (its scores from one origin
    are strongly correlated), too few to place a 95 % quantile. The ratio of the 95 %
    to the 80 % quantile is a property of the error distribution's shape, which the
    scores of horizons within a factor :data:`TAIL_FACTOR` of it estimate far better;
    the outer band is widened to the horizon's own 80 % quantile times that ratio when
    that is wider. The shape changes with the horizon: one-step errors carry the jumps
    (heavy tails) while long-horizon errors are sums of many shocks, and for a
    mean-reverting series (a premium to NAV) they stop growing, so a ratio taken over
    all horizons over-widened the long ones (95 % bands covering 0.99).
    """
    out = []
    for h, cal in enumerate(horizons, 1):
        near = [e for g in range(max(1, math.floor(h / TAIL_FACTOR)),
                                 min(len(horizons), math.ceil(h * TAIL_FACTOR)) + 1)
                for e in errors[g]]
        inner = LEVELS[0]
        if len(near) < MIN_TAIL_SCORES:
            out.append(cal)
            continue
        shape = _calibrate_horizon(near, names).quantiles
        if shape[inner] <= 0:
            out.append(cal)
            continue
        q = dict(cal.quantiles)
        for lv in LEVELS[1:]:
            q[lv] = max(q[lv], q[inner] * shape[lv] / shape[inner])
        out.append(HorizonCalibration(cal.weights, q, cal.n_scores))
    return out


def _calibrate_horizon(pool: list[dict[str, float]], names: Sequence[str]) -> HorizonCalibration:
    if not pool:
        w = 1.0 / len(names)
        return HorizonCalibration({n: w for n in names},
                                  {lv: conformal_quantile(np.empty(0), lv) for lv in LEVELS}, 0)
    e = np.array([[p[n] for n in names] for p in pool])
    mse = np.maximum(np.mean(e**2, axis=0), 1e-12)
    inv = 1.0 / mse
    w = inv / inv.sum()
    scores = np.abs(e @ w)
    return HorizonCalibration({n: float(x) for n, x in zip(names, w)},
                              {lv: conformal_quantile(scores, lv) for lv in LEVELS}, len(scores))


@dataclass(frozen=True)
class Band:
    """An ensemble forecast path with its bands, in the series' own units."""

    mean: np.ndarray
    lower: Mapping[float, np.ndarray]
    upper: Mapping[float, np.ndarray]
    weights: Mapping[str, float]  #: the weights at the first horizon, for display


def combine(origin: Origin, calibration: Calibration, horizon: int, *,
            log_scale: bool) -> Band:
    """The weighted path from one origin and its conformal bands."""
    mean = np.empty(horizon)
    lower = {lv: np.empty(horizon) for lv in LEVELS}
    upper = {lv: np.empty(horizon) for lv in LEVELS}
    first_weights: dict[str, float] = {}
    for h in range(1, horizon + 1):
        cal = calibration.at(h)
        weights = _usable_weights(cal.weights if cal else {}, origin.paths)
        if h == 1:
            first_weights = weights
        centre = sum(w * origin.paths[n][h - 1] for n, w in weights.items())
        mean[h - 1] = centre
        spread = origin.scale * math.sqrt(h)
        for lv in LEVELS:
            q = cal.quantiles[lv] if cal else conformal_quantile(np.empty(0), lv)
            lower[lv][h - 1] = centre - q * spread
            upper[lv][h - 1] = centre + q * spread
    return Band(inverse(mean, log_scale),
                {lv: inverse(a, log_scale) for lv, a in lower.items()},
                {lv: inverse(a, log_scale) for lv, a in upper.items()}, first_weights)


def _usable_weights(weights: Mapping[str, float], paths: Mapping[str, np.ndarray],
                    ) -> dict[str, float]:
    """The calibrated weights of the components that forecast here, renormalised."""
    present = {n: w for n, w in weights.items() if n in paths and w > 0}
    if not present:
        return {n: 1.0 / len(paths) for n in paths}
    total = sum(present.values())
    return {n: w / total for n, w in present.items()}


@dataclass(frozen=True)
class EnsembleForecast:
    band: Band
    calibration: Calibration
    model_version: str
    log_scale: bool


def fit_forecast(y: np.ndarray, horizon: int, components: Sequence[Component], *,
                 max_origins: int = MAX_ORIGINS, min_train: int = MIN_TRAIN,
                 calibration: Calibration | None = None) -> EnsembleForecast:
    """Forecast ``horizon`` steps past the end of ``y``.

    Args:
        y: The series, oldest first; NaN marks a missing step.
        horizon: Steps ahead.
        components: What to combine (``training.components.default_components``).
        max_origins: Rolling origins for the calibration.
        min_train: Points before the first origin.
        calibration: A stored calibration to use instead of backtesting now (the
            hourly job reuses the one ``rwa backtest`` computed).
    """
    y = np.asarray(y, dtype=float)
    finite = y[np.isfinite(y)]
    log_scale = bool(len(finite) and np.all(finite > 0))
    z = transform(np.where(np.isfinite(y), y, 1.0), log_scale)
    z[~np.isfinite(y)] = np.nan
    filled = fill_gaps(y)
    last = forecast_origin(y, filled, components, len(y) - 1, horizon, log_scale=log_scale)
    used = [c for c in components if c.name in last.paths]
    if calibration is None:
        grid = origin_grid(len(y), max_origins=max_origins, min_train=min_train)
        # Horizons past what the history can check borrow the longest checked one's
        # quantiles (Calibration.at), scaled by sqrt(h) like a random walk.
        checked = min(horizon, len(y) - 1 - grid[0]) if grid else 1
        past = run_origins(y, used, grid, checked, log_scale=log_scale)
        calibration = calibrate(past, z, upto=len(y) - 1, horizon=checked,
                                names=[c.name for c in used])
    band = combine(last, calibration, horizon, log_scale=log_scale)
    return EnsembleForecast(band, calibration, model_version(used), log_scale)
