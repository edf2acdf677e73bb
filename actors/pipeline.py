"""The pipeline actor: hosts the Spark (RayDP) session and runs the price lake cycle
(bronze → silver → gold) on a schedule. Spark starts in the background so that the
live path and the API are up long before the JVM is."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from actors.base import Heartbeat, SupervisedLoop, run_as_batch
from core.catalog import load_catalog
from core.db import SyncDb
from core.settings import Settings

log = logging.getLogger(__name__)


#: Bronze files one cycle takes at most; more waiting means a backlog to work through.
MAX_FILES_PER_CYCLE = 500


class PipelineActor:
    NAME = "pipeline"

    def __init__(self, settings: Settings, java_home: str) -> None:
        run_as_batch()
        self.settings = settings
        self.java_home = Path(java_home)
        self.asset_ids = [a.asset_id for a in load_catalog()]
        self.db = SyncDb(settings.database_url.get_secret_value())
        self.spark = None
        self.state = "starting-spark"
        self.cycles = 0
        self.last: dict[str, Any] = {}
        self._next_cycle = 0.0
        self.loop = SupervisedLoop(
            self.NAME, self._step,
            heartbeat=Heartbeat(settings.redis_url.get_secret_value(), self.NAME),
            figures=self.stats, idle_s=0.5,
        )

    def _step(self) -> None:
        if self.spark is None:
            from pipeline.spark import start_spark

            sp = self.settings.spark
            self.spark = start_spark(
                app_name="rwa-pipeline", java_home=self.java_home,
                num_executors=sp.num_executors, executor_cores=sp.executor_cores,
                executor_memory=sp.executor_memory,
            )
            self.state = "running"
        if time.monotonic() < self._next_cycle:
            return
        from pipeline.prices import run_price_cycle
        from pipeline.spark import deprioritise_spark_jvms

        deprioritise_spark_jvms()

        result = run_price_cycle(
            self.spark, self.db, lake_root=self.settings.lake_root, asset_ids=self.asset_ids,
            max_files=MAX_FILES_PER_CYCLE,
        )
        self.cycles += 1
        if result.files:
            self.last = asdict(result) | {"at": time.time()}
        if result.files >= MAX_FILES_PER_CYCLE:
            return  # a backlog: go again at once
        # Otherwise wait: each Spark cycle costs CPU the live path needs on a small machine.
        self._next_cycle = time.monotonic() + self.settings.pipeline.interval_s

    def run_now(self) -> None:
        """Ask for a cycle without waiting for the schedule."""
        self._next_cycle = 0.0

    def stats(self) -> dict[str, Any]:
        return {"state": self.state, "cycles": self.cycles, "last_cycle": self.last}

    def stop(self) -> None:
        self.loop.stop(timeout_s=60)
        if self.spark is not None:
            from pipeline.spark import stop_spark

            stop_spark()
        self.db.close()
