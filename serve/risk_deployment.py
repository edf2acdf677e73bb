"""The risk deployment: an asset's composite risk score computed on demand.

The scheduler scores every asset each hour. The ingress asks this deployment through a
handle only when ``GET /risk/{asset_id}`` finds no score stored yet (an asset added
since the last run, a platform that has just started), and for an admin's
``POST /risk/{asset_id}/refresh`` (fresh news, a changed catalog entry)::

    outcome = await handle.score.remote("paxg")   # {"risk": {...}} or {"error": why}

:func:`score_and_cache` does what the scheduler does for one asset: reads its gold
history and silver news, scores it with :mod:`training.risk`, appends the row to
``risk_scores`` and caches it under the usual key. The deployment scales to zero by
default (it is rarely needed); the CPU budget is in ``serve/app.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from ray import serve
from ray.serve import Application

from core import cache
from serve.args import RiskArgs

log = logging.getLogger(__name__)

#: The deployment's options when its args leave them alone.
DEFAULTS = RiskArgs()


async def score_and_cache(conn: Any, client: redis.Redis, asset: Any, *, news: Any,
                          ttl_s: int) -> dict[str, Any] | None:
    """Score ``asset`` now, store the row and cache it; the row as ``latest_risk``
    returns it, or None where the asset is not in the ``assets`` table."""
    from training.risk import latest_risk, recompute_risk

    if not await recompute_risk(conn, news=news, assets=[asset]):
        return None
    row = await latest_risk(conn, asset.asset_id)
    if row is None:
        return None
    body = json.loads(json.dumps(row, default=datetime.isoformat))  # as the scheduler caches it
    client.set(cache.risk_key(asset.asset_id), json.dumps(body), ex=ttl_s)
    return body


@serve.deployment(name="risk", health_check_period_s=10, **DEFAULTS.deployment_options())
class RiskScorer:
    """Scores one asset at a time with the scheduler's code; options from
    :class:`serve.args.RiskArgs` (``build_risk``)."""

    def __init__(self, args: dict[str, Any], *, database_url: str, redis_url: str) -> None:
        from core.db import SyncDb

        self.args = RiskArgs.model_validate(args)
        self.db = SyncDb(database_url)
        self.redis = cache.sync_client(redis_url)
        self.scored = 0

    def _news(self) -> Any:
        """Silver news of the lookback window as evidence, or None without a lake."""
        from training.news_reader import read_silver_news
        from training.risk import news_from_records

        if self.args.lake_root is None:
            return None
        since = datetime.now(UTC) - timedelta(days=self.args.news_lookback_days)
        return news_from_records(read_silver_news(self.args.lake_root, since=since))

    def score_sync(self, asset_id: str) -> dict[str, Any]:
        """``{"risk": row}``, or ``{"error": why}`` for an asset that cannot be scored."""
        from core.catalog import by_id_or_symbol

        asset = by_id_or_symbol(asset_id)
        if asset is None:
            return {"error": f"{asset_id} is not in the asset catalog the risk model reads"}
        news = self._news()
        row = self.db.run(lambda c: score_and_cache(c, self.redis, asset, news=news,
                                                    ttl_s=self.args.cache_ttl_s))
        if row is None:
            return {"error": f"{asset.asset_id} is not in the assets table"}
        self.scored += 1
        log.info("on-demand risk score %s: %.1f", asset.asset_id, row["composite_score"])
        return {"risk": row}

    async def score(self, asset_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.score_sync, asset_id)

    def stats(self) -> dict[str, int]:
        return {"scored": self.scored}



def build_risk(args: RiskArgs | dict[str, Any] | None = None, *, database_url: str,
               redis_url: str) -> Application:
    """The deployment with its CPUs, concurrency and autoscaling from ``args``."""
    parsed = args if isinstance(args, RiskArgs) else RiskArgs.model_validate(args or {})
    return RiskScorer.options(**parsed.deployment_options()).bind(
        parsed.model_dump(mode="json"), database_url=database_url, redis_url=redis_url)
