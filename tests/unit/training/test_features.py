"""Daily features: values checked by hand, no look-ahead, gaps carried, nothing invented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.features import FEATURES, build_features, standardise

DAYS = pd.date_range("2026-01-01", periods=40, freq="D", tz="UTC")


def _close(seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(DAYS)))), index=DAYS)


def test_price_features_match_their_definitions() -> None:
    close = _close()
    f = build_features(close)
    assert list(f.columns) == list(FEATURES)
    assert f.index.equals(DAYS) and np.isfinite(f.to_numpy()).all()
    r = np.log(close).diff()
    assert f["log_return"].iloc[0] == 0.0
    assert f["log_return"].iloc[10] == pytest.approx(r.iloc[10])
    assert f["volatility_7d"].iloc[20] == pytest.approx(r.iloc[14:21].std())
    assert f["drawdown_30d"].iloc[35] == pytest.approx(
        close.iloc[35] / close.iloc[6:36].max() - 1)
    assert (f["drawdown_30d"] <= 0).all()
    # Nothing else is known: exogenous columns say "no information".
    assert (f[["sentiment", "short_rate", "net_exchange_flow"]] == 0).all().all()


def test_no_feature_of_a_day_changes_when_the_future_does() -> None:
    close = _close()
    later = close.copy()
    later.iloc[30:] *= 1.5
    a, b = build_features(close), build_features(later)
    pd.testing.assert_frame_equal(a.iloc[:30], b.iloc[:30])
    assert not a.iloc[30:].equals(b.iloc[30:])


def test_onchain_news_and_rates_align_to_days_and_carry_forward() -> None:
    onchain = pd.DataFrame({
        "holder_count": [100.0, 110.0],
        "exchange_inflow": [10.0, 5.0],
        "exchange_outflow": [30.0, 5.0],
        "transfer_volume": [1000.0, np.nan],
    }, index=[DAYS[2], DAYS[20]])
    news = pd.DataFrame({"sentiment": [0.5], "articles": [3.0]}, index=[DAYS[5]])
    rate = pd.Series([4.5, 4.25], index=pd.DatetimeIndex(["2025-10-01", "2026-01-10"], tz="UTC"))
    f = build_features(_close(), onchain, news, rate)
    assert f["net_exchange_flow"].iloc[2] == pytest.approx((30 - 10) / 40)
    assert f["net_exchange_flow"].iloc[19] == pytest.approx(0.5)  # carried from day 2
    assert f["net_exchange_flow"].iloc[20] == 0.0  # balanced flows
    assert f["log_transfer_volume"].iloc[25] == pytest.approx(np.log1p(1000.0))
    assert f["holders_growth_7d"].iloc[20] == pytest.approx(np.log(110 / 100))
    # News is an event: the day it happened, and carried as the last known mood.
    assert f["sentiment"].iloc[5] == 0.5 and f["log_articles"].iloc[5] == pytest.approx(np.log(4))
    assert f["log_articles"].iloc[6] == 0.0
    assert f["short_rate"].iloc[0] == 4.5 and f["short_rate"].iloc[9] == 4.25


def test_standardise_uses_the_training_rows_only() -> None:
    m = np.column_stack([np.arange(10.0), np.ones(10)])
    z = standardise(m, fit_rows=5)
    assert z[:5, 0].mean() == pytest.approx(0.0) and z[:5, 0].std() == pytest.approx(1.0)
    assert z[9, 0] == pytest.approx((9 - 2) / np.std(np.arange(5.0)))
    assert (z[:, 1] == 0).all()


def test_the_lstm_with_features_needs_no_database_driver() -> None:
    """Ray Train workers on GPU nodes run training.lstm with features; they need no asyncpg."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['asyncpg'] = None\n"
            "import numpy as np\n"
            "from training import lstm\n"
            "c = 100 * np.exp(np.cumsum(np.full(60, 0.001)))\n"
            "w = lstm.make_windows({'a': c}, lookback=5, exogenous={'a': np.ones((60, 2))})\n"
            "assert w.train_x.shape[-1] == 3\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
