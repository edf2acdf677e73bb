"""LSTM training as a Ray job (``kuberay/rayjob-train.yaml``, ``rwa train --submit``):
read daily closes from gold, then train across assets with Ray Train, or search
hyperparameters with Ray Tune, and print the result as one JSON object.

When a database is configured, the trained checkpoint (with Tune, the best trial's) is
registered in the model registry as an ``lstm`` version (:mod:`training.registry`);
``--promote`` also promotes it.

    python -m training.train_job --workers 2 --epochs 20 --promote
    python -m training.train_job --tune --samples 8 --epochs 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core import lake
from core.errors import ConfigError, RegistryError, RwaError
from core.settings import Settings

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train_job",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="DDP workers (per trial).")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--days", type=int, default=730, help="Days of daily closes per asset.")
    parser.add_argument("--gpu", choices=("auto", "yes", "no"), default="auto",
                        help="Workers on GPUs; auto: when the cluster has them.")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--storage", default=None,
                        help="Runs and checkpoints (path or URI); default <lake>/models/lstm.")
    parser.add_argument("--name", default=None,
                        help="Run name; default lstm-<UTC time>. Reusing a name continues "
                             "that run from its newest checkpoint.")
    parser.add_argument("--resume-from", default=None, help="Checkpoint directory to continue.")
    parser.add_argument("--tune", action="store_true", help="Search hyperparameters with ASHA.")
    parser.add_argument("--no-features", dest="features", action="store_false",
                        help="Train on returns alone, without the gold features (on-chain "
                             "flows, sentiment, short rate, volatility).")
    parser.add_argument("--promote", action="store_true",
                        help="Promote the registered version at once (needs a database).")
    parser.add_argument("--samples", type=int, default=8, help="Tune trials.")
    parser.add_argument("--concurrent", type=int, default=2, help="Tune trials at once.")
    parser.add_argument("--address", default=None,
                        help="Ray cluster ('auto', 'ray://…'); default: settings, else local.")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="Logical CPUs of a locally started Ray.")
    parser.add_argument("--synthetic", type=int, default=0, metavar="ASSETS",
                        help="Train on this many simulated assets instead of gold (smoke runs).")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1 or args.epochs < 1 or args.samples < 1:
        parser.error("--workers, --epochs and --samples must be at least 1")
    if args.tune and args.resume_from:
        parser.error("--resume-from continues a training run, not a search")
    return args


def synthetic_series(assets: int, *, days: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Prices with AR(1) log returns, for smoke runs without a database."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(assets):
        r = np.zeros(days)
        for t in range(1, days):
            r[t] = 0.5 * r[t - 1] + 0.01 * rng.standard_normal()
        out[f"sim-{i}"] = 100.0 * np.exp(np.cumsum(r))
    return out


async def _gold_series(database_url: str, days: int, *, features: bool,
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Daily closes per asset from gold, and with ``features`` the exogenous features
    (on-chain flows, sentiment, the short rate, volatility) one row per close."""
    import asyncpg

    from training.features import training_inputs
    from training.train_loop import load_series

    conn = await asyncpg.connect(database_url)
    try:
        if features:
            return await training_inputs(conn, days=days)
        return await load_series(conn, days=days), None
    finally:
        await conn.close()


def checkpoint_uri(storage: str, path: str) -> str:
    """The URI of a checkpoint Ray reports at ``path`` under ``storage``.

    Ray gives paths within the storage's filesystem, so an S3 checkpoint comes back as
    ``bucket/key`` without its scheme.
    """
    if lake.is_remote(storage) and not lake.is_remote(path):
        return lake.S3_SCHEME + path
    return path


async def _register(database_url: str, *, checkpoint: str, metrics: dict[str, Any],
                    params: dict[str, Any], lake_url: str, promote: bool) -> str:
    import asyncpg

    from training import registry

    conn = await asyncpg.connect(database_url)
    try:
        mv = await registry.register(conn, kind="lstm", artifact_dir=checkpoint,
                                     metrics=metrics, params=params, lake_url=lake_url)
        if promote:
            mv = await registry.promote(conn, mv.version)
        return mv.version
    finally:
        await conn.close()


