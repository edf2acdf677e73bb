"""Cached ``GET /predictions`` through Ray Serve and on plain uvicorn, and tick → WebSocket
latency with many connected clients (targets on 2 cores: p50 <= 10 ms, >= 500 requests/s,
Serve overhead <= 3x plain FastAPI on uvicorn, same run; WebSocket p99 <= 100 ms with
500 clients).

An embedded PostgreSQL (the catalog, one stored prediction) and Redis (that prediction
cached under its real key); one enterprise account made through ``POST /auth/register``,
``serve.auth.users.set_tier`` and ``POST /auth/login``. The same ``create_api`` app runs
first on plain uvicorn in a subprocess, then as the Serve application of ``build_app``
(HAProxy → ingress, as `rwa up` runs it, serve/serve_env.py; `--python-proxy`: Serve's
default Python proxy; the model deployments left out, a cached read calls none) on a
local Ray. Every request passes the app's request limiter (for a signed-in caller in the
same Redis call as the session's checks, ``Auth.gate``) with a tier
table whose limits never answer 429; the uvicorn runs split its cost: anonymous vs
bearer token, and anonymous with the limiter overridden off. On each server
``--clients`` WebSockets connect with the bearer token and subscribe to a few assets
each; ticks published on the Redis ticks channel (stamped ``published_at`` as the live
fan-out does) are timed from publish to each client.

The load generator (this process: keep-alive HTTP/1.1 on asyncio streams for the request
runs, aiohttp for the WebSockets) shares the machine with the servers; its CPU share is
printed with each run.

    .venv/bin/python bench/api.py [--requests 3000] [--concurrency 8] [--clients 500]
        [--assets-per-client 3] [--tick-rate 20] [--ticks 400] [--ray-cpus 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from core import cache
from core.catalog import load_catalog
from rwa.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, wait_for

ASSET = "paxg"
HORIZON = 7
EMAIL = "bench@example.com"
PASSWORD = "Load-Test-Tr4ffic-2026"
#: Requests per minute no run reaches: the limiter runs but never answers 429.
UNREACHED_LIMIT = 10**9
#: The model deployments ``build_app`` adds unless their args are null.
MODEL_DEPLOYMENTS = ("sentiment", "prediction", "risk")


# -- the application's arguments and data ------------------------------------------------
def app_args(database_url: str, redis_url: str, *, max_ongoing: int) -> dict[str, Any]:
    """``AppArgs`` as JSON (secrets readable, as ``build_app`` sends them to replicas)."""
    from pydantic import SecretStr

    from core.settings import AuthSettings, default_tier_table
    from serve.args import AppArgs

    tiers = {name: limits.model_copy(update={"requests_per_minute": UNREACHED_LIMIT})
             for name, limits in default_tier_table().items()}
    # The ingress alone: a cached read and the WebSocket call no model deployment.
    no_models = {name: None for name in MODEL_DEPLOYMENTS if name in AppArgs.model_fields}
    return AppArgs(
        database_url=database_url, redis_url=redis_url, **no_models,
        max_ongoing_requests=max_ongoing, tiers=tiers,
        auth=AuthSettings(jwt_secret=SecretStr(secrets.token_urlsafe(48)), access_ttl_s=3600),
    ).model_dump(mode="json")


async def seed(database_url: str, redis_url: str) -> None:
    """The catalog in PostgreSQL, and one 7-day price prediction stored and cached the way
    the prediction job writes it."""
    import asyncpg

    from core import db
    from training.ensemble import Band
    from training.predictions import cache_rows, prediction_rows, store

    days = max(HORIZON, 30)
    mean = 2400 * np.exp(np.linspace(0, 0.02, days))
    band = Band(mean=mean, lower={0.8: mean * 0.97, 0.95: mean * 0.95},
                upper={0.8: mean * 1.03, 0.95: mean * 1.05},
                weights={"naive": 0.2, "ets": 0.3, "arima": 0.3, "lstm": 0.2})
    model = {"mase": 0.93, "smape": 1.2, "coverage_80": 0.8, "coverage_95": 0.95, "n": 40}
    card = {"run_id": 1, "backtested_at": datetime.now(UTC).isoformat(),
            **{m: model for m in ("ensemble", "naive", "ets", "arima")}}
    last_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = prediction_rows(ASSET, "price", last_day - timedelta(days=1),
                           SimpleNamespace(band=band), [1, HORIZON, 30], datetime.now(UTC),
                           "bench", {HORIZON: card})
    conn = await asyncpg.connect(database_url)
    client = cache.sync_client(redis_url)
    try:
        await db.migrate(conn)
        await db.upsert_assets(conn, load_catalog())
        cache_rows(client, rows, await store(conn, rows), ttl_s=24 * 3600)
    finally:
        client.close()
        await conn.close()


def enterprise_token(api: str, database_url: str) -> str:
    """An access token of a new account, raised to the enterprise tier."""
    import asyncpg
    import httpx

    from serve.auth import users

    with httpx.Client(base_url=api, timeout=60) as http:
        r = http.post("/auth/register", json={"email": EMAIL, "password": PASSWORD})
        if r.status_code != 201:
            raise SystemExit(f"POST /auth/register: {r.status_code} {r.text}")
        user_id = r.json()["user_id"]

        async def raise_tier() -> None:
            conn = await asyncpg.connect(database_url)
            try:
                await users.set_tier(conn, user_id, "enterprise")
            finally:
                await conn.close()

        asyncio.run(raise_tier())
        r = http.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})
        if r.status_code != 200:
            raise SystemExit(f"POST /auth/login: {r.status_code} {r.text}")
        token = r.json()["access_token"]
        me = http.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
        if me.get("tier") != "enterprise":
            raise SystemExit(f"the bench account is not enterprise: {me}")
        return token


# -- the two servers ---------------------------------------------------------------------
@contextlib.contextmanager
def uvicorn_app(args_file: Path, log: Path, *, limiter: bool = True) -> Iterator[str]:
    """``create_api`` on plain uvicorn in a child process (this file's ``_uvicorn`` mode)."""
    port = free_port()
    argv = [sys.executable, __file__, "_uvicorn", str(args_file), str(port)]
    if not limiter:
        argv.append("--no-limiter")
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _healthy(api), timeout_s=180,
                 what="uvicorn")
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited:\n{log.read_text()[-2000:]}")
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _healthy(api: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _uvicorn_child(argv: list[str]) -> None:
    import uvicorn

    from serve.api import create_api
    from serve.args import AppArgs
    from serve.auth.deps import rate_limit

    args_file, port = argv[0], int(argv[1])
    app = create_api(AppArgs.model_validate_json(Path(args_file).read_text()))
    if "--no-limiter" in argv:
        async def no_limit() -> None:
            return None

        app.dependency_overrides[rate_limit] = no_limit
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def serve_app(args: dict[str, Any], *, num_cpus: int, python_proxy: bool = False
              ) -> Iterator[str]:
    """The Serve application of ``build_app`` on a local Ray; its proxy's URL."""
    # As `rwa up` starts its head: Ray's Python workers default to niceness 15, which
    # would put the proxy and replica behind the load generator.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # As `rwa up` starts its head: Serve's settings (HAProxy mode) for every Ray process,
    # which inherit this environment.
    from serve.serve_env import CLUSTER_ENV

    os.environ.update(CLUSTER_ENV)
    if python_proxy:
        os.environ.pop("RAY_SERVE_ENABLE_HA_PROXY", None)
    import ray
    from ray import serve

    from serve.app import build_app

    for attempt in (1, 2):
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            break
        except Exception as e:  # a busy machine can miss Ray's fixed 30 s node start-up
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(e):
                raise
            print(f"Ray did not start ({e}); trying once more", file=sys.stderr)
    # Ray's core worker installs a SIGTERM handler that ends the process at once; take it
    # back so that SIGTERM unwinds like Ctrl-C and every service is stopped.
    _raise_on_sigterm()
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            serve.run(build_app(args), name="bench", route_prefix="/")
            api = f"http://127.0.0.1:{port}"
            wait_for(lambda: _healthy(api), timeout_s=120, what="Serve application")
            yield api
        finally:
            serve.shutdown()
    finally:
        ray.shutdown()


# -- HTTP load ---------------------------------------------------------------------------
@dataclass
class Run:
    server: str
    caller: str
    concurrency: int
    requests: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    errors: int
    client_cpu_share: float  #: the load generator's CPU seconds per wall second

    def line(self) -> str:
        errors = f", {self.errors} not 200" if self.errors else ""
        return (f"  {self.server:<8} {self.caller:<26} c={self.concurrency:<3} "
                f"p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
                f"{self.requests_per_s:7.0f} req/s  (client CPU {self.client_cpu_share:.0%}"
                f"{errors})")


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> int:
    """One keep-alive GET on an open connection: the reply's status (its body is read)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length is None:
        raise SystemExit(f"a reply without Content-Length: {head[:200]!r}")
    if length:
        await reader.readexactly(length)
    return status


async def _load(url: str, headers: dict[str, str], *, requests: int, concurrency: int,
                warmup: int) -> tuple[np.ndarray, Counter, float, float]:
    """``requests`` GETs of ``url`` over ``concurrency`` keep-alive connections.

    HTTP/1.1 written and read by hand on asyncio streams, like wrk does in C: an HTTP
    client library spent about 0.6 ms of CPU a request on the 2 cores the servers need
    (about a quarter of a core at 400 req/s), a load the product's clients do not put on
    its servers. Replies must carry Content-Length (both servers send it).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}",
             *[f"{k}: {v}" for k, v in headers.items()]]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    statuses: Counter = Counter()
    conns = [await asyncio.open_connection(parts.hostname, parts.port)
             for _ in range(concurrency)]

    async def worker(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                     left: list[int], record: bool) -> None:
        while left[0] > 0:
            left[0] -= 1
            t = time.perf_counter()
            status = await asyncio.wait_for(_get(*conn, request), 30)
            if record:
                latencies.append(time.perf_counter() - t)
                statuses[status] += 1

    try:
        left = [warmup]
        await asyncio.gather(*(worker(c, left, False) for c in conns))
        left = [requests]
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(c, left, True) for c in conns))
        wall = time.perf_counter() - wall
    finally:
        for _, writer in conns:
            writer.close()
    return np.array(latencies) * 1000, statuses, wall, time.process_time() - cpu


