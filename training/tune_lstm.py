"""A Ray Tune search over the LSTM's hyperparameters, with ASHA early stopping.

Train v2 way of combining the two: each Tune trial is a *function trainable* that
builds a ``TorchTrainer`` for its hyperparameters and runs it; the trainer's
``TuneReportCallback`` relays every epoch's metrics (rank 0's) to Tune, so ASHA sees
``val_loss`` per epoch and stops unpromising trials early. The trial function itself
only drives and asks for a sliver of a CPU; its training workers ask for their own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training import train_loop

log = logging.getLogger(__name__)

#: The default search space: grids the tiny searches can enumerate.
SEARCH_SPACE: dict[str, Sequence[Any]] = {
    "hidden_size": (16, 32, 64),
    "lr": (0.001, 0.003, 0.01),
    "lookback": (10, 20, 40),
}


@dataclass
class TuneResult:
    best_config: dict[str, Any]
    best_val_loss: float
    best_checkpoint_path: str | None
    #: One entry per trial: its config, last epoch reached and last val_loss.
    trials: list[dict[str, Any]] = field(default_factory=list)


def _trial(config: dict, run: dict) -> None:
    """One trial: a distributed training run for one hyperparameter set."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    cfg = dict(config)
    trial_id = ray.tune.get_context().get_trial_id()
    trainer = train_loop.build_trainer(
        run["series"], num_workers=run["num_workers"], use_gpu=run["use_gpu"],
        storage_path=run["storage_path"], name=f"{run['name']}-{trial_id}",
        config={**run["base_config"], **cfg, "epochs": run["epochs"]},
        cpus_per_worker=run["cpus_per_worker"], keep_checkpoints=1,
        callbacks=[TuneReportCallback()])
    trainer.fit()


def tune_lstm(series: Mapping[str, np.ndarray], *, storage_path: str, name: str = "lstm-tune",
              search_space: Mapping[str, Sequence[Any]] | None = None, num_samples: int = 4,
              epochs: int = 3, num_workers: int = 1, use_gpu: bool | None = None,
              max_concurrent_trials: int = 2, cpus_per_worker: float = 0.5,
              grace_period: int = 1, reduction_factor: int = 2,
              base_config: Mapping[str, Any] | None = None, seed: int = 0) -> TuneResult:
    """Search the LSTM's hyperparameters with ASHA on ``val_loss`` (lower is better).

    Args:
        series: Asset id → daily closes, oldest first.
        storage_path: Where trials, their runs and checkpoints are kept.
        name: The experiment's name under ``storage_path``.
        search_space: Hyperparameter → candidate values (sampled uniformly);
            defaults to :data:`SEARCH_SPACE`.
        num_samples: Trials to run.
        epochs: Epochs a trial runs unless ASHA stops it first.
        num_workers: DDP workers per trial.
        use_gpu: Workers on GPUs; ``None`` detects.
        max_concurrent_trials: Trials running at once.
        cpus_per_worker: Logical CPUs per training worker.
        grace_period: Epochs every trial gets before ASHA may stop it.
        reduction_factor: ASHA's halving rate.
        base_config: Fixed hyperparameters under the searched ones.
        seed: Seeds the search's sampling.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    space = {k: tune.choice(list(v)) for k, v in (search_space or SEARCH_SPACE).items()}
    run = {
        "series": ray.put(dict(series)),
        "num_workers": num_workers,
        "use_gpu": train_loop.detect_gpu() if use_gpu is None else use_gpu,
        "storage_path": storage_path,
        "name": name,
        "epochs": epochs,
        "cpus_per_worker": cpus_per_worker,
        "base_config": dict(base_config or {}),
    }
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                              grace_period=grace_period, reduction_factor=reduction_factor)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trial, run=run), {"CPU": 0.1}),
        param_space=space,
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=scheduler,
                                    num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent_trials,
                                    search_alg=BasicVariantGenerator(random_state=seed)),
        run_config=tune.RunConfig(storage_path=storage_path, name=name, verbose=0),
    )
    grid = tuner.fit()
    trials = []
    for r in grid:
        if r.metrics is None or "val_loss" not in r.metrics:
            log.warning("trial %s reported nothing: %s", r.path, r.error)
            continue
        trials.append({"config": dict(r.config),
                       "epoch": r.metrics.get("epoch"), "val_loss": r.metrics["val_loss"],
                       "checkpoint_path": r.metrics.get("checkpoint_path")})
    if not trials:
        raise RuntimeError(f"no Tune trial finished: {[str(r.error) for r in grid]}")
    best = grid.get_best_result(metric="val_loss", mode="min", scope="last")
    return TuneResult(
        best_config=dict(best.config),
        best_val_loss=float(best.metrics["val_loss"]),
        best_checkpoint_path=best.metrics.get("checkpoint_path"),
        trials=trials)
