"""Distributed LSTM training on Ray Train (v2): a TorchTrainer whose workers run DDP.

Every worker builds the same windows from the series in its config and trains on its
shard of them (``prepare_data_loader`` adds a ``DistributedSampler``); gradients are
averaged by DDP (``prepare_model``). Each epoch all workers report their metrics and
rank 0 attaches a checkpoint (model and optimiser state, completed epochs, scalers):
Ray Train 2.60 only fills ``Result.metrics`` once a checkpoint has been reported.

Resumption: a restarted run (a worker failure, or the same ``storage_path``/``name``
run again) finds its newest checkpoint through ``ray.train.get_checkpoint()``; a new
run continues an older one from ``resume_from``, a checkpoint directory (Train v2
dropped the trainer's ``resume_from_checkpoint`` argument in favour of this).

Workers use GPUs when ``use_gpu`` is true; left as ``None`` it is decided by
detection: a local CUDA device or GPUs in the Ray cluster's resources.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training import lstm

log = logging.getLogger(__name__)

#: Hyperparameters and their defaults; anything in a run's config overrides them.
DEFAULTS: dict[str, Any] = {
    "lookback": 20,
    "hidden_size": 32,
    "num_layers": 1,
    "dropout": 0.0,
    "lr": 0.005,
    "batch_size": 64,
    "val_fraction": 0.2,
    "seed": 0,
    "epochs": 10,
}


def _all_reduce_mean(value: float, device: torch.device) -> float:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's per-worker function: DDP training with a checkpoint every epoch.

    ``config`` holds ``series`` (asset id → closes), optionally ``resume_from`` (a
    checkpoint directory) and any of :data:`DEFAULTS`; ``epochs`` is the total count
    of completed epochs to reach, counting those in the checkpoint.
    """
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    cfg = {**DEFAULTS, **config}
    series = cfg.pop("series")
    if isinstance(series, ray.ObjectRef):
        series = ray.get(series)
    ctx = ray.train.get_context()
    lstm.seed_everything(int(cfg["seed"]))
    exogenous = cfg.pop("exogenous", None)
    if isinstance(exogenous, ray.ObjectRef):
        exogenous = ray.get(exogenous)
    windows = lstm.make_windows(series, lookback=int(cfg["lookback"]),
                                val_fraction=float(cfg["val_fraction"]), exogenous=exogenous)

    model = lstm.LSTMForecaster(input_size=int(windows.train_x.shape[-1]),
                                hidden_size=int(cfg["hidden_size"]),
                                num_layers=int(cfg["num_layers"]), dropout=float(cfg["dropout"]))
    optimizer_state = None
    done = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and cfg.get("resume_from"):
        checkpoint = Checkpoint(cfg["resume_from"])  # a local path or a storage URI
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = lstm.load_state(d)
        model.load_state_dict(state["model"])
        optimizer_state = state["optimizer"]
        done = int(state["epoch"])
        log.info("rank %d resumes after epoch %d", ctx.get_world_rank(), done)

    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    train_dl = ray.train.torch.prepare_data_loader(lstm.loader(
        windows.train_x, windows.train_y, batch_size=int(cfg["batch_size"]), shuffle=True,
        seed=int(cfg["seed"])))
    # Every worker validates on all the (small) validation set, so all report the same loss.
    val_dl = lstm.loader(windows.val_x, windows.val_y, batch_size=1024, shuffle=False)
    naive = lstm.naive_mse(windows.val_y)

    for epoch in range(done, int(cfg["epochs"])):
        sampler = getattr(train_dl, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        train_loss = _all_reduce_mean(lstm.fit_epoch(model, train_dl, optimizer), device)
        val_loss = lstm.evaluate(model, val_dl, device=device)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                   "naive_val_loss": naive, "world_size": ctx.get_world_size(),
                   "device": device.type}
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if ctx.get_world_rank() == 0:
                lstm.save_checkpoint(tmp, model=model, optimizer=optimizer, epoch=epoch + 1,
                                     config=cfg, scalers=windows.scalers)
                ckpt = Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)


@dataclass
class TrainResult:
    """The outcome of :func:`train_lstm`: the last epoch's metrics and checkpoint."""

    metrics: dict[str, Any]
    checkpoint_path: str | None
    #: Metrics of every reported epoch, oldest first.
    history: list[dict[str, Any]]
    run_path: str


def detect_gpu() -> bool:
    """True when this process sees a CUDA device or the Ray cluster offers GPUs."""
    if torch.cuda.is_available():
        return True
    try:
        import ray

        return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1
    except (RuntimeError, ConnectionError):  # no cluster to ask: CPUs it is
        return False


