"""The ensemble's weights, conformal bands and backtest scores, on series whose answer is
known. Cheap hand-made components keep these fast; the real ones are exercised by the
forecast and prediction-job tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from training import backtest, ensemble
from training.components import Component, naive


def _drift() -> Component:
    """Extrapolates the mean step: the right model for a trend plus noise."""
    def predict(y: np.ndarray, h: int) -> np.ndarray:
        step = (y[-1] - y[0]) / (len(y) - 1)
        return y[-1] + step * np.arange(1, h + 1)

    return Component("drift", "drift-test", predict)


def _biased() -> Component:
    """Always far too high: it must lose its weight."""
    return Component("biased", "biased-test", lambda y, h: np.full(h, float(y[-1]) * 1.5))


def _random_walks(n_series: int, length: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [100 * np.exp(np.cumsum(rng.normal(0, 0.01, length))) for _ in range(n_series)]


def test_conformal_quantile_takes_the_finite_sample_rank() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores: rank ceil(20 * 0.8) = 16
    assert ensemble.conformal_quantile(scores, 0.8) == 16.0
    assert ensemble.conformal_quantile(scores, 0.95) == 19.0
    # Too few scores for the rank: never narrower than the largest one seen.
    assert ensemble.conformal_quantile(np.array([1.0, 2.0]), 0.95) >= 2.0
    # No scores at all: the standard normal quantile (random-walk band).
    assert ensemble.conformal_quantile(np.empty(0), 0.8) == pytest.approx(1.2816, abs=1e-4)


def test_bands_cover_what_they_claim_on_random_walks() -> None:
    frames = [backtest.backtest_series(y, [naive(), _drift()], horizons=(1, 5, 10),
                                       max_origins=40).frame
              for y in _random_walks(30, 260, seed=11)]
    cards = {(s.model, s.horizon): s for s in backtest.scorecard(backtest.pooled(frames))}
    for h in (1, 5, 10):
        card = cards[(backtest.ENSEMBLE, h)]
        assert 0.72 <= card.coverage_80 <= 0.88, (h, card)
        assert 0.89 <= card.coverage_95 <= 0.99, (h, card)


def test_weights_follow_backtest_errors() -> None:
    rng = np.random.default_rng(3)
    y = 100 + 0.5 * np.arange(200) + rng.normal(0, 0.3, 200)
    fc = ensemble.fit_forecast(y, 10, [naive(), _drift(), _biased()])
    w = fc.band.weights
    assert w["drift"] > 0.6 and w["drift"] > 2 * w["naive"]
    assert w["biased"] < 1e-3
    # The trend is followed, not the last value.
    assert fc.band.mean[-1] == pytest.approx(y[-1] + 5.0, abs=1.5)
    assert fc.model_version == "ens-v1(naive+drift-test+biased-test)"


def test_ensemble_beats_naive_on_a_trend_and_scores_say_so() -> None:
    rng = np.random.default_rng(5)
    y = 50 * np.exp(0.002 * np.arange(240) + np.cumsum(rng.normal(0, 0.001, 240)))
    result = backtest.backtest_series(y, [naive(), _drift()], horizons=(1, 7), max_origins=30)
    cards = {(s.model, s.horizon): s for s in backtest.scorecard(result.frame)}
    assert cards[("ensemble", 7)].mase < 0.5 * cards[("naive", 7)].mase
    # MASE of the naive forecast one step ahead on its own history is about 1 by
    # definition (its scale is the mean absolute one-step change).
    assert cards[("naive", 1)].mase == pytest.approx(1.0, rel=0.35)
    assert result.calibration.at(7) is not None and result.calibration.at(7).n_scores > 0


def test_calibration_reads_only_errors_known_at_the_time() -> None:
    y = np.linspace(100, 120, 100)
    z = np.log(y)
    origins = ensemble.run_origins(y, [naive()], [40, 60, 80], 10, log_scale=True)
    upto = 60
    before = ensemble.calibrate(origins, z, upto=upto, horizon=10, names=["naive"])
    # Wreck every value after `upto`: a calibration made at `upto` must not change.
    z_later = z.copy()
    z_later[upto + 1:] += 5.0
    after = ensemble.calibrate(origins, z_later, upto=upto, horizon=10, names=["naive"])
    assert before.to_json() == after.to_json()
    assert before.at(1).n_scores > 0


def test_bands_are_nested_and_widen_and_survive_a_json_round_trip() -> None:
    y = _random_walks(1, 150, seed=2)[0]
    fc = ensemble.fit_forecast(y, 20, [naive(), _drift()])
    b = fc.band
    assert np.all(b.lower[0.95] <= b.lower[0.8]) and np.all(b.lower[0.8] <= b.mean)
    assert np.all(b.mean <= b.upper[0.8]) and np.all(b.upper[0.8] <= b.upper[0.95])
    width = b.upper[0.95] - b.lower[0.95]
    assert width[-1] > width[0]
    restored = ensemble.Calibration.from_json(fc.calibration.to_json())
    again = ensemble.fit_forecast(y, 20, [naive(), _drift()], calibration=restored)
    np.testing.assert_allclose(again.band.upper[0.95], b.upper[0.95])


def test_negative_series_stay_on_raw_scale_and_horizons_past_the_history_extrapolate() -> None:
    rng = np.random.default_rng(8)
    y = np.cumsum(rng.normal(0, 1, 40)) - 20  # crosses zero: no logs
    fc = ensemble.fit_forecast(y, 100, [naive(), _drift()])
    assert not fc.log_scale
    assert len(fc.band.mean) == 100 and np.all(np.isfinite(fc.band.upper[0.95]))
    # Beyond the checked horizons the band keeps growing like sqrt(h).
    half = (fc.band.upper[0.8] - fc.band.lower[0.8]) / 2
    assert half[99] / half[49] == pytest.approx(math.sqrt(100 / 50), rel=1e-6)


def test_a_component_that_breaks_is_left_out() -> None:
    broken = Component("broken", "broken-test", lambda y, h: np.full(h, np.nan))
    y = _random_walks(1, 80, seed=4)[0]
    fc = ensemble.fit_forecast(y, 5, [naive(), broken])
    assert "broken" not in fc.band.weights
    assert fc.model_version == "ens-v1(naive)"


def test_the_tail_ratio_of_a_horizon_comes_from_horizons_near_it() -> None:
    # Errors with heavy tails (Student t, 2 dof) up to 9 steps and normal beyond, as
    # when jumps dominate the short horizons: the 30-step bands keep the normal shape
    # (95/80 % ratio 1.53) instead of borrowing the short horizons' (about 2).
    rng = np.random.default_rng(3)
    horizon, n = 30, 300
    steps = np.arange(1, horizon + 1)
    origins = []
    for i in range(n):
        e = np.array([rng.standard_t(2) if h <= 9 else rng.normal() for h in steps])
        origins.append(ensemble.Origin(i, 1.0, {"m": -e * np.sqrt(steps)}))
    cal = ensemble.calibrate(origins, np.zeros(n + horizon + 1), upto=n + horizon,
                             horizon=horizon, names=["m"])

    def ratio(h: int) -> float:
        q = cal.at(h).quantiles
        return q[0.95] / q[0.8]

    assert ratio(1) > 2.0
    assert ratio(30) == pytest.approx(norm.ppf(0.975) / norm.ppf(0.9), abs=0.1)
