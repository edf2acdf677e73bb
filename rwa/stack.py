"""The embedded-stack launcher behind ``rwa up``: starts every component in order,
wires the concrete endpoints into one ``Settings``, and stops everything in reverse
order on Ctrl-C/SIGTERM so that nothing is left running.

Ray CPU budget (logical CPUs; Ray starts with ``RWA_RAY__NUM_CPUS``, default 8, on
purpose more than the physical cores): every long-lived actor (one per ingestion
source, two bronze sinks, fan-out, pipeline, scheduler, alert monitor) 0.25; the API
ingress 0.25 per replica; the sentiment and prediction deployments 0.5 per replica, the
risk deployment 0.25 (it scales to zero; see ``serve/app.py``); Spark's executor 0.5 and
its master 0. That leaves room for Ray Train/Tune jobs submitted beside it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from core import broker, cache, db
from core.catalog import load_catalog
from core.errors import ConfigError, ServiceError
from core.settings import AuthSettings, Settings
from rwa import embedded

log = logging.getLogger(__name__)

ACTOR_CPUS = 0.25
#: The bronze sink of the raw topics other than prices (on-chain, economic, news).
BRONZE_OTHER = "bronze-other-raw"


@dataclass
class StackInfo:
    """Where the running stack can be reached; written to ``<home>/run/stack.json``."""

    api_url: str
    dashboard_url: str | None
    ray_address: str
    kafka_bootstrap: str
    redis_url: str | None  # only when embedded (no credentials in it)
    database_url: str | None  # only when embedded (unix socket, no password)
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def write(self, run_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "stack.json"
        path.write_text(json.dumps(self.__dict__, indent=2))
        return path

    @classmethod
    def read(cls, run_dir: Path) -> StackInfo | None:
        path = run_dir / "stack.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None


def resolved_settings(settings: Settings, info: StackInfo | None) -> Settings:
    """``settings`` with the embedded endpoints of a running stack filled in."""
    if info is None:
        return settings
    update: dict[str, Any] = {}
    if settings.database_url is None and info.database_url:
        update["database_url"] = SecretStr(info.database_url)
    if settings.redis_url is None and info.redis_url:
        update["redis_url"] = SecretStr(info.redis_url)
    if settings.kafka_bootstrap_servers is None:
        update["kafka_bootstrap_servers"] = info.kafka_bootstrap
    return settings.model_copy(update=update)


def head_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment ``rwa up`` gives its own Ray head: Serve's cluster settings, and
    free ports for HAProxy's side listeners where ``environ`` sets none."""
    from serve.serve_env import CLUSTER_ENV, HAPROXY_SIDE_PORTS

    ports: dict[str, str] = {}
    for var in HAPROXY_SIDE_PORTS:
        port = environ.get(var)
        while not port or port in ports.values():  # two free ports are not always two
            port = str(embedded.free_port())
        ports[var] = port
    return {**CLUSTER_ENV, **ports}


def local_jwt_secret(home: Path) -> SecretStr:
    """The embedded stack's JWT signing secret: random, made on first use and kept in
    ``<home>/auth/jwt_secret`` (mode 0600) so tokens survive a restart."""
    return local_secret(home, "jwt_secret")


def local_secret(home: Path, name: str) -> SecretStr:
    """A secret of the embedded stack: random, made on first use and kept in
    ``<home>/auth/<name>`` (mode 0600) so that it survives a restart."""
    path = home / "auth" / name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return SecretStr(path.read_text().strip())


async def prepare_database(dsn: str) -> None:
    conn = await db.connect(dsn)
    try:
        await db.migrate(conn)
        await db.upsert_assets(conn, load_catalog())
    finally:
        await conn.close()