def register_checkpoint(settings: Settings, *, checkpoint: str | None,
                        metrics: dict[str, Any], params: dict[str, Any],
                        promote: bool = False) -> str | None:
    """Register ``checkpoint`` as an ``lstm`` version; ``None`` when there is no
    checkpoint or no database to register it in.

    Raises:
        RegistryError: The registry refused it or could not be reached; the message
            names the checkpoint, which stays where training left it.
    """
    import asyncpg

    if checkpoint is None:
        log.info("training left no checkpoint: nothing to register")
        return None
    if settings.database_url is None:
        log.info("no database configured: checkpoint %s not registered", checkpoint)
        return None
    try:
        version = asyncio.run(_register(settings.database_url.get_secret_value(),
                                        checkpoint=checkpoint, metrics=metrics, params=params,
                                        lake_url=settings.lake_root, promote=promote))
    except (RwaError, OSError, asyncpg.PostgresError) as e:
        raise RegistryError(f"checkpoint {checkpoint} was not registered: {e}") from e
    log.info("registered %s%s", version, " (promoted)" if promote else "")
    return version


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Train or tune as ``args`` say, on the Ray this process is connected to."""
    from training.train_loop import DEFAULTS, train_lstm
    from training.tune_lstm import tune_lstm

    if args.promote and settings.database_url is None:
        raise ConfigError("--promote registers in the database: set DATABASE_URL")
    exogenous = None
    if args.synthetic:
        series = synthetic_series(args.synthetic, days=min(args.days, 400))
    else:
        if settings.database_url is None:
            raise ConfigError("training reads gold: set DATABASE_URL (or --synthetic N)")
        # Tune searches the returns-only model; features are for the trained model.
        series, exogenous = asyncio.run(_gold_series(
            settings.database_url.get_secret_value(), args.days,
            features=args.features and not args.tune))
        if not series:
            raise ConfigError("gold holds no asset with enough daily closes to train on")
    storage = args.storage or f"{settings.lake_root.rstrip('/')}/models/lstm"
    use_gpu = {"auto": None, "yes": True, "no": False}[args.gpu]
    name = args.name or f"lstm-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    log.info("training on %d assets, storage %s", len(series), storage)
    if args.tune:
        result = tune_lstm(series, storage_path=storage, name=f"{name}-tune",
                           num_samples=args.samples, epochs=args.epochs,
                           num_workers=args.workers, use_gpu=use_gpu,
                           max_concurrent_trials=args.concurrent,
                           cpus_per_worker=args.cpus_per_worker)
        out = {"mode": "tune", "assets": len(series), **asdict(result)}
        checkpoint = result.best_checkpoint_path
        metrics = {"val_loss": result.best_val_loss}
        params = {**DEFAULTS, **result.best_config, "epochs": args.epochs}
    else:
        from training.features import EXOGENOUS

        extra = {"exogenous": exogenous, "features": ",".join(EXOGENOUS)} if exogenous else {}
        result = train_lstm(series, num_workers=args.workers, use_gpu=use_gpu,
                            epochs=args.epochs, storage_path=storage, name=name,
                            resume_from=args.resume_from, cpus_per_worker=args.cpus_per_worker,
                            config=extra)
        out = {"mode": "train", "assets": len(series), "metrics": result.metrics,
               "checkpoint_path": result.checkpoint_path, "run_path": result.run_path}
        checkpoint = result.checkpoint_path
        metrics = {k: result.metrics[k] for k in ("val_loss", "naive_val_loss", "train_loss",
                                                   "epoch") if k in result.metrics}
        params = {**DEFAULTS, "epochs": result.metrics.get("epoch", args.epochs),
                  "features": list(EXOGENOUS) if exogenous else []}
    out["model_version"] = register_checkpoint(
        settings, checkpoint=checkpoint and checkpoint_uri(storage, checkpoint),
        metrics=metrics, params=params, promote=args.promote)
    return out


def connect_ray(address: str | None, *, num_cpus: int | None, namespace: str,
                log_to_driver: bool = True) -> None:
    """Join a cluster at ``address``, or start a local Ray with pinned logical CPUs."""
    import ray

    if ray.is_initialized():
        return
    # Inside a Ray job (KubeRay, `ray job submit`) the cluster's address is in RAY_ADDRESS.
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=namespace, log_to_driver=log_to_driver)
    else:
        ray.init(address="local", num_cpus=num_cpus or 4, include_dashboard=False,
                 namespace=namespace, log_to_driver=log_to_driver)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    connect_ray(args.address or settings.ray.address, num_cpus=args.num_cpus,
                namespace=settings.ray.namespace)
    print(json.dumps(run(args, settings), default=str))


if __name__ == "__main__":
    main()
