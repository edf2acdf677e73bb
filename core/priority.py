"""CPU priority of processes: the live path must not wait behind batch work on a small
machine, so batch processes (Spark's JVMs, training, prediction jobs) raise their own
niceness. Raising niceness needs no privilege; nothing here ever lowers it.

Niceness only ranks threads within one scheduling group. With the kernel's autogroup
scheduling (``kernel.sched_autogroup_enabled``, on by default on desktop and many
server kernels) every session is a group of its own that shares the CPU equally with
every other group whatever its threads' niceness; PostgreSQL calls ``setsid()`` in each
backend, so a backend running a batch upsert weighed as much as all of Ray's processes
together until its group was reniced too (:func:`renice_own_session`).
"""

from __future__ import annotations

import os


def renice_process(pid: int, niceness: int) -> bool:
    """Raise the niceness of every thread of ``pid`` to at least ``niceness``.

    Linux keeps niceness per thread, so renicing only the process id would leave the
    threads that already exist (a JVM's workers, gRPC pools) at their old priority.
    Threads created later inherit it from their (now reniced) creators.

    Returns:
        Whether any thread changed.
    """
    changed = False
    task_dir = f"/proc/{pid}/task"
    tids = [int(t) for t in os.listdir(task_dir)] if os.path.isdir(task_dir) else [pid]
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
                changed = True
        except (ProcessLookupError, PermissionError):
            continue  # the thread ended meanwhile
    return changed


def renice_own_session(pid: int, niceness: int) -> bool:
    """Raise the autogroup niceness of ``pid``'s session to at least ``niceness``, when
    ``pid`` leads a session of its own, as each PostgreSQL backend does.

    A process in a shared session (a Ray worker shares the raylet's with the live path)
    is left alone: its group's niceness would slow every process of that session.
    Nothing happens where the kernel has no autogroups.

    Returns:
        Whether the group's niceness changed.
    """
    path = f"/proc/{pid}/autogroup"
    try:
        if os.getsid(pid) != pid:
            return False
        with open(path) as f:  # e.g. "/autogroup-4065 nice 0"
            current = int(f.read().split()[-1])
        if current >= niceness:
            return False
        with open(path, "w") as f:
            f.write(str(niceness))
        return True
    except (OSError, ValueError, IndexError):
        return False  # no autogroup support, or the process ended meanwhile
