"""The `rwa` command's contracts that need no running platform."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from rwa.cli import app

runner = CliRunner()


def _csv(tmp_path: Path, times: pd.DatetimeIndex, values: np.ndarray) -> Path:
    path = tmp_path / "series.csv"
    pd.DataFrame({"time": times.strftime("%Y-%m-%d"), "value": values}).to_csv(path, index=False)
    return path


def test_forecast_json_follows_the_contract(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    times = pd.date_range("2020-01-01", periods=48, freq="MS")
    values = 100 * np.exp(np.cumsum(rng.normal(0.005, 0.02, 48)))
    result = runner.invoke(app, ["forecast", "--input", str(_csv(tmp_path, times, values)),
                                 "--horizon", "6", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["model_version"]
    points = body["points"]
    assert [p["time"][:10] for p in points] == [
        "2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]
    for p in points:
        assert p["lower_95"] <= p["lower_80"] <= p["mean"] <= p["upper_80"] <= p["upper_95"]
    assert 0.5 * values[-1] < points[0]["mean"] < 1.5 * values[-1]


def test_forecast_rejects_a_bad_file_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("when,amount\n2020-01-01,1\n")
    result = runner.invoke(app, ["forecast", "--input", str(bad), "--horizon", "3", "--json"])
    assert result.exit_code == 2
    assert "time" in result.output and "value" in result.output


def test_forecast_refuses_a_missing_file() -> None:
    result = runner.invoke(app, ["forecast", "--input", "/no/such.csv", "--horizon", "3"])
    assert result.exit_code != 0


def test_backtest_scores_the_ensemble_against_naive_on_macro_series() -> None:
    result = runner.invoke(app, ["backtest", "--source", "macro", "--only", "realgdp,infl",
                                 "--origins", "12", "--horizons", "1,4", "--no-store", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["series"] == 2 and body["run_id"] is None
    cards = {(s["model"], s["horizon"]): s for s in body["scores"]["price"]}
    assert set(cards) == {(m, h) for m in ("ensemble", "naive", "arima", "ets") for h in (1, 4)}
    # Real GDP trends: four quarters out the ensemble is far better than the last value.
    assert cards[("ensemble", 4)]["mase"] < cards[("naive", 4)]["mase"]
    for h in (1, 4):
        assert 0 <= cards[("ensemble", h)]["coverage_80"] <= cards[("ensemble", h)]["coverage_95"] <= 1
        assert cards[("naive", h)]["coverage_80"] is None


def test_backtest_rejects_bad_options_with_a_clear_message() -> None:
    cases = [(["--source", "stocks"], "--source must be one of"),
             (["--horizons", "1,soon"], "--horizons must be integers"),
             (["--horizons", "0,7"], "between 1 and 365"),
             (["--source", "macro", "--only", "nothing-like-it"], "none matches --only")]
    for args, message in cases:
        result = runner.invoke(app, ["backtest", *args, "--no-store"])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