def measure(api: str, server: str, caller: str, *, token: str | None, requests: int,
            concurrency: int, redis_url: str) -> Run:
    _clear_request_windows(redis_url)  # each run starts from an empty sliding window
    url = f"{api}/predictions/{ASSET}?horizon={HORIZON}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    lat, statuses, wall, cpu = asyncio.run(_load(
        url, headers, requests=requests, concurrency=concurrency,
        warmup=max(200, requests // 10)))
    return Run(server, caller, concurrency, len(lat), float(np.percentile(lat, 50)),
               float(np.percentile(lat, 99)), len(lat) / wall,
               sum(n for s, n in statuses.items() if s != 200), cpu / wall)


def _clear_request_windows(redis_url: str) -> None:
    client = cache.sync_client(redis_url)
    try:
        keys = list(client.scan_iter("rwa:ratelimit:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def check_cached(api: str, token: str, *, limiter: bool = True) -> dict[str, Any]:
    """One request: the route answers from the cache, and the limiter ran (or not)."""
    import httpx

    r = httpx.get(f"{api}/predictions/{ASSET}", params={"horizon": HORIZON},
                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
    body = r.json()
    if r.status_code != 200 or body.get("cached") is not True:
        raise SystemExit(f"GET /predictions is not served from the cache: {r.status_code} {body}")
    if ("x-ratelimit-limit" in r.headers) != limiter:
        raise SystemExit(f"the request limiter {'did not run' if limiter else 'ran'} "
                         "(X-RateLimit-Limit header)")
    return {"bytes": len(r.content)}


# -- WebSocket ---------------------------------------------------------------------------
@dataclass
class WsRun:
    server: str
    clients: int
    assets_per_client: int
    tick_rate: float
    ticks: int
    deliveries: int
    expected: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    first_quarter_p50_ms: float  #: a growing backlog shows as a later p50 well above this
    last_quarter_p50_ms: float
    connect_s: float
    client_cpu_share: float
    authenticated_messages: int
    replicas_listening: int

    def line(self) -> str:
        lost = self.expected - self.deliveries
        return (f"  {self.server:<8} {self.clients} clients, {self.deliveries:,} deliveries"
                f"{f' ({lost:,} missing)' if lost else ''}: p50 {self.p50_ms:.1f} ms, "
                f"p90 {self.p90_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms; "
                f"p50 first/last quarter of ticks {self.first_quarter_p50_ms:.1f}/"
                f"{self.last_quarter_p50_ms:.1f} ms (client CPU {self.client_cpu_share:.0%})")


async def _ws_latency(ws_url: str, server: str, token: str, redis_url: str, *, clients: int,
                      per_client: int, tick_rate: float, ticks: int) -> WsRun:
    import aiohttp

    catalog = load_catalog()
    ids = [a.asset_id for a in catalog]
    symbols = {a.asset_id: a.symbol for a in catalog}
    followers: Counter = Counter()
    warm = max(20, int(tick_rate * 2))
    received: list[tuple[int, float]] = []  # (tick number, ms from publish to client)
    authenticated = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    # One connection each: a shared pool limit would queue the sockets behind each other.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        opening = asyncio.Semaphore(32)  # handshakes at a time, so none times out

        async def open_one(i: int) -> aiohttp.ClientWebSocketResponse:
            nonlocal authenticated
            assets = [ids[(i * per_client + j) % len(ids)] for j in range(per_client)]
            async with opening:
                ws = await session.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"},
                                              max_msg_size=0, timeout=aiohttp.ClientWSTimeout(
                                                  ws_receive=None, ws_close=10))
                await ws.send_json({"action": "subscribe", "assets": assets})
                while True:  # "authenticated" comes first where the server checks tokens
                    frame = await asyncio.wait_for(ws.receive(), 60)
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        raise SystemExit(f"WebSocket closed before subscribing: {frame.type.name} "
                                         f"{frame.data} {frame.extra or ''}")
                    msg = json.loads(frame.data)
                    if msg.get("type") == "authenticated":
                        authenticated += 1
                    elif msg.get("type") == "subscribed":
                        break
                    elif msg.get("type") == "error":
                        raise SystemExit(f"WebSocket subscribe refused: {msg}")
            followers.update(assets)
            return ws

        async def receive(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                now = time.time()
                tick = json.loads(msg.data)
                if tick.get("seq", -1) >= warm:
                    received.append((tick["seq"], (now - tick["published_at"]) * 1000))

        t = time.perf_counter()
        sockets = await asyncio.gather(*(open_one(i) for i in range(clients)))
        connect_s = time.perf_counter() - t
        readers = [asyncio.create_task(receive(ws)) for ws in sockets]
        publisher = cache.async_client(redis_url)
        try:
            expected, listening = 0, 0
            loop = asyncio.get_running_loop()
            cpu, wall = time.process_time(), time.perf_counter()
            start = loop.time()
            for seq in range(warm + ticks):
                await asyncio.sleep(max(0.0, start + seq / tick_rate - loop.time()))
                asset = ids[seq % len(ids)]
                now = datetime.now(UTC).isoformat()
                # The live fan-out's message (pipeline/live.py), plus a sequence number.
                body = json.dumps({"asset_id": asset, "symbol": symbols[asset], "time": now,
                                   "price": 100.0 + seq % 7, "nav": None, "source": "bench",
                                   "ingest_time": now, "published_at": time.time(),
                                   "seq": seq})
                listening = await publisher.publish(cache.TICKS_CHANNEL, body)
                if seq >= warm:
                    expected += followers[asset]
            deadline = loop.time() + 10
            while len(received) < expected and loop.time() < deadline:
                await asyncio.sleep(0.05)
            cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
        finally:
            await publisher.aclose()
            for r in readers:
                r.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    seqs = np.array([s for s, _ in received] or [0])
    lat = np.array([ms for _, ms in received] or [np.nan])
    quarter = ticks // 4
    first, last = lat[seqs < warm + quarter], lat[seqs >= warm + ticks - quarter]
    return WsRun(server, clients, per_client, tick_rate, ticks, len(received), expected,
                 *(float(np.percentile(lat, q)) for q in (50, 90, 99)), float(np.max(lat)),
                 _median(first), _median(last), connect_s, cpu_share, authenticated, listening)


def _median(a: np.ndarray) -> float:
    return float(np.percentile(a, 50)) if a.size else float("nan")


def measure_ws(api: str, server: str, token: str, redis_url: str,
               opts: argparse.Namespace) -> WsRun:
    return asyncio.run(_ws_latency(
        api.replace("http", "ws", 1) + "/ws/prices", server, token, redis_url,
        clients=opts.clients, per_client=opts.assets_per_client, tick_rate=opts.tick_rate,
        ticks=opts.ticks))


# -- the run -----------------------------------------------------------------------------
def _raise_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def run_all(opts: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    pg, rd = EmbeddedPostgres(work / "pg"), EmbeddedRedis(work / "redis")
    stack.callback(pg.stop)
    database_url = pg.start()
    stack.callback(rd.stop)
    redis_url = rd.start()
    asyncio.run(seed(database_url, redis_url))
    args = app_args(database_url, redis_url,
                    max_ongoing=max(2000, opts.clients + opts.concurrency + 100))
    args_file = work / "app-args.json"
    args_file.touch(mode=0o600)
    args_file.write_text(json.dumps(args))  # holds the bench's JWT secret: 0600, removed
    log = work / "uvicorn.log"
    n, c = opts.requests, opts.concurrency
    runs: list[Run] = []

    def say(line: str) -> None:
        if not opts.json:
            print(line, flush=True)

    say(f"GET /predictions/{ASSET}?horizon={HORIZON} (cached), {n} requests a run after a "
        f"warm-up; request limiter on unless said")
    ws_heading = (f"WebSocket /ws/prices, enterprise token: {opts.clients} clients, "
                  f"{opts.assets_per_client} assets each, {opts.tick_rate:g} ticks/s on the "
                  f"Redis ticks channel, {opts.ticks} ticks after a warm-up")
    with uvicorn_app(args_file, log) as api:
        token = enterprise_token(api, database_url)
        body = check_cached(api, token)
        for caller, tok, conc in (("enterprise token", token, 1), ("enterprise token", token, c),
                                  ("anonymous", None, c)):
            runs.append(measure(api, "uvicorn", caller, token=tok, requests=n,
                                concurrency=conc, redis_url=redis_url))
            say(runs[-1].line())
        say(ws_heading)
        ws_runs = [measure_ws(api, "uvicorn", token, redis_url, opts)]
        say(ws_runs[-1].line())
    with uvicorn_app(args_file, log, limiter=False) as api:
        check_cached(api, token, limiter=False)
        runs.append(measure(api, "uvicorn", "anonymous, limiter off", token=None, requests=n,
                            concurrency=c, redis_url=redis_url))
        say(runs[-1].line())
    with serve_app(args, num_cpus=opts.ray_cpus, python_proxy=opts.python_proxy) as api:
        check_cached(api, token)
        for caller, tok, conc in (("enterprise token", token, 1), ("enterprise token", token, c),
                                  ("anonymous", None, c)):
            runs.append(measure(api, "Serve", caller, token=tok, requests=n,
                                concurrency=conc, redis_url=redis_url))
            say(runs[-1].line())
        say(ws_heading)
        ws_runs.append(measure_ws(api, "Serve", token, redis_url, opts))
        say(ws_runs[-1].line())
    return {"runs": runs, "ws": ws_runs, "response_bytes": body["bytes"]}


def report(opts: argparse.Namespace, figures: dict[str, Any]) -> dict[str, Any]:
    runs: list[Run] = figures["runs"]
    ws = {w.server: w for w in figures["ws"]}

    def run(server: str, caller: str, concurrency: int) -> Run:
        return next(r for r in runs if (r.server, r.caller, r.concurrency)
                    == (server, caller, concurrency))

    def busy_ms(r: Run) -> float:  # time a request costs where the machine is saturated
        return 1000 / r.requests_per_s

    c = opts.concurrency
    serve1, uv1 = run("Serve", "enterprise token", 1), run("uvicorn", "enterprise token", 1)
    serve_c, uv_c = run("Serve", "enterprise token", c), run("uvicorn", "enterprise token", c)
    uv_anon, uv_off = run("uvicorn", "anonymous", c), run("uvicorn", "anonymous, limiter off", c)
    summary = {
        "serve_p50_ms": serve1.p50_ms, "serve_p99_ms": serve1.p99_ms,
        "serve_requests_per_s": serve_c.requests_per_s,
        "uvicorn_p50_ms": uv1.p50_ms, "uvicorn_p99_ms": uv1.p99_ms,
        "uvicorn_requests_per_s": uv_c.requests_per_s,
        "serve_overhead_latency_x": serve1.p50_ms / uv1.p50_ms,
        "serve_overhead_throughput_x": uv_c.requests_per_s / serve_c.requests_per_s,
        "limiter_ms_per_request": busy_ms(uv_anon) - busy_ms(uv_off),
        "token_ms_per_request": busy_ms(uv_c) - busy_ms(uv_anon),
        "ws_serve_p99_ms": ws["Serve"].p99_ms,
        "ws_uvicorn_p99_ms": ws["uvicorn"].p99_ms,
    }
    return {"machine": {"node": platform.node(), "arch": platform.machine(),
                        "cpus": os.cpu_count(), "python": platform.python_version()},
            "options": vars(opts), "response_bytes": figures["response_bytes"],
            "runs": [asdict(r) for r in runs], "websocket": [asdict(w) for w in ws.values()],
            "summary": summary}


def print_report(out: dict[str, Any], opts: argparse.Namespace) -> None:
    s, m, c = out["summary"], out["machine"], opts.concurrency
    ws = {w["server"]: w for w in out["websocket"]}
    print(f"machine: {m['node']} {m['arch']}, {m['cpus']} CPUs, Python {m['python']}; Ray with "
          f"{opts.ray_cpus} logical CPUs; response {out['response_bytes']:,} bytes")
    proxy = "Python proxy" if opts.python_proxy else "HAProxy"
    print(f"Serve ({proxy} -> ingress), enterprise token: p50 {s['serve_p50_ms']:.2f} ms, "
          f"p99 {s['serve_p99_ms']:.2f} ms at c=1; {s['serve_requests_per_s']:.0f} req/s at "
          f"c={c} (targets: p50 <= 10 ms, >= 500 req/s)")
    print(f"plain uvicorn, same app and caller: p50 {s['uvicorn_p50_ms']:.2f} ms, "
          f"p99 {s['uvicorn_p99_ms']:.2f} ms at c=1; {s['uvicorn_requests_per_s']:.0f} req/s "
          f"at c={c}")
    print(f"Serve overhead: {s['serve_overhead_latency_x']:.1f}x the p50 latency (c=1), "
          f"{s['serve_overhead_throughput_x']:.1f}x fewer req/s (c={c}) (target <= 3x)")
    print(f"request limiter (uvicorn, anonymous, on vs off): {s['limiter_ms_per_request']:+.3f} "
          f"ms a request at c={c} (1/throughput); bearer token check on top of it: "
          f"{s['token_ms_per_request']:+.3f} ms")
    for server in ("Serve", "uvicorn"):
        w = ws[server]
        print(f"tick -> WebSocket client, {server}: p99 {w['p99_ms']:.1f} ms with {w['clients']} "
              f"clients" + (" (target p99 <= 100 ms)" if server == "Serve" else ""))
    w = ws["Serve"]
    print(f"  Serve: {w['clients']} sockets opened and subscribed in {w['connect_s']:.1f} s; "
          f"'authenticated' replies: {w['authenticated_messages']}; replicas on the ticks "
          f"channel: {w['replicas_listening']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_uvicorn":
        _uvicorn_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests a run")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="requests in flight in the throughput runs")
    parser.add_argument("--clients", type=int, default=500, help="WebSocket clients")
    parser.add_argument("--assets-per-client", type=int, default=3)
    parser.add_argument("--tick-rate", type=float, default=20,
                        help="ticks per second in all, round-robin over the catalog")
    parser.add_argument("--ticks", type=int, default=400, help="measured ticks")
    parser.add_argument("--ray-cpus", type=int, default=2, help="Ray's logical CPUs")
    parser.add_argument("--python-proxy", action="store_true",
                        help="Serve's default Python HTTP proxy instead of the HAProxy mode "
                             "the platform runs (serve/serve_env.py)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()

    _raise_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="rwa-bench-api-"))
    stdout = os.dup(1)
    try:
        if opts.json:  # stdout holds the JSON alone: Ray's children print to it too
            sys.stdout.flush()
            os.dup2(2, 1)
        with contextlib.ExitStack() as stack:
            figures = run_all(opts, work, stack)
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
        shutil.rmtree(work, ignore_errors=True)
    out = report(opts, figures)
    if opts.json:
        print(json.dumps(out, indent=2))
    else:
        print_report(out, opts)


if __name__ == "__main__":
    main()
