"""Distributed LSTM training on a real local Ray: DDP over two workers with checkpoints
and resumption, and a tiny Tune search with ASHA early stopping, end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def ar_prices(n: int, *, seed: int, phi: float = 0.7, vol: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + vol * rng.standard_normal()
    return 100.0 * np.exp(np.cumsum(r))


SERIES = {f"asset-{i}": ar_prices(160, seed=i) for i in range(3)}
TINY = {"lookback": 8, "hidden_size": 8, "batch_size": 32, "lr": 0.01}


def test_ddp_training_on_two_workers_checkpoints_and_resumes(local_ray, tmp_path: Path) -> None:
    from training import lstm
    from training.train_loop import train_lstm

    first = train_lstm(SERIES, num_workers=2, use_gpu=False, epochs=2,
                       storage_path=str(tmp_path), name="first", config=TINY)
    assert first.metrics["epoch"] == 2
    assert first.metrics["world_size"] == 2
    assert [m["epoch"] for m in first.history] == [1, 2]
    assert first.checkpoint_path and lstm.load_state(first.checkpoint_path)["epoch"] == 2

    resumed = train_lstm(SERIES, num_workers=2, use_gpu=False, epochs=2,
                         storage_path=str(tmp_path), name="resumed", config=TINY,
                         resume_from=first.checkpoint_path)
    # The epoch counter continues from the checkpoint instead of starting again.
    assert [m["epoch"] for m in resumed.history] == [3, 4]
    losses = [m["train_loss"] for m in first.history + resumed.history]
    assert all(math.isfinite(v) for v in losses)
    assert resumed.history[-1]["train_loss"] < first.history[0]["train_loss"]
    # The resumed run's checkpoint is a usable forecaster.
    model, meta = lstm.load_model(resumed.checkpoint_path)
    assert meta["epoch"] == 4
    path = lstm.forecast(model, SERIES["asset-0"], 3, lookback=8,
                         scaler=meta["scalers"]["asset-0"])
    assert path.shape == (3,) and np.all(np.isfinite(path))


def test_tiny_tune_search_with_asha(local_ray, tmp_path: Path) -> None:
    from training import lstm
    from training.tune_lstm import tune_lstm

    space = {"hidden_size": (4, 8), "lr": (0.003, 0.02), "lookback": (5, 8)}
    result = tune_lstm(SERIES, storage_path=str(tmp_path), name="tiny", search_space=space,
                       num_samples=3, epochs=2, num_workers=1, use_gpu=False,
                       max_concurrent_trials=2, base_config={"batch_size": 64})
    assert len(result.trials) >= 2
    for trial in result.trials:
        assert all(trial["config"][k] in space[k] for k in space)
        assert trial["epoch"] in (1, 2)  # ASHA may stop a trial after its grace epoch
        assert math.isfinite(trial["val_loss"])
    assert all(result.best_config[k] in space[k] for k in space)
    assert result.best_val_loss == min(t["val_loss"] for t in result.trials)
    assert result.best_checkpoint_path
    assert lstm.load_state(result.best_checkpoint_path)["config"]["lookback"] == \
        result.best_config["lookback"]


@pytest.mark.gpu
def test_training_on_gpu_workers(local_ray, tmp_path: Path) -> None:
    from training.train_loop import train_lstm

    result = train_lstm(SERIES, num_workers=1, use_gpu=True, epochs=1,
                        storage_path=str(tmp_path), name="gpu", config=TINY)
    assert result.metrics["device"] == "cuda"
    assert math.isfinite(result.metrics["val_loss"])
