"""``rwa backtest``: rolling-origin backtests of the forecasting ensemble on gold, on the
simulator's paths or on statsmodels' US macro series, with the scorecard stored for
the API and the calibrations stored for the hourly job.

Series are independent, so they are backtested in a process pool (``jobs``); each
process fits its own models and nothing is shared but the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from training import backtest
from training.components import default_components
from training.predictions import PromotedLstm

log = logging.getLogger(__name__)

SOURCES = ("gold", "simulated", "macro")

#: Default horizons per source: days for assets, quarters for the macro data.
DEFAULT_HORIZONS = {"gold": (1, 7, 30), "simulated": (1, 7, 30), "macro": (1, 4, 8)}

#: The statsmodels macro series backtested (quarterly, 1959-2009); levels, rates and
#: inflation, so both log-scale and raw-scale series are covered.
MACRO_SERIES = ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1",
                "tbilrate", "unemp", "pop", "infl", "realint")


@dataclass(frozen=True)
class Series:
    series_id: str
    target: str
    values: np.ndarray
    #: Features one row per value (gold price series), for an LSTM trained with them.
    exogenous: np.ndarray | None = None


@dataclass(frozen=True)
class Outcome:
    series: Series
    result: backtest.SeriesBacktest


def macro_series(names: Sequence[str] = MACRO_SERIES) -> list[Series]:
    import statsmodels.api as sm

    data = sm.datasets.macrodata.load_pandas().data
    return [Series(f"macro:{n}", "price", data[n].to_numpy(dtype=float)) for n in names]


def simulated_series(paths: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Series]:
    """Price, and NAV and premium where a NAV is given, from the simulator's daily paths
    (``ingestion.simulated.SimulatedMarket.daily_series``; training does not import
    ingestion, so the caller simulates)."""
    out = []
    for asset_id, (close, nav) in sorted(paths.items()):
        out.append(Series(f"sim:{asset_id}", "price", close))
        if len(nav):
            out.append(Series(f"sim:{asset_id}", "nav", nav))
            out.append(Series(f"sim:{asset_id}", "premium", close / nav - 1.0))
    return out


def _run_one(series: Series, horizons: Sequence[int], max_origins: int,
             lstm: PromotedLstm | None) -> Outcome:
    components = default_components(
        lstm=lstm.component(series.exogenous) if lstm is not None else None)
    return Outcome(series, backtest.backtest_series(series.values, components,
                                                    horizons=horizons, max_origins=max_origins))


def run(series: Sequence[Series], *, horizons: Sequence[int], max_origins: int, jobs: int,
        lstm: PromotedLstm | None = None,
        progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Backtest each series, ``jobs`` at a time; outcomes in input order."""
    todo = [s for s in series if len(s.values) > max(horizons) + 8]
    for s in series:
        if s not in todo:
            log.info("%s/%s: %d points is too short to backtest", s.series_id, s.target,
                     len(s.values))
    if jobs <= 1:
        out = []
        for s in todo:
            out.append(_run_one(s, horizons, max_origins, lstm))
            if progress:
                progress(out[-1])
        return out
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_one, s, tuple(horizons), max_origins, lstm) for s in todo]
        out = []
        for f in futures:
            out.append(f.result())
            if progress:
                progress(out[-1])
        return out


def summary(outcomes: Iterable[Outcome]) -> dict[str, list[backtest.Score]]:
    """Scores pooled over every series, per target."""
    by_target: dict[str, list] = {}
    for o in outcomes:
        by_target.setdefault(o.series.target, []).append(o.result.frame)
    return {t: backtest.scorecard(backtest.pooled(frames)) for t, frames in sorted(by_target.items())}


async def gold_series(conn, assets: Sequence, *, days: int) -> list[Series]:
    """Daily price (and NAV and premium for NAV-pinned assets) of each asset from gold."""
    from training.predictions import features_on, price_features, target_series

    features = await price_features(conn, [a.asset_id for a in assets], days=days)
    out = []
    for a in assets:
        for target, (on, y) in (await target_series(conn, a.asset_id, nav_pinned=a.nav_pinned,
                                                    days=days)).items():
            exogenous = features_on(features.get(a.asset_id), on) if target == "price" else None
            out.append(Series(a.asset_id, target, y, exogenous))
    return out


async def store(conn, outcomes: Sequence[Outcome], *, source: str, horizons: Sequence[int],
                params: dict) -> int:
    """Save the run and every series' scores; for gold, also the calibrations the hourly
    job will forecast with. Returns the run id."""
    from training import backtest_store

    versions = sorted({o.result.model_version for o in outcomes}) or ["none"]
    async with conn.transaction():
        run_id = await backtest_store.start_run(conn, source=source, model_version=versions[0]
                                                if len(versions) == 1 else ",".join(versions),
                                                horizons=horizons, params=params)
        for o in outcomes:
            scores = backtest.scorecard(o.result.frame)
            if scores:
                await backtest_store.save_scores(conn, run_id, o.series.series_id,
                                                 o.series.target, scores)
            if source == "gold":
                await backtest_store.save_calibration(conn, o.series.series_id, o.series.target,
                                                      o.result.model_version, o.result.calibration)
        await backtest_store.finish_run(conn, run_id)
    return run_id


async def backtest_gold(conn, assets: Sequence, *, horizons: Sequence[int], max_origins: int,
                        days: int, params: dict | None = None) -> tuple[int, int]:
    """Backtest every asset's targets on gold and store the run, its scorecards and the
    calibrations (what the scheduler does daily). Returns the run id and the series count.

    The fits run in a worker thread, one series at a time, so the caller's event loop
    (and its connection) stays responsive for the minutes they take.
    """
    import asyncio

    from training.predictions import promoted_lstm

    series = await gold_series(conn, assets, days=days)
    lstm = await promoted_lstm(conn)
    outcomes = await asyncio.to_thread(run, series, horizons=horizons, max_origins=max_origins,
                                       jobs=1, lstm=lstm)
    run_id = await store(conn, outcomes, source="gold", horizons=horizons,
                         params={"origins": max_origins, "days": days, **(params or {})})
    return run_id, len(outcomes)
