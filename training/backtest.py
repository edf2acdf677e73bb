"""Rolling-origin backtests of the ensemble: the accuracy record served beside forecasts.

For each series, components forecast from a grid of origins (:mod:`training.ensemble`).
The later origins are evaluated: at each, the ensemble is calibrated on the errors
known by then, exactly as a live forecast would be, and scored against what happened.

Scores per model and horizon:

* **MASE**: absolute error over the mean absolute one-step change of the history up
  to the origin (Hyndman & Koehler, 2006). Below 1 beats a one-step naive forecast in
  sample; the naive forecast's own figure at the same horizon is the bar to clear.
* **sMAPE** in percent: ``200 |y - f| / (|y| + |f|)``.
* **Coverage** of the ensemble's 80 % and 95 % bands: the share of actuals inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training import ensemble
from training.components import Component

ENSEMBLE = "ensemble"

#: Origins per series in a backtest; the later ``1 - CALIBRATION_SHARE`` are scored.
BACKTEST_ORIGINS = 40
CALIBRATION_SHARE = 0.5

COLUMNS = ["origin", "horizon", "model", "scaled_error", "smape", "in_80", "in_95"]


@dataclass(frozen=True)
class Score:
    """The scorecard of one model at one horizon."""

    model: str
    horizon: int
    mase: float
    smape: float
    coverage_80: float | None
    coverage_95: float | None
    n: int


@dataclass(frozen=True)
class SeriesBacktest:
    """A series' scored points and the calibration its whole backtest supports."""

    frame: pd.DataFrame  #: one row per scored (origin, horizon, model)
    calibration: ensemble.Calibration  #: for forecasting from the series' end
    model_version: str


def backtest_series(y: np.ndarray, components: Sequence[Component], *,
                    horizons: Sequence[int], max_origins: int = BACKTEST_ORIGINS,
                    min_train: int = ensemble.MIN_TRAIN) -> SeriesBacktest:
    """Score the ensemble, its components and the naive forecast on one series.

    Each frame row is one (origin, horizon, model): the error scaled for MASE, the
    sMAPE term and, for the ensemble, whether the 80 % and 95 % bands held the actual.
    The frame is empty when the series is too short to score anything.
    """
    y = np.asarray(y, dtype=float)
    finite = y[np.isfinite(y)]
    log_scale = bool(len(finite) and np.all(finite > 0))
    z = ensemble.transform(np.where(np.isfinite(y), y, 1.0), log_scale)
    z[~np.isfinite(y)] = np.nan
    filled = ensemble.fill_gaps(y)
    horizon = max(horizons)
    grid = ensemble.origin_grid(len(y), max_origins=max_origins, min_train=min_train)
    origins = ensemble.run_origins(y, components, grid, horizon, log_scale=log_scale)
    names = [c.name for c in components if all(c.name in o.paths for o in origins)]
    used = [c for c in components if c.name in names]
    scored = origins[int(len(origins) * CALIBRATION_SHARE):]
    rows = []
    for org in scored:
        cal = ensemble.calibrate(origins, z, upto=org.index, horizon=horizon, names=names)
        band = ensemble.combine(org, cal, horizon, log_scale=log_scale)
        scale = float(np.mean(np.abs(np.diff(filled[: org.index + 1])))) or 1e-12
        for h in horizons:
            t = org.index + h
            if t >= len(y) or not np.isfinite(y[t]):
                continue
            actual = y[t]
            points = {ENSEMBLE: band.mean[h - 1]} | {
                n: float(ensemble.inverse(org.paths[n][h - 1], log_scale)) for n in names}
            for model, f in points.items():
                row = {"origin": org.index, "horizon": h, "model": model,
                       "scaled_error": abs(actual - f) / scale,
                       "smape": 200.0 * abs(actual - f) / max(abs(actual) + abs(f), 1e-12)}
                if model == ENSEMBLE:
                    row["in_80"] = float(band.lower[0.8][h - 1] <= actual <= band.upper[0.8][h - 1])
                    row["in_95"] = float(band.lower[0.95][h - 1] <= actual <= band.upper[0.95][h - 1])
                rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    final = ensemble.calibrate(origins, z, upto=len(y) - 1, horizon=horizon, names=names)
    return SeriesBacktest(frame, final, ensemble.model_version(used))


def scorecard(frame: pd.DataFrame) -> list[Score]:
    """Mean scores per model and horizon over every scored point in ``frame``."""
    out = []
    if frame.empty:
        return out
    for (model, h), g in frame.groupby(["model", "horizon"], sort=True):
        cov80 = g["in_80"].mean() if model == ENSEMBLE else None
        cov95 = g["in_95"].mean() if model == ENSEMBLE else None
        out.append(Score(str(model), int(h), float(g["scaled_error"].mean()),
                         float(g["smape"].mean()),
                         None if cov80 is None else float(cov80),
                         None if cov95 is None else float(cov95), len(g)))
    return out


def pooled(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    parts = [f for f in frames if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
