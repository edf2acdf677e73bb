"""The batch pipeline as a Ray job (``kuberay/rayjob-pipeline.yaml``): connect to the
cluster, start Spark on it with RayDP, backfill an event-time range.

    python -m pipeline.job --from 2026-11-01T00:00:00Z --to 2026-11-25T00:00:00Z
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime

from core.catalog import load_catalog
from core.db import SyncDb
from core.errors import ConfigError
from core.settings import Settings
from pipeline.backfill import backfill
from pipeline.spark import start_spark, stop_spark


def _utc(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="start", type=_utc, required=True)
    parser.add_argument("--to", dest="end", type=_utc, required=True)
    args = parser.parse_args(argv)
    if args.end <= args.start:
        parser.error("--to must be after --from")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if settings.database_url is None:
        raise ConfigError("the pipeline job needs DATABASE_URL")
    import ray

    ray.init(address=settings.ray.address or "auto", namespace=settings.ray.namespace)
    sp = settings.spark
    spark = start_spark(app_name="rwa-backfill", java_home=sp.java_home or _java_home(),
                        num_executors=sp.num_executors, executor_cores=sp.executor_cores,
                        executor_memory=sp.executor_memory)
    db = SyncDb(settings.database_url.get_secret_value())
    try:
        result = backfill(spark, db, lake_root=settings.lake_root,
                                 asset_ids=[a.asset_id for a in load_catalog()],
                                 start=args.start, end=args.end)
        print(json.dumps(result.__dict__))
    finally:
        db.close()
        stop_spark()


def _java_home():
    import os
    from pathlib import Path

    home = os.environ.get("JAVA_HOME")
    if not home:
        raise ConfigError("set JAVA_HOME or RWA_SPARK__JAVA_HOME for the pipeline job")
    return Path(home)


if __name__ == "__main__":
    main()
