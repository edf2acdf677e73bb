"""The FastAPI application: REST over gold and the cache; the analytics routes
(``serve.analytics_routes``), the live WebSocket (``serve.ws``) and the account routers
are mounted here.

``create_api(args)`` builds the app; the Serve ingress wraps it, and the same app runs
under plain uvicorn for comparison benchmarks. Errors are ``{"detail": …}`` with the
right status; bad input never reaches a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import redis.exceptions
from cachetools import TTLCache
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import AfterValidator, BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from core import cache
from core.domain import AssetClass
from serve import actor_metrics, queries
from serve.alerts.routes import alerts_router
from serve.analytics_routes import analytics_router
from serve.args import AppArgs
from serve.auth.deps import current_user, rate_limit
from serve.auth.routes import admin_router, auth_router, plain_text
from serve.live import TickHub
from serve.portfolio.routes import portfolio_router
from serve.ws import ws_router

log = logging.getLogger(__name__)

CORE_DEPENDENCIES = ("postgres", "redis")
#: The largest ``offset`` a list takes: PostgreSQL's bigint (asyncpg cannot send more).
MAX_OFFSET = 2**63 - 1

#: Hot cache entries a replica keeps (``AppArgs.near_cache_ttl_s``): every catalog asset's
#: predictions, several times over.
NEAR_CACHE_ENTRIES = 4096
REQUESTS = Counter("rwa_api_requests_total", "API requests", ["route", "status"])


class RequestCounter:
    """Counts HTTP responses by route template and status into ``REQUESTS``.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
    runs every request in a task group with memory streams, which cost more CPU than a
    cached read itself (measured with py-spy under bench/api.py).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before answering

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            REQUESTS.labels(getattr(route, "path", "unmatched"), str(status)).inc()


class Page(BaseModel):
    items: list[dict[str, Any]]
    total: int


class Services:
    """What a replica holds open: the PostgreSQL pool, Redis, the tick hub."""

    def __init__(self, args: AppArgs) -> None:
        self.args = args
        self.pool: asyncpg.Pool | None = None
        self.redis = cache.async_client(args.redis_url)
        self.hub = TickHub(args.redis_url)
        self.symbols: dict[str, str] = {}  # lower-case id or symbol → asset_id
        # Hits of ``cached`` only: a miss must reach Redis again, as the job may fill it.
        self.near: TTLCache[str, Any] | None = TTLCache(
            NEAR_CACHE_ENTRIES, args.near_cache_ttl_s) if args.near_cache_ttl_s > 0 else None

    async def start(self) -> None:
        self.hub.start()
        with contextlib.suppress(Exception):  # a down database must not stop the replica
            await self.ensure_pool()

    async def ensure_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            try:
                self.pool = await asyncpg.create_pool(
                    self.args.database_url, min_size=1, max_size=8, timeout=5, command_timeout=10)
            except (TimeoutError, OSError, asyncpg.PostgresError) as e:
                raise HTTPException(503, f"database unavailable: {e}") from e
            await self.refresh_symbols()
        return self.pool

    async def refresh_symbols(self) -> None:
        assert self.pool is not None
        rows = await self.pool.fetch("SELECT asset_id, symbol FROM assets")
        self.symbols = {r["asset_id"].lower(): r["asset_id"] for r in rows} | {
            r["symbol"].lower(): r["asset_id"] for r in rows}

    async def cached(self, key: str, *, near: bool = False) -> Any | None:
        """A cached JSON value, or None when absent or when Redis is down (degrade, don't fail).

        ``near``: for values only a scheduled job replaces (predictions, hourly), a hit is
        kept in the replica for ``near_cache_ttl_s``; callers must not change what they
        get. Not for risk scores: an admin's refresh must show at once on every replica."""
        near = near and self.near is not None
        if near and (hit := self.near.get(key)) is not None:
            return hit
        try:
            raw = await self.redis.get(key)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            log.warning("cache unavailable, reading through: %s", e)
            return None
        if not raw:
            return None
        value = json.loads(raw)
        if near:
            self.near[key] = value
        return value

    async def asset_or_404(self, ref: str) -> dict[str, Any]:
        asset = await queries.find_asset(await self.ensure_pool(), ref)
        if asset is None:
            raise HTTPException(404, f"unknown asset: {ref}")
        return asset

    async def resolve_asset_id(self, ref: str) -> str:
        """The asset id of an id or symbol, from the replica's table when it knows it."""
        return self.symbols.get(ref.lower()) or (await self.asset_or_404(ref))["asset_id"]

    async def stop(self) -> None:
        await self.hub.stop()
        if self.pool:
            await self.pool.close()
        await self.redis.aclose()