class Stack:
    """Starts and stops the platform; ``say`` reports progress to the user."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = log.info) -> None:
        self.settings = settings
        self.say = say
        self.started = time.monotonic()
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.actors: dict[str, Any] = {}
        self.info: StackInfo | None = None
        self.java_home: Path | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- start ---------------------------------------------------------------------
    def start(self) -> StackInfo:
        s = self.settings
        home = s.home
        home.mkdir(parents=True, exist_ok=True)
        pids: dict[str, int] = {}
        embedded_db = embedded_redis = None

        if s.database_url is None:
            pg = embedded.EmbeddedPostgres(home / "postgres")
            embedded_db = pg.start()
            self._stops.append(("PostgreSQL", pg.stop))
            pids["postgres"] = pg.pid or 0
            self.say(f"PostgreSQL (embedded) on {home / 'postgres'}")
        if s.redis_url is None:
            rd = embedded.EmbeddedRedis(home / "redis")
            embedded_redis = rd.start()
            self._stops.append(("Redis", rd.stop))
            pids["redis"] = rd.pid or 0
            self.say(f"Redis (embedded) at {embedded_redis}")
        kafka_bootstrap = s.kafka_bootstrap_servers
        if kafka_bootstrap is None:
            kf = embedded.EmbeddedKafka(home / "kafka", port=s.kafka.port)
            kafka_bootstrap = kf.start()
            self._stops.append(("Kafka (Tansu)", kf.stop))
            pids["kafka"] = kf.pid or 0
            self.say(f"Kafka (embedded Tansu) at {kafka_bootstrap}")

        s = self.settings = s.model_copy(update={
            "database_url": s.database_url or SecretStr(embedded_db or ""),
            "redis_url": s.redis_url or SecretStr(embedded_redis or ""),
            "kafka_bootstrap_servers": kafka_bootstrap,
        })
        asyncio.run(prepare_database(s.database_url.get_secret_value()))
        created = broker.ensure_topics(kafka_bootstrap, partitions=s.kafka.partitions)
        self.say(f"database migrated, catalog loaded; topics created: {', '.join(created) or 'none new'}")

        java_home = self.java_home = embedded.find_java_home(s.spark.java_home)
        embedded.use_java(java_home)
        dashboard_url = self._start_ray(java_home, pids)
        self.say(f"Ray started{f'; dashboard at {dashboard_url}' if dashboard_url else ''}")

        self._reset_actor_registry()
        self._start_actor("ingest-simulated", "actors.ingestion", "SimulatedIngestion", s)
        self._start_actor("bronze-price-data-raw", "actors.live", "BronzeSinkActor", s)
        self._start_actor("live-fanout", "actors.live", "LiveFanoutActor", s)
        api_url = self._start_serve()
        self.say(f"API at {api_url} (docs at {api_url}/docs)")

        import ray

        self.info = StackInfo(
            api_url=api_url, dashboard_url=dashboard_url,
            ray_address=ray.get_runtime_context().gcs_address,
            kafka_bootstrap=kafka_bootstrap, redis_url=embedded_redis,
            database_url=embedded_db, pids=pids)
        self.info.write(s.run_dir)
        return self.info

    def start_batch_side(self) -> None:
        """The other sources and their bronze sink, the Spark pipeline and the prediction
        scheduler: started after the live path is up, so first ticks come first."""
        from actors.sources import actor_name, enabled_sources

        s = self.settings
        assert self.java_home is not None, "start() resolves Java first"
        other_raw = [t for t in broker.RAW_TOPICS if t != broker.PRICE_RAW]
        self._start_actor(BRONZE_OTHER, "actors.live", "BronzeSinkActor", s, other_raw,
                          BRONZE_OTHER)
        sources = enabled_sources(s)
        for source in sources:
            self._start_actor(actor_name(source), "actors.sources", "SourceActor", s, source)
        self.say(f"ingestion sources: {', '.join(sources) or 'none'}")
        self._start_actor("pipeline", "actors.pipeline", "PipelineActor", s, str(self.java_home))
        self._start_actor("prediction-scheduler", "actors.scheduler", "PredictionScheduler", s)
        self._start_actor("alert-monitor", "actors.alerts", "AlertMonitorActor", s)

    def _start_ray(self, java_home: Path, pids: dict[str, int]) -> str | None:
        # Token authentication (Ray's default for new clusters): the head writes the
        # token to ~/.ray/auth_token and every client on this machine reads it there.
        # Ray reads this variable when it is imported, so it is set first.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        import ray

        r = self.settings.ray
        env = {"JAVA_HOME": str(java_home), "SPARK_LOCAL_IP": "127.0.0.1"}
        if r.address:
            ray.init(address=r.address, namespace=r.namespace, runtime_env={"env_vars": env})
            self._stops.append(("Ray connection", ray.shutdown))
            return None
        # The head runs as our own child in its own session: a terminal's Ctrl-C reaches
        # only this launcher, which then stops actors first and the head last.
        head = embedded.RayHead(self.settings.home / "logs", num_cpus=r.num_cpus,
                                dashboard_host=r.dashboard_host, dashboard_port=r.dashboard_port,
                                env=head_env(os.environ))
        address = head.start()
        pids["ray"] = head.pid or 0
        self._stops.append(("Ray head", head.stop))
        ray.init(address=address, namespace=r.namespace, runtime_env={"env_vars": env},
                 log_to_driver=False)
        self._stops.append(("Ray driver", ray.shutdown))
        return f"http://{r.dashboard_host}:{r.dashboard_port}"

    def _reset_actor_registry(self) -> None:
        """Forget the actors and restart counts of a previous run of the stack."""
        r = cache.sync_client(self.settings.redis_url.get_secret_value())
        stale = [cache.ACTORS_SET, *r.scan_iter(cache.restarts_key("*"))]
        r.delete(*stale)
        r.close()

    def _register_actor(self, name: str) -> None:
        r = cache.sync_client(self.settings.redis_url.get_secret_value())
        r.sadd(cache.ACTORS_SET, name)
        r.close()

    def _start_actor(self, name: str, module: str, cls_name: str, *args: Any) -> Any:
        import importlib

        import ray

        cls = getattr(importlib.import_module(module), cls_name)
        handle = ray.remote(cls).options(
            name=name, num_cpus=ACTOR_CPUS, max_restarts=-1, max_task_retries=0,
            max_concurrency=4, lifetime="detached" if self.settings.mode == "cluster" else None,
        ).remote(*args)
        self.actors[name] = handle
        self._register_actor(name)
        self._stops.append((f"actor {name}", lambda: self._stop_actor(name, handle)))
        return handle

    @staticmethod
    def _stop_actor(name: str, handle: Any) -> None:
        import ray

        try:
            ray.get(handle.stop.remote(), timeout=20)
        except Exception as e:
            log.warning("actor %s did not stop cleanly: %s", name, e)
        ray.kill(handle, no_restart=True)

    def _start_serve(self) -> str:
        from ray import serve

        from serve.app import build_app
        from serve.portfolio.config import WalletSyncArgs

        s = self.settings
        serve.start(http_options={"host": s.api.host, "port": s.api.port})
        args = {
            "database_url": s.database_url.get_secret_value(),
            "redis_url": s.redis_url.get_secret_value(),
            "allowed_origins": s.api.allowed_origins,
            "max_ongoing_requests": s.api.max_ongoing_requests,
            "prediction_horizons": s.predictions.horizons,
            "sentiment": {"model_dir": str(s.sentiment.model_dir) if s.sentiment.model_dir else None,
                          "batch_size": s.sentiment.batch_size,
                          "max_length": s.sentiment.max_length},
            # The job's rules for on-demand forecasts; a stored row is stale after two runs.
            "prediction": {"min_days": s.predictions.min_days,
                           "cache_ttl_s": s.predictions.cache_ttl_s,
                           "max_age_s": 2 * s.predictions.interval_s,
                           "calibration_max_age_s": s.predictions.calibration_max_age_s},
            "risk": {"lake_root": s.lake_root, "news_lookback_days": s.risk.news_lookback_days,
                     "cache_ttl_s": s.risk.cache_ttl_s},
            "auth": self._auth_settings(),
            "tiers": s.tiers.table(),
            "smtp": s.smtp if s.smtp.configured else None,
            "wallet_sync": WalletSyncArgs.from_settings(s.chain),
        }
        serve.run(build_app(args), name="rwa", route_prefix="/")
        self._stops.append(("Serve", serve.shutdown))
        return f"http://{s.api.host}:{s.api.port}"

    def _auth_settings(self) -> AuthSettings:
        """The auth settings the API gets: in local mode without a configured JWT secret
        or TOTP key, the embedded stack's own (generated once, kept under the home
        directory); in cluster mode a missing one is left for each replica's environment."""
        auth = self.settings.auth
        if self.settings.mode == "local":
            home = self.settings.home
            if auth.jwt_secret is None:
                auth = auth.model_copy(update={"jwt_secret": local_jwt_secret(home)})
            if auth.totp_key is None:  # its own key, so that the JWT secret can change
                auth = auth.model_copy(update={"totp_key": local_secret(home, "totp_key")})
        return auth

    # -- first tick --------------------------------------------------------------------
    def wait_first_tick(self, timeout_s: float = 120) -> dict[str, Any]:
        """Subscribe to every asset over the public WebSocket and wait for one tick.

        The WebSocket wants an access token like any client's: the probe signs one for
        a service account of the enterprise tier (``serve.auth.service_accounts``), which
        no one can log in as, with the secret the API was given.
        """
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        from serve.auth import service_accounts

        assert self.info is not None
        auth = self._auth_settings()
        if auth.jwt_secret is None:
            raise ConfigError("the first-tick probe signs its WebSocket token with the API's "
                              "JWT secret: set RWA_AUTH__JWT_SECRET for rwa up as well")
        token = asyncio.run(service_accounts.access_token(
            self.settings.database_url.get_secret_value(), auth,
            service_accounts.FIRST_TICK_PROBE, tier="enterprise"))
        ws_url = self.info.api_url.replace("http", "ws", 1) + "/ws/prices"
        ids = [a.asset_id for a in load_catalog()]
        deadline = time.monotonic() + timeout_s
        with connect(ws_url, open_timeout=30, max_queue=None,
                     additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            try:
                hello = json.loads(ws.recv(timeout=30))
                # The tier table may have been set lower than the catalog is long.
                ws.send(json.dumps({"action": "subscribe", "assets": ids[:hello["max_assets"]]}))
                while time.monotonic() < deadline:
                    msg = json.loads(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
                    if "price" in msg:
                        return msg
            except ConnectionClosed as e:
                raise ServiceError(f"the API closed the first-tick probe's WebSocket: {e}") from e
        raise TimeoutError("no live tick reached the WebSocket")

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything started, newest first; each step is tried even if one fails."""
        for what, stop in reversed(self._stops):
            try:
                stop()
                log.info("stopped %s", what)
            except Exception as e:
                log.warning("stopping %s failed: %s", what, e)
        self._stops.clear()
        run_file = self.settings.run_dir / "stack.json"
        run_file.unlink(missing_ok=True)
