"""Redis: the client factory and every key and channel name the platform uses.

Keeping the names here means writers (actors) and readers (the API) never drift.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

#: Pub/sub channel carrying one JSON message per live tick.
TICKS_CHANNEL = "rwa:ticks"
#: Pub/sub channel the API announces alert changes on (``{"alert_id", "asset_ids", "action"}``)
#: so that the alert monitor reloads those assets' alerts at once.
ALERTS_CHANGED_CHANNEL = "rwa:alerts:changed"
#: The long-lived actors, by the name each runs under and heartbeats as.
ACTOR_NAMES: tuple[str, ...] = (
    "ingest-simulated",
    "bronze-price-data-raw",
    "live-fanout",
    "pipeline",
    "prediction-scheduler",
    "alert-monitor",
)
#: Redis set of every actor name the running stack started (fixed ones and sources).
ACTORS_SET = "rwa:actors"
#: How long a component's heartbeat lives; a component missing it is reported down.
HEARTBEAT_TTL_S = 30


def latest_price_key(asset_id: str) -> str:
    return f"rwa:latest:{asset_id}"


def stats_24h_key(asset_id: str) -> str:
    """An asset's 24 h figures (open, high, low, close, volume, change) computed from gold."""
    return f"rwa:stats24h:{asset_id}"


def prediction_key(asset_id: str, horizon: int, target: str = "price") -> str:
    """The latest prediction of one target (price, nav, premium) at one horizon."""
    if target == "price":
        return f"rwa:prediction:{asset_id}:{horizon}"
    return f"rwa:prediction:{asset_id}:{target}:{horizon}"


def risk_key(asset_id: str) -> str:
    """The latest risk score of an asset with its explanation (JSON, TTL from settings)."""
    return f"rwa:risk:{asset_id}"


def restarts_key(component: str) -> str:
    return f"rwa:restarts:{component}"


def heartbeat_key(component: str) -> str:
    return f"rwa:heartbeat:{component}"


def sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)


def async_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