def create_api(args: AppArgs, *, sentiment: Any = None, prediction: Any = None,
               risk: Any = None) -> FastAPI:
    """The FastAPI app; ``sentiment``, ``prediction`` and ``risk`` are Serve handles to
    the model deployments (``serve.app``), None where one is not deployed."""
    services = Services(args)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await services.start()
        yield
        await services.stop()

    app = FastAPI(
        title="RWA Prime API",
        version="0.1.0",
        description="Analytics and predictions for tokenized real-world assets.",
        lifespan=lifespan,
        # Here and not per router: routes copy the app's dependencies when they are added.
        dependencies=[Depends(rate_limit)],
    )
    app.state.services = services
    app.include_router(auth_router(services))
    app.include_router(admin_router(services))
    app.include_router(portfolio_router(services, current_user))
    app.include_router(alerts_router(services, current_user))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad input back and fails (a 500) on inputs
        # JSON cannot encode: NaN, lone surrogates. The location and message suffice.
        return JSONResponse({"detail": jsonable_encoder(
            [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in exc.errors()])},
            422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route matching the path
            # only; a path served by several routes (GET, PATCH, DELETE) has them all.
            exc.headers = (exc.headers or {}) | {
                "Allow": ", ".join(allowed_methods(app.routes, request.scope["path"]))}
        return await http_exception_handler(request, exc)

    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(OSError)
    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"a dependency is unavailable: {type(exc).__name__}"}, 503)

    app.add_middleware(RequestCounter)

    async def pool() -> asyncpg.Pool:
        return await services.ensure_pool()

    asset_or_404 = services.asset_or_404

    @app.get("/health", tags=["operations"])
    async def health() -> JSONResponse:
        status: dict[str, Any] = {}
        try:
            p = await pool()
            await asyncio.wait_for(p.fetchval("SELECT 1"), 3)
            status["postgres"] = {"status": "up"}
        except Exception as e:
            status["postgres"] = {"status": "down", "error": type(e).__name__}
        try:
            await asyncio.wait_for(services.redis.ping(), 3)
            status["redis"] = {"status": "up"}
            names = sorted(await services.redis.smembers(cache.ACTORS_SET)) or list(
                cache.ACTOR_NAMES)
            beats = await services.redis.mget([cache.heartbeat_key(c) for c in names])
            for name, beat in zip(names, beats):
                status[name] = {"status": "up", **json.loads(beat)} if beat else {"status": "down"}
        except Exception as e:
            status["redis"] = {"status": "down", "error": type(e).__name__}
        ok = all(status[d]["status"] == "up" for d in CORE_DEPENDENCIES)
        body = {"status": "ok" if ok else "degraded", "components": status,
                "websocket_clients": services.hub.clients}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics in its text exposition format."""
        body = generate_latest()
        try:
            names = sorted(await services.redis.smembers(cache.ACTORS_SET))
            raw = await services.redis.mget([cache.heartbeat_key(n) for n in names]) if names \
                else []
            body += actor_metrics.render(
                {n: json.loads(b) if b else None for n, b in zip(names, raw)})
        except Exception as e:  # API metrics still answer while Redis is down
            log.warning("actor metrics unavailable: %s", e)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/assets", response_model=Page, tags=["assets"])
    async def list_assets(
        asset_class: AssetClass | None = None,
        blockchain: Annotated[str | None, Query(max_length=40), AfterValidator(plain_text)
                              ] = None,
        min_apy: Annotated[float | None, Query(ge=0, le=100)] = None,
        q: Annotated[str | None, Query(min_length=1, max_length=80),
                     AfterValidator(plain_text)] = None,
        sort: queries.SortKey = "symbol",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Page:
        items, total = await queries.list_assets(
            await pool(), asset_class=asset_class, blockchain=blockchain, min_apy=min_apy, q=q,
            sort=sort, limit=limit, offset=offset)
        return Page(items=items, total=total)

    @app.get("/assets/{asset_id}", tags=["assets"])
    async def get_asset(asset_id: str) -> dict[str, Any]:
        asset = await asset_or_404(asset_id)
        return asset | {"latest": await services.cached(cache.latest_price_key(asset["asset_id"]))}

    def time_range(start: datetime | None, end: datetime | None) -> None:
        if start and end and start >= end:
            raise HTTPException(422, "start must be before end")

    @app.get("/assets/{asset_id}/prices", tags=["assets"])
    async def get_prices(
        asset_id: str,
        interval: Literal["1h", "1d"] = "1h",
        start: datetime | None = None,
        end: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    ) -> dict[str, Any]:
        time_range(start, end)
        asset = await asset_or_404(asset_id)
        bars = await queries.price_bars(await pool(), asset["asset_id"], interval=interval,
                                        start=start, end=end, limit=limit)
        return {"asset_id": asset["asset_id"], "interval": interval, "items": bars}

    async def asset_series(query: Any, asset_id: str, start: datetime | None,
                           end: datetime | None, limit: int) -> dict[str, Any]:
        """``{asset_id, items}`` of a per-asset time-series ``query`` over [start, end)."""
        time_range(start, end)
        asset = await asset_or_404(asset_id)
        rows = await query(await pool(), asset["asset_id"], start=start, end=end, limit=limit)
        return {"asset_id": asset["asset_id"], "items": rows}

    @app.get("/assets/{asset_id}/sentiment", tags=["assets"])
    async def get_sentiment(
        asset_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    ) -> dict[str, Any]:
        """News sentiment per hour and source: mean score in [-1, 1] and story count."""
        return await asset_series(queries.sentiment_hours, asset_id, start, end, limit)

    @app.get("/assets/{asset_id}/onchain", tags=["assets"])
    async def get_onchain(
        asset_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 365,
    ) -> dict[str, Any]:
        """On-chain metrics per day (holders, transfers, liquidity, exchange flows, NAV)."""
        return await asset_series(queries.onchain_days, asset_id, start, end, limit)

    app.include_router(analytics_router(services, sentiment=sentiment, prediction=prediction,
                                        risk=risk))
    app.include_router(ws_router(services))

    app.openapi = _openapi_with_message_details(app)  # type: ignore[method-assign]
    return app


def allowed_methods(routes: list[BaseRoute], path: str) -> list[str]:
    """The methods of every HTTP route whose path pattern matches ``path``, the routes
    of included routers with their prefixes too."""
    return sorted({method for route in iter_route_contexts(routes)
                   if isinstance(route.original_route, Route) and route.methods
                   and route.path_regex.match(path) for method in route.methods})


def _openapi_with_message_details(app: FastAPI) -> Any:
    """``app.openapi`` with a 422's ``detail`` documented as it is sent: FastAPI's list
    of invalid fields when a request fails its schema, or a message string when a rule
    the schema cannot express refuses it (an unknown asset, a weak password, ``start``
    not before ``end``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        error = spec.get("components", {}).get("schemas", {}).get("HTTPValidationError")
        if error is not None:
            fields = error["properties"]["detail"]
            error["properties"]["detail"] = {
                "title": fields.pop("title", "Detail"),
                "anyOf": [{"type": "string", "description": "What is wrong, in words."},
                          fields]}
        return spec

    return openapi
