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


def test_a_process_sharing_its_session_keeps_its_group_priority() -> None:
    """Renicing this test's session would slow every process in it (a Ray worker shares
    the raylet's with the live path): only a session leader's group is touched."""
    from core.priority import renice_own_session

    if os.getsid(0) == os.getpid():
        return  # this process leads its session; the case below cannot be built here
    assert not renice_own_session(os.getpid(), 19)


def test_a_session_leader_gets_its_group_reniced() -> None:
    import subprocess
    import sys
    from pathlib import Path

    from core.priority import renice_own_session

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    try:
        group = Path(f"/proc/{child.pid}/autogroup")
        if not group.exists():
            assert not renice_own_session(child.pid, 10)  # no autogroups on this kernel
            return
        assert renice_own_session(child.pid, 10)
        assert group.read_text().split()[-1] == "10"
        assert not renice_own_session(child.pid, 5)  # never lowered
        assert group.read_text().split()[-1] == "10"
    finally:
        child.kill()
        child.wait()
