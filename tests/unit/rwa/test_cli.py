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
