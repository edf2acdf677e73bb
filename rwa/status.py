"""``rwa status``: one report over every component of a running platform."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx

from core import broker, cache
from core.settings import Settings
from rwa.stack import StackInfo, resolved_settings

TABLES = ("assets", "price_data", "predictions", "quarantine", "lake_manifest")


def _down(error: Exception | str, where: str = "") -> dict[str, Any]:
    return {"status": "down", "where": where, "figures": {"error": str(error)[:200]}}


async def _postgres(dsn: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return {"status": "up", "figures": {"version": version, "rows": counts}}


def collect(settings: Settings) -> dict[str, Any]:
    info = StackInfo.read(settings.run_dir)
    s = resolved_settings(settings, info)
    components: dict[str, dict[str, Any]] = {}

    if s.database_url is None:
        components["postgres"] = _down("not running (no stack.json and no DATABASE_URL)")
    else:
        where = "embedded" if info and info.database_url else "external"
        try:
            components["postgres"] = asyncio.run(_postgres(s.database_url.get_secret_value())) | {
                "where": where}
        except Exception as e:
            components["postgres"] = _down(e, where)

    beats: dict[str, Any] = {}
    if s.redis_url is None:
        components["redis"] = _down("not running")
    else:
        where = s.redis_url.get_secret_value() if info and info.redis_url else "external"
        try:
            r = cache.sync_client(s.redis_url.get_secret_value())
            r.ping()
            latest = sum(1 for _ in r.scan_iter(cache.latest_price_key("*"), count=1000))
            components["redis"] = {"status": "up", "where": where,
                                   "figures": {"assets_with_live_price": latest}}
            for name, raw in zip(cache.ACTOR_NAMES, r.mget([cache.heartbeat_key(a) for a in cache.ACTOR_NAMES])):
                beats[name] = json.loads(raw) if raw else None
        except Exception as e:
            components["redis"] = _down(e, where)

    if s.kafka_bootstrap_servers is None:
        components["kafka"] = _down("not running")
    else:
        try:
            offsets = broker.end_offsets(s.kafka_bootstrap_servers, broker.ALL_TOPICS)
            components["kafka"] = {"status": "up", "where": s.kafka_bootstrap_servers,
                                   "figures": {"end_offsets": offsets}}
        except Exception as e:
            components["kafka"] = _down(e, s.kafka_bootstrap_servers)

    components.update(_ray(info))
    for name in cache.ACTOR_NAMES:
        beat = beats.get(name)
        actor = components.get(f"actor:{name}")
        if actor is not None and beat:
            actor["figures"] = {k: v for k, v in beat.items() if k not in ("component",)}

    api_url = info.api_url if info else f"http://{s.api.host}:{s.api.port}"
    try:
        resp = httpx.get(f"{api_url}/health", timeout=5)
        components["api"] = {"status": "up" if resp.status_code == 200 else "down",
                             "where": api_url, "figures": {"health": resp.json().get("status")}}
    except Exception as e:
        components["api"] = _down(e, api_url)
    return {"components": components,
            "dashboard_url": info.dashboard_url if info else None}


def _ray(info: StackInfo | None) -> dict[str, dict[str, Any]]:
    if info is None:
        return {"ray": _down("not running")}
    # Clusters started by Ray 2.60 require the token in ~/.ray/auth_token by default.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        from ray.util.state import list_actors

        actors = list_actors(address=info.ray_address, filters=[("state", "=", "ALIVE")],
                             limit=1000, raise_on_missing_output=False)
    except Exception as e:
        return {"ray": _down(e, info.ray_address)}
    alive = {a.name for a in actors if a.name}
    result: dict[str, dict[str, Any]] = {
        "ray": {"status": "up", "where": info.ray_address,
                "figures": {"alive_actors": len(actors), "dashboard": info.dashboard_url}}}
    for name in cache.ACTOR_NAMES:
        result[f"actor:{name}"] = {"status": "up" if name in alive else "down", "where": "ray"}
    return result
