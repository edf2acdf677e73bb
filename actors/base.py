"""What every long-lived actor shares: a supervised loop in a background thread, error
counting by kind, and a heartbeat in Redis that ``/health`` and ``rwa status`` read.

The loop starts in the constructor on purpose: when Ray restarts a dead actor it runs
the constructor again and nothing else, so the actor must resume by itself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from core import cache
from core.priority import renice_own_session, renice_process

log = logging.getLogger(__name__)


#: Niceness of batch actors (pipeline, predictions): below the live path, above Spark.
BATCH_NICENESS = 10


def run_as_batch(niceness: int = BATCH_NICENESS) -> None:
    """Lower this process's CPU priority so that bursts of batch work never delay ticks.

    Raising niceness needs no privilege; it is never lowered here.
    """
    renice_process(os.getpid(), niceness)


def deprioritise_db_backend(db: Any, dsn: str, niceness: int = BATCH_NICENESS) -> bool:
    """Lower the CPU priority of the PostgreSQL backend serving ``db``'s connection.

    A batch actor's upserts run in that backend, not in the actor, so renicing the actor
    alone leaves its heaviest work competing with the live path. The backend's own
    session (its autogroup) is reniced as well: there, thread niceness alone changes
    nothing (see :mod:`core.priority`). Only for a database on this machine (a
    unix-socket DSN, as the embedded one is), and only if the pid really is a postgres
    process: a remote server's pid means nothing here.
    """
    if "host=/" not in dsn and "@/" not in dsn:
        return False
    import psutil

    pid = db.fetchval("SELECT pg_backend_pid()")
    try:
        if "postgres" not in psutil.Process(pid).name():
            return False
    except psutil.Error:
        return False
    threads = renice_process(pid, niceness)
    group = renice_own_session(pid, niceness)
    return threads or group


class Heartbeat:
    def __init__(self, redis_url: str, component: str) -> None:
        self.component = component
        self._redis = cache.sync_client(redis_url)

    def beat(self, figures: dict[str, Any]) -> None:
        try:
            self._redis.set(
                cache.heartbeat_key(self.component),
                json.dumps({"component": self.component, "at": time.time(), **figures}),
                ex=cache.HEARTBEAT_TTL_S,
            )
        except Exception as e:  # a Redis outage must not stop the work itself
            log.warning("heartbeat of %s failed: %s", self.component, e)


class Wait(float):
    """Seconds a step asks its loop to wait before the next call."""


class SupervisedLoop:
    """Calls ``step`` until stopped; an exception is counted, logged and backed off.

    ``step`` may return a :class:`Wait` (a source that is caught up, a provider's
    Retry-After); otherwise the loop waits ``idle_s``.

    The heartbeat has its own thread so that a long step (Spark starting, a training
    run) still shows the actor alive, with ``step_running_s`` telling how long it has
    been busy.
    """

    def __init__(self, name: str, step: Callable[[], Any], *, heartbeat: Heartbeat,
                 figures: Callable[[], dict[str, Any]], idle_s: float = 0.0,
                 beat_every_s: float = 2.0) -> None:
        self.name = name
        self._step = step
        self._heartbeat = heartbeat
        self._figures = figures
        self._idle_s = idle_s
        self._beat_every_s = beat_every_s
        self._stop = threading.Event()
        self._step_started: float | None = None
        self.errors: dict[str, int] = {}
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._beats = threading.Thread(target=self._beat, name=f"{name}-heartbeat", daemon=True)
        self._thread.start()
        self._beats.start()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            self._step_started = time.monotonic()
            wait: float | None = None
            try:
                result = self._step()
                if isinstance(result, Wait):
                    wait = float(result)
                backoff = 0.5
            except Exception as e:
                kind = type(e).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
                log.exception("%s step failed (%s); retrying in %.1f s", self.name, kind, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                self._step_started = None
            wait = self._idle_s if wait is None else wait
            if wait > 0:
                self._stop.wait(wait)

    def _beat(self) -> None:
        while not self._stop.is_set():
            started = self._step_started
            busy = round(time.monotonic() - started, 1) if started else 0.0
            try:
                figures = self._figures()
            except Exception as e:  # figures are best effort; the beat itself matters
                figures = {"figures_error": type(e).__name__}
            self._heartbeat.beat({"errors": dict(self.errors), "step_running_s": busy, **figures})
            self._stop.wait(self._beat_every_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self._beats.join(timeout_s)
