"""The prediction scheduler: a long-lived actor (not cron) that runs the prediction job
every ``RWA_PREDICTIONS__INTERVAL_S`` seconds, and sooner while some assets still lack
the gold history a forecast needs (right after a first start)."""

from __future__ import annotations

import logging
import time
from typing import Any

from actors.base import Heartbeat, SupervisedLoop, deprioritise_db_backend, run_as_batch
from core import cache
from core.catalog import load_catalog
from core.db import SyncDb
from core.settings import Settings

log = logging.getLogger(__name__)

#: How soon to retry while assets are still waiting for gold data.
WARMUP_RETRY_S = 15.0


class PredictionScheduler:
    NAME = "prediction-scheduler"

    def __init__(self, settings: Settings) -> None:
        run_as_batch()
        self.settings = settings
        self.asset_ids = [a.asset_id for a in load_catalog()]
        self.db = SyncDb(settings.database_url.get_secret_value())
        self.redis = cache.sync_client(settings.redis_url.get_secret_value())
        self.runs = 0
        self.last: dict[str, Any] = {}
        self._next_full = 0.0
        self._next_try = 0.0
        self._pending: set[str] = set(self.asset_ids)
        self.loop = SupervisedLoop(
            self.NAME, self._step,
            heartbeat=Heartbeat(settings.redis_url.get_secret_value(), self.NAME),
            figures=self.stats, idle_s=1.0,
        )

    def _step(self) -> None:
        now = time.monotonic()
        full = now >= self._next_full
        if not full and (now < self._next_try or not self._pending):
            return
        # Between full runs, only assets still waiting for enough gold history are tried.
        targets = self.asset_ids if full else sorted(self._pending)
        deprioritise_db_backend(self.db, self.settings.database_url.get_secret_value())
        from training.predictions import run_job

        p = self.settings.predictions
        result = self.db.run(lambda c: run_job(
            c, self.redis, targets, horizons=p.horizons, min_days=p.min_days,
            ttl_s=p.cache_ttl_s))
        self.runs += 1
        self._pending = (self._pending - set(result.predicted)) | set(result.skipped)
        self.last = {"predicted": len(result.predicted), "skipped": len(result.skipped),
                     "seconds": round(time.monotonic() - now, 2), "at": time.time()}
        log.info("prediction job: %s", self.last)
        if full:
            self._next_full = now + p.interval_s
        self._next_try = now + WARMUP_RETRY_S

    def run_now(self) -> None:
        """Ask for a full run without waiting for the schedule."""
        self._next_full = 0.0

    def stats(self) -> dict[str, Any]:
        return {"runs": self.runs, "last_run": self.last}

    def stop(self) -> None:
        self.loop.stop(timeout_s=60)
        self.db.close()
