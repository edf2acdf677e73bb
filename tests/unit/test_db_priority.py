"""Batch actors lower the priority of the PostgreSQL backend doing their work, and only
when that backend is a local postgres process."""

from __future__ import annotations

import os

from actors.base import deprioritise_db_backend


class _Db:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def fetchval(self, query: str) -> int:
        assert query == "SELECT pg_backend_pid()"
        return self.pid


def test_a_remote_database_is_never_reniced() -> None:
    before = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert not deprioritise_db_backend(_Db(os.getpid()), "postgresql://u:p@db.example:5432/rwa")
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == before


def test_a_local_pid_that_is_not_postgres_is_left_alone() -> None:
    before = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert not deprioritise_db_backend(_Db(os.getpid()), "postgresql://postgres:@/postgres?host=/tmp/x")
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == before
