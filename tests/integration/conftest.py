"""The real platform, started once per test session exactly as a user starts it:
``rwa up`` in a subprocess, with every service embedded under a temporary RWA_HOME.

Tests talk to it over its public surfaces (REST, WebSocket, Kafka, PostgreSQL,
Redis, the lake). At the end the fixture sends SIGTERM and checks that the launcher
exits cleanly and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from rwa.embedded import free_port
from tests.fakes import tradingeconomics as te_fake
from tests.fakes.server import FakeProvider

T = TypeVar("T")

START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 180


@dataclass
class Platform:
    home: Path
    api_url: str
    database_url: str
    redis_url: str
    kafka_bootstrap: str
    ray_address: str
    lake_root: Path
    pids: dict[str, int]
    env: dict[str, str]
    #: A local Trading Economics the platform's keyed source talks to (its real format).
    te: FakeProvider

    #: The account the WebSocket tests sign in as (free tier), made on first use.
    ws_account: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return self.api_url.replace("http", "ws", 1) + "/ws/prices"

    def access_token(self) -> str:
        """A fresh access token of a free-tier account (registered on first use): the
        WebSocket wants one, and tokens live minutes while the session lives longer."""
        if not self.ws_account:
            email = f"ws-{uuid.uuid4().hex[:10]}@example.com"
            creds = {"email": email, "password": "Treasury-Ladder-2026!"}
            r = httpx.post(f"{self.api_url}/auth/register", json=creds, timeout=30)
            assert r.status_code == 201, r.text
            self.ws_account.update(creds)
        r = httpx.post(f"{self.api_url}/auth/login", json=self.ws_account, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def ws_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}

    def sql(self, query: str, *args: Any) -> list[dict[str, Any]]:
        import asyncpg

        async def run() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.database_url)
            try:
                return [dict(r) for r in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())


def wait_until(check: Callable[[], T | None], *, timeout_s: float, what: str,
               interval_s: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # the platform may still be warming up
            last_error = e
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


def _descendants_alive(pids: dict[str, int], home: Path) -> list[str]:
    alive = [f"{name} (pid {pid})" for name, pid in pids.items() if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmd and proc.info["pid"] != os.getpid():
            alive.append(f"{cmd[:80]} (pid {proc.info['pid']})")
    return alive


@pytest.fixture(scope="session")
def trading_economics() -> Iterator[FakeProvider]:
    """One keyed provider switched on, against a local server in its format."""
    recent = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT00:00:00")
    rows = [*te_fake.ROWS, te_fake.row("United States", "Inflation Rate", recent, 2.9)]
    with FakeProvider(te_fake.TradingEconomicsFake(rows)) as fake:
        yield fake


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory,
             trading_economics: FakeProvider) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("rwa")
    env = os.environ | {
        "RWA_HOME": str(home),
        "RWA_API__PORT": str(free_port()),
        "RWA_KAFKA__PORT": str(free_port()),
        "RWA_RAY__DASHBOARD_PORT": str(free_port()),
        # 30 days of hourly history: enough for daily ARIMA, quick to push through.
        "RWA_SIMULATOR__HISTORY_HOURS": str(24 * 30),
        "RWA_PIPELINE__INTERVAL_S": "3",
        "RWA_SENTIMENT__INTERVAL_S": "10",
        "RWA_PIPELINE__BRONZE_FLUSH_S": "1",
        # The tests poll the API anonymously from one address; the request limits have
        # tests of their own (tests/integration/test_auth.py).
        "RWA_TIERS__FREE__REQUESTS_PER_MINUTE": "100000",
        # A one-second grid makes gaps and duplicates after an actor kill visible fast.
        "RWA_SOURCES__ONCHAIN_SIM__INTERVAL_S": "1",
        "RWA_SOURCES__TRADINGECONOMICS__ENABLED": "true",
        "RWA_SOURCES__TRADINGECONOMICS__API_KEY": te_fake.KEY,
        "RWA_SOURCES__TRADINGECONOMICS__BASE_URL": trading_economics.url,
        "RWA_SOURCES__TRADINGECONOMICS__INTERVAL_S": "2",
        "RWA_SOURCES__TRADINGECONOMICS__LOOKBACK_DAYS": str(3 * 365),
        "RAY_AUTH_MODE": "token",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(name, None)
    log_path = home / "rwa-up.out"
    out = open(log_path, "wb")
    rwa = Path(sys.executable).parent / "rwa"
    proc = subprocess.Popen([str(rwa), "up"], stdout=out, stderr=subprocess.STDOUT, env=env)

    def started() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"rwa up exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        return "first live tick" in log_path.read_text(errors="replace")

    pids: dict[str, int] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not started():
            if time.monotonic() > deadline:
                raise RuntimeError(f"rwa up did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        info = json.loads((home / "run" / "stack.json").read_text())
        plat = Platform(
            home=home, api_url=info["api_url"], database_url=info["database_url"],
            redis_url=info["redis_url"], kafka_bootstrap=info["kafka_bootstrap"],
            ray_address=info["ray_address"], lake_root=home / "lake", pids=info["pids"],
            env=env, te=trading_economics)
        pids.update(plat.pids)
        assert httpx.get(f"{plat.api_url}/health", timeout=10).status_code == 200
        yield plat
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        out.close()
        leftovers = wait_until_gone(home, pids)
        assert rc == 0, f"rwa up exited with {rc} on SIGTERM:\n{log_path.read_text()[-3000:]}"
        assert not leftovers, f"processes left running after rwa up stopped: {leftovers}"


def wait_until_gone(home: Path, pids: dict[str, int], timeout_s: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        alive = _descendants_alive(pids, home)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)
