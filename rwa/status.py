"""``rwa status``: one report over every component of a running platform."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import httpx

from core import broker, cache
from core.settings import Settings
from rwa.stack import StackInfo, resolved_settings

log = logging.getLogger(__name__)

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
            names = sorted(r.smembers(cache.ACTORS_SET)) or list(cache.ACTOR_NAMES)
            for name, raw in zip(names, r.mget([cache.heartbeat_key(a) for a in names])):
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

    components.update(_ray(info, list(beats) or list(cache.ACTOR_NAMES)))
    for name in beats or cache.ACTOR_NAMES:
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


def _ray(info: StackInfo | None, names: list[str]) -> dict[str, dict[str, Any]]:
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
    for name in names:
        result[f"actor:{name}"] = {"status": "up" if name in alive else "down", "where": "ray"}
    return result


def ingest_report(settings: Settings) -> list[dict[str, Any]]:
    """Per ingestion actor: Ray's view (state, restarts) beside the actor's own figures
    (its loop state, last event time, lag, messages/s, errors by kind)."""
    info = StackInfo.read(settings.run_dir)
    s = resolved_settings(settings, info)
    if s.redis_url is None:
        raise RuntimeError("the platform is not running (no stack.json and no REDIS_URL)")
    r = cache.sync_client(s.redis_url.get_secret_value())
    names = sorted(n for n in r.smembers(cache.ACTORS_SET) if n.startswith("ingest-"))
    beats = {n: json.loads(raw) if raw else {}
             for n, raw in zip(names, r.mget([cache.heartbeat_key(n) for n in names]))} \
        if names else {}
    ray_view: dict[str, Any] = {}
    if info is not None:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        try:
            from ray.util.state import list_actors

            for a in list_actors(address=info.ray_address, limit=1000, detail=True,
                                 raise_on_missing_output=False):
                if a.name in beats and (a.name not in ray_view or a.state == "ALIVE"):
                    ray_view[a.name] = a
        except Exception as e:  # report what Redis knows even when Ray does not answer
            log.warning("Ray state API unavailable: %s", e)
    rows = []
    for name in names:
        beat, actor = beats[name], ray_view.get(name)
        rows.append({
            "actor": name,
            "ray_state": actor.state if actor else "UNKNOWN",
            "state": beat.get("state", "no heartbeat") if beat else "no heartbeat",
            "restarts": actor.num_restarts if actor else beat.get("restarts"),
            "last_event_time": beat.get("last_event_time"),
            "lag_s": beat.get("lag_s"),
            "messages_per_s": beat.get("messages_per_s"),
            "sent": beat.get("sent"),
            "dead_lettered": beat.get("dead_lettered"),
            "errors_by_kind": beat.get("errors_by_kind", {}),
        })
    return rows
