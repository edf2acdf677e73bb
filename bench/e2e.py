"""Tick → WebSocket latency, end to end through the real platform.

Starts ``rwa up`` in a temporary RWA_HOME (or uses a running one with --api), subscribes
one WebSocket client to every asset and measures, for each tick, the time from the
simulator stamping it (the envelope's ingest_time) to the client receiving it: Kafka
produce → fan-out actor → Redis pub/sub → Serve ingress → WebSocket.

    .venv/bin/python bench/e2e.py [--ticks 1000] [--tick-interval 0.25] [--api URL --token T]

The WebSocket wants an access token. For the platform it starts, the benchmark signs one
for an enterprise-tier service account with the platform's own secret (as ``rwa up``'s
first-tick probe does); with --api, pass the access token of an account whose tier
follows the whole catalog (else it follows as many assets as the tier allows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.catalog import load_catalog
from core.settings import Settings
from rwa.embedded import free_port
from rwa.stack import StackInfo, local_jwt_secret
from serve.auth import service_accounts


def start_platform(tick_interval: float) -> tuple[subprocess.Popen, str, Path]:
    home = Path(tempfile.mkdtemp(prefix="rwa-bench-"))
    port = free_port()
    env = os.environ | {
        "RWA_HOME": str(home), "RWA_API__PORT": str(port), "RWA_KAFKA__PORT": str(free_port()),
        "RWA_RAY__DASHBOARD_PORT": str(free_port()), "RWA_SIMULATOR__HISTORY_HOURS": "0",
        "RWA_SIMULATOR__TICK_INTERVAL_S": str(tick_interval),
    }
    log = open(home / "rwa-up.out", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "rwa"), "up"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while "first live tick" not in (home / "rwa-up.out").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"rwa up failed:\n{(home / 'rwa-up.out').read_text()[-2000:]}")
        time.sleep(0.5)
    return proc, f"http://127.0.0.1:{port}", home


def wait_steady(api: str, timeout_s: float = 300) -> None:
    """Measure the steady state: wait until Spark is up rather than timing its start-up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pipeline = httpx.get(f"{api}/health", timeout=5).json()["components"]["pipeline"]
            if pipeline.get("state") == "streaming" and not pipeline.get("step_running_s"):
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(1)
    print("warning: Spark did not reach a steady state; measuring anyway")


def bench_token(home: Path) -> str:
    """An access token for the benchmark's enterprise-tier service account on the
    platform started in ``home``, signed with that platform's secret."""
    info = StackInfo.read(home / "run")
    assert info is not None and info.database_url, "the started platform wrote no stack.json"
    auth = Settings(home=home).auth
    if auth.jwt_secret is None:
        auth = auth.model_copy(update={"jwt_secret": local_jwt_secret(home)})
    return asyncio.run(service_accounts.access_token(info.database_url, auth, "bench-e2e",
                                                     tier="enterprise", ttl_s=3600))


def measure(api: str, token: str, ticks: int) -> tuple[np.ndarray, np.ndarray]:
    ids = [a.asset_id for a in load_catalog()]
    latencies: list[float] = []
    push_legs: list[float] = []
    # max_queue=None: never stop reading, or a full queue would hide the close frame.
    with connect(api.replace("http", "ws", 1) + "/ws/prices", open_timeout=30,
                 max_queue=None, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        hello = json.loads(ws.recv(timeout=30))
        if hello["max_assets"] < len(ids):
            print(f"note: the {hello['tier']} tier follows {hello['max_assets']} of "
                  f"{len(ids)} assets")
        ws.send(json.dumps({"action": "subscribe", "assets": ids[:hello["max_assets"]]}))
        while len(latencies) < ticks:
            msg = json.loads(ws.recv(timeout=30))
            received = time.time()
            if "price" in msg and msg.get("ingest_time"):
                sent = datetime.fromisoformat(msg["ingest_time"]).timestamp()
                latencies.append((received - sent) * 1000)
                push_legs.append((received - msg["published_at"]) * 1000)
    return np.array(latencies), np.array(push_legs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--tick-interval", type=float, default=0.25,
                        help="seconds between simulator rounds (one tick per asset per round)")
    parser.add_argument("--api", help="use a running platform instead of starting one")
    parser.add_argument("--token", help="with --api: an access token for the WebSocket")
    args = parser.parse_args()
    if args.api and not args.token:
        parser.error("--api needs --token (an access token from POST /auth/login)")

    proc = None
    api, token = args.api, args.token
    if api is None:
        proc, api, home = start_platform(args.tick_interval)
        print(f"started rwa up in {home}")
    try:
        if token is None:
            token = bench_token(home)
        wait_steady(api)
        measure(api, token, 50)  # warm-up: connections, caches, JIT-less first paths
        lat, push = measure(api, token, args.ticks)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=180)
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"tick -> WebSocket latency over {len(lat)} ticks: p50 {np.percentile(lat, 50):.1f} ms, "
          f"p90 {np.percentile(lat, 90):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, "
          f"max {lat.max():.1f} ms (target p99 <= 100 ms)")
    print(f"  of which Redis publish -> client (Serve push): p50 {np.percentile(push, 50):.1f} ms, "
          f"p99 {np.percentile(push, 99):.1f} ms")


if __name__ == "__main__":
    main()
