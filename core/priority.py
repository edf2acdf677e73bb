"""CPU priority of processes: the live path must not wait behind batch work on a small
machine, so batch processes (Spark's JVMs, training, prediction jobs) raise their own
niceness. Raising niceness needs no privilege; nothing here ever lowers it."""

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
