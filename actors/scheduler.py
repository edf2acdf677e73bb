"""The analytics scheduler: a long-lived actor (not cron) that runs, each on its own
clock,

* the prediction job every ``RWA_PREDICTIONS__INTERVAL_S`` seconds, and sooner while
  some assets still lack the gold history a forecast needs (right after a first start);
* news sentiment every ``RWA_SENTIMENT__INTERVAL_S`` seconds: the silver news of the
  last ``lookback_hours`` scored and aggregated per asset and hour into sentiment_scores;
* the risk scores every ``RWA_RISK__INTERVAL_S`` seconds, appended to risk_scores (the
  history) and cached in Redis with their explanation.

A failing job is logged and retried on its next turn; the others go on.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
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
        self.assets = load_catalog()
        self.asset_ids = [a.asset_id for a in self.assets]
        self.db = SyncDb(settings.database_url.get_secret_value())
        self.redis = cache.sync_client(settings.redis_url.get_secret_value())
        self.runs = 0
        self.last: dict[str, Any] = {}
        self._next_full = 0.0
        self._next_try = 0.0
        self._pending: set[str] = set(self.asset_ids)
        #: When each periodic job is next due (monotonic seconds): sentiment and risk on the
        #: first step, the daily backtest after its delay.
        self._due = {"sentiment": 0.0, "risk": 0.0,
                     "backtest": time.monotonic() + settings.backtest.first_delay_s}
        self._sentiment_model: Any = None
        self.sentiment_runs = 0
        self.risk_runs = 0
        self.last_sentiment: dict[str, Any] = {}
        self.last_risk: dict[str, Any] = {}
        self.backtest_runs = 0
        self.last_backtest: dict[str, Any] = {}
        self.loop = SupervisedLoop(
            self.NAME, self._step,
            heartbeat=Heartbeat(settings.redis_url.get_secret_value(), self.NAME),
            figures=self.stats, idle_s=1.0,
        )

    def _step(self) -> None:
        self._predictions_step()
        self._run_due("sentiment", self._score_sentiment)
        self._run_due("risk", self._recompute_risk)
        self._run_due("backtest", self._run_backtest)

    def _run_due(self, job: str, run: Any) -> None:
        """Run ``job`` if its clock says so; a failure waits for the next turn."""
        now = time.monotonic()
        if now < self._due[job]:
            return
        interval_s = getattr(self.settings, job).interval_s
        self._due[job] = now + interval_s
        try:
            run()
        except Exception:  # one failing job must not stop the others
            log.exception("%s job failed; next try in %.0f s", job, interval_s)

    def _score_sentiment(self) -> None:
        from training.news_reader import read_silver_news
        from training.sentiment import SentimentModel
        from training.sentiment_gold import score_news_hourly

        started = time.monotonic()
        s = self.settings.sentiment
        since = datetime.now(UTC) - timedelta(hours=s.lookback_hours)
        news = read_silver_news(self.settings.lake_root, since=since)
        if not news:
            return
        if self._sentiment_model is None:  # loaded on first use: seconds and ~100 MB
            self._sentiment_model = SentimentModel.from_settings(s, num_threads=1)
        written = self.db.run(lambda c: score_news_hourly(c, self._sentiment_model, news))
        self.sentiment_runs += 1
        self.last_sentiment = {"stories": len(news), "rows_written": written,
                               "seconds": round(time.monotonic() - started, 2), "at": time.time()}
        log.info("sentiment job: %s", self.last_sentiment)

    def _recompute_risk(self) -> None:
        from training.news_reader import read_silver_news
        from training.risk import latest_risks, news_from_records, recompute_risk

        started = time.monotonic()
        r = self.settings.risk
        since = datetime.now(UTC) - timedelta(days=r.news_lookback_days)
        news = news_from_records(read_silver_news(self.settings.lake_root, since=since))
        scored = self.db.run(lambda c: recompute_risk(c, news=news))
        latest = self.db.run(lambda c: latest_risks(c, self.asset_ids))
        pipe = self.redis.pipeline(transaction=False)
        for asset_id, row in latest.items():
            # ISO times, as the prediction cache writes them.
            pipe.set(cache.risk_key(asset_id), json.dumps(row, default=datetime.isoformat),
                     ex=r.cache_ttl_s)
        pipe.execute()
        self.risk_runs += 1
        self.last_risk = {"assets": scored, "news": len(news),
                          "seconds": round(time.monotonic() - started, 2), "at": time.time()}
        log.info("risk job: %s", self.last_risk)

    def _run_backtest(self) -> None:
        """Backtest every asset's targets on gold: fresh scorecards for the API and fresh
        calibrations for the hourly job (which then has none to redo)."""
        from training.backtest_job import backtest_gold

        started = time.monotonic()
        b = self.settings.backtest
        deprioritise_db_backend(self.db, self.settings.database_url.get_secret_value())
        run_id, scored = self.db.run(lambda c: backtest_gold(
            c, self.assets, horizons=tuple(sorted(self.settings.predictions.horizons)),
            max_origins=b.origins, days=b.days, params={"by": self.NAME}))
        self.backtest_runs += 1
        self.last_backtest = {"run_id": run_id, "series": scored,
                              "seconds": round(time.monotonic() - started, 1), "at": time.time()}
        log.info("backtest job: %s", self.last_backtest)

    def _predictions_step(self) -> None:
        now = time.monotonic()
        full = now >= self._next_full
        if not full and (now < self._next_try or not self._pending):
            return
        # Between full runs, only assets still waiting for enough gold history are tried.
        targets = [a for a in self.assets if full or a.asset_id in self._pending]
        deprioritise_db_backend(self.db, self.settings.database_url.get_secret_value())
        from training.predictions import promoted_lstm, run_job

        p = self.settings.predictions

        async def job(c):
            return await run_job(
                c, self.redis, targets, horizons=p.horizons, min_days=p.min_days,
                ttl_s=p.cache_ttl_s, lstm=await promoted_lstm(c),
                calibrations_per_run=p.calibrations_per_run,
                calibration_max_age_s=p.calibration_max_age_s)

        result = self.db.run(job)
        self.runs += 1
        self._pending = (self._pending - set(result.predicted)) | set(result.skipped)
        self.last = {"predicted": len(result.predicted), "skipped": len(result.skipped),
                     "recalibrated": result.recalibrated,
                     "seconds": round(time.monotonic() - now, 2), "at": time.time()}
        log.info("prediction job: %s", self.last)
        if full:
            self._next_full = now + p.interval_s
        self._next_try = now + WARMUP_RETRY_S

    def run_now(self) -> None:
        """Ask for a full run without waiting for the schedule."""
        self._next_full = 0.0

    def stats(self) -> dict[str, Any]:
        return {"runs": self.runs, "last_run": self.last,
                "sentiment_runs": self.sentiment_runs, "last_sentiment": self.last_sentiment,
                "risk_runs": self.risk_runs, "last_risk": self.last_risk,
                "backtest_runs": self.backtest_runs, "last_backtest": self.last_backtest}

    def stop(self) -> None:
        self.loop.stop(timeout_s=60)
        self.db.close()