def build_trainer(series: Mapping[str, np.ndarray] | Any, *, num_workers: int,
                  use_gpu: bool | None, storage_path: str, name: str,
                  config: Mapping[str, Any] | None = None, resume_from: str | None = None,
                  cpus_per_worker: float = 0.5, keep_checkpoints: int = 2,
                  max_failures: int = 0, callbacks: list | None = None):
    """A configured ``TorchTrainer`` (not yet run); see :func:`train_lstm`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    gpu = detect_gpu() if use_gpu is None else use_gpu
    loop_config = {**(config or {}), "series": series}
    if resume_from is not None:
        loop_config["resume_from"] = resume_from
    resources: dict[str, float] = {"CPU": cpus_per_worker}
    if gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            storage_path=storage_path, name=name,
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=callbacks),
    )


def train_lstm(series: Mapping[str, np.ndarray], *, num_workers: int = 2,
               use_gpu: bool | None = None, epochs: int = 10, storage_path: str,
               name: str, resume_from: str | None = None,
               config: Mapping[str, Any] | None = None, cpus_per_worker: float = 0.5,
               keep_checkpoints: int = 2, max_failures: int = 0) -> TrainResult:
    """Train the LSTM across assets with Ray Train on ``num_workers`` DDP workers.

    Args:
        series: Asset id → daily closes, oldest first.
            (``config["exogenous"]``, asset id → features one row per close, adds
            them as input channels.)
        num_workers: Training workers (one process each, one GPU each on GPUs).
        use_gpu: Workers on GPUs; ``None`` detects (local CUDA or cluster GPUs).
        epochs: Epochs to run in this call; on resumption, on top of those done.
        storage_path: Where runs and checkpoints are kept (a shared path or URI on a
            multi-node cluster).
        name: The run's name under ``storage_path``.
        resume_from: A checkpoint of an earlier run to continue from (a directory or a
            storage URI).
        config: Hyperparameters overriding :data:`DEFAULTS`.
        cpus_per_worker: Logical CPUs each worker asks for (fractional on small machines).
        keep_checkpoints: How many recent checkpoints the run keeps.
        max_failures: Worker-group restarts allowed; each resumes from the last checkpoint.

    Raises:
        ray.train.TrainingFailedError: When training fails beyond ``max_failures``.
    """
    import ray
    from ray.train import Checkpoint

    done = 0
    if resume_from:
        with Checkpoint(resume_from).as_directory() as d:
            done = int(lstm.load_state(d)["epoch"])
    ref = ray.put(dict(series))
    cfg = {**(config or {}), "epochs": done + epochs}
    if cfg.get("exogenous") is not None:
        cfg["exogenous"] = ray.put(dict(cfg["exogenous"]))
    trainer = build_trainer(ref, num_workers=num_workers, use_gpu=use_gpu,
                            storage_path=storage_path, name=name, config=cfg,
                            resume_from=resume_from, cpus_per_worker=cpus_per_worker,
                            keep_checkpoints=keep_checkpoints, max_failures=max_failures)
    result = trainer.fit()
    history = ([] if result.metrics_dataframe is None
               else result.metrics_dataframe.to_dict("records"))
    return TrainResult(metrics=dict(result.metrics or {}),
                       checkpoint_path=result.checkpoint.path if result.checkpoint else None,
                       history=history, run_path=result.path)


async def load_series(conn, *, days: int, asset_ids: list[str] | None = None,
                      min_points: int = 30) -> dict[str, np.ndarray]:
    """Daily closes per asset from gold, oldest first, over each asset's last ``days`` days.

    Reads ``price_bars_1d``; an asset with fewer than ``min_points`` daily bars there
    falls back to the last close of each day in ``price_data``. Assets still shorter
    than ``min_points`` are left out.
    """
    daily = await conn.fetch(
        """SELECT asset_id, close FROM (
               SELECT asset_id, time, close,
                      max(time) OVER (PARTITION BY asset_id) AS newest
               FROM price_bars_1d
               WHERE ($2::text[] IS NULL OR asset_id = ANY($2::text[]))) b
           WHERE time > newest - make_interval(days => $1)
           ORDER BY asset_id, time""",
        days, asset_ids)
    out: dict[str, list[float]] = {}
    for r in daily:
        out.setdefault(r["asset_id"], []).append(float(r["close"]))
    short = [a for a, c in out.items() if len(c) < min_points]
    if asset_ids is not None:
        short += [a for a in asset_ids if a not in out]
    if asset_ids is None or short:
        hourly = await conn.fetch(
            """SELECT asset_id, close FROM (
                   SELECT asset_id, date_trunc('day', time, 'UTC') AS day, close,
                          row_number() OVER (PARTITION BY asset_id, date_trunc('day', time, 'UTC')
                                             ORDER BY time DESC) AS rn,
                          max(time) OVER (PARTITION BY asset_id) AS newest
                   FROM price_data
                   WHERE ($2::text[] IS NULL OR asset_id = ANY($2::text[]))) d
               WHERE rn = 1 AND day > newest - make_interval(days => $1)
               ORDER BY asset_id, day""",
            days, short if asset_ids is not None else None)
        fallback: dict[str, list[float]] = {}
        for r in hourly:
            fallback.setdefault(r["asset_id"], []).append(float(r["close"]))
        for a, closes in fallback.items():
            if len(closes) > len(out.get(a, [])):
                out[a] = closes
    return {a: np.asarray(c) for a, c in out.items() if len(c) >= min_points}
