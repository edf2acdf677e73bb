"""The pipeline actor: hosts the Spark (RayDP) session and the streaming silver job
(Structured Streaming over bronze, checkpointed in the lake) that feeds gold. Spark
starts in the background so that the live path and the API are up long before the JVM
is; a stream that dies is counted and started again from its checkpoint."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from actors.base import Heartbeat, SupervisedLoop, deprioritise_db_backend, run_as_batch
from core.catalog import load_catalog
from core.db import SyncDb
from core.settings import Settings

log = logging.getLogger(__name__)


#: Bronze files one micro-batch takes at most; a backlog is worked through in batches.
MAX_FILES_PER_TRIGGER = 500
#: Seconds between checks for unreadable bronze files and Spark's new threads.
HOUSEKEEPING_S = 10.0


class PipelineActor:
    NAME = "pipeline"

    def __init__(self, settings: Settings, java_home: str) -> None:
        run_as_batch()
        self.settings = settings
        self.java_home = Path(java_home)
        self.asset_ids = [a.asset_id for a in load_catalog()]
        self.db = SyncDb(settings.database_url.get_secret_value())
        # Spark here has no S3 connector jars: with an S3 lake it works on a local mirror
        # of bronze and its silver is uploaded back after each batch (pipeline/lake_mirror).
        from core import lake

        self.remote_lake = lake.is_remote(settings.lake_root)
        self.spark_lake = str(settings.home / "lake-local") if self.remote_lake \
            else settings.lake_root
        self.spark = None
        self._redis = None
        self._checked_files: set[str] = set()
        self.query = None
        self.state = "starting-spark"
        self.batches = 0
        self.stream_restarts = 0
        self.quarantined_files = 0
        self.last: dict[str, Any] = {}
        self._next_housekeeping = 0.0
        self.loop = SupervisedLoop(
            self.NAME, self._step,
            heartbeat=Heartbeat(settings.redis_url.get_secret_value(), self.NAME),
            figures=self.stats, idle_s=1.0,
        )

    def _step(self) -> None:
        from pipeline.spark import deprioritise_spark_jvms
        from pipeline.streaming import quarantine_unreadable

        if self.spark is None:
            from pipeline.spark import start_spark

            sp = self.settings.spark
            self.spark = start_spark(
                app_name="rwa-pipeline", java_home=self.java_home,
                num_executors=sp.num_executors, executor_cores=sp.executor_cores,
                executor_memory=sp.executor_memory,
            )
        if self.query is None or not self.query.isActive:
            self._mirror()
            self._start_stream()
        if time.monotonic() >= self._next_housekeeping:
            deprioritise_spark_jvms()
            deprioritise_db_backend(self.db, self.settings.database_url.get_secret_value())
            self._mirror()
            self.quarantined_files += quarantine_unreadable(self.db, self.spark_lake,
                                                            self._checked_files)
            self._next_housekeeping = time.monotonic() + HOUSEKEEPING_S

    def _mirror(self) -> None:
        if not self.remote_lake:
            return
        from core import broker, lake
        from pipeline.lake_mirror import mirror_bronze

        for topic in broker.RAW_TOPICS:
            mirror_bronze(self.settings.lake_root, topic, lake.bronze_dir(self.spark_lake, topic))
        self._upload_silver()

    def _upload_silver(self) -> None:
        from core import lake
        from pipeline.lake_mirror import upload_tree

        for dataset in ("prices", "onchain", "macro", "news"):
            upload_tree(lake.silver_dir(self.spark_lake, dataset), self.settings.lake_root,
                        dataset)

    def _start_stream(self) -> None:
        from pipeline.streaming import start_silver_stream

        if self.query is not None:
            # A stream that stopped by itself failed: count it, then resume from the
            # checkpoint (the failed micro-batch is replayed; its writes are idempotent).
            self.stream_restarts += 1
            log.error("silver stream stopped (%s); restarting from its checkpoint",
                      self.query.exception())
        self.query = start_silver_stream(
            self.spark, self.db, lake_root=self.spark_lake, asset_ids=self.asset_ids,
            trigger_s=self.settings.pipeline.interval_s,
            max_files_per_trigger=MAX_FILES_PER_TRIGGER, on_batch=self._on_batch)
        self.state = "streaming"

    def _on_batch(self, batch_id: int, result: Any) -> None:
        from dataclasses import asdict

        self.batches += 1
        self.last = asdict(result) | {"batch_id": batch_id, "at": time.time()}
        if result.gold_bars:
            self._refresh_hot()
        if self.remote_lake and result.silver_new:
            self._upload_silver()

    def _refresh_hot(self) -> None:
        """Latest price and 24 h figures per asset in Redis, from the gold just landed."""
        from core import cache
        from pipeline.hot import refresh_hot

        if self._redis is None:
            self._redis = cache.sync_client(self.settings.redis_url.get_secret_value())
        try:
            self.db.run(lambda c: refresh_hot(c, self._redis, self.asset_ids))
        except Exception as e:  # hot data is a cache: a failure must not fail the batch
            log.warning("refreshing hot data failed: %s", e)

    def stats(self) -> dict[str, Any]:
        from pipeline.streaming import progress

        return {"state": self.state, "batches": self.batches,
                "stream_restarts": self.stream_restarts,
                "quarantined_files": self.quarantined_files, "last_batch": self.last,
                **(progress(self.query) if self.spark is not None else {})}

    def stop(self) -> None:
        self.loop.stop(timeout_s=60)
        if self.query is not None:
            try:
                self.query.stop()
            except Exception as e:  # Spark may already be going down
                log.warning("stopping the silver stream: %s", e)
        if self.spark is not None:
            from pipeline.spark import stop_spark

            stop_spark()
        self.db.close()
