import os
import threading

from core.priority import renice_process


def test_every_existing_thread_is_reniced() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        # A child process keeps the test runner's own priority untouched.
        pid = os.fork()
        if pid == 0:
            t = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
            t.start()
            ok = renice_process(os.getpid(), 12)
            tids = os.listdir(f"/proc/{os.getpid()}/task")
            nices = {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in tids}
            os._exit(0 if ok and nices == {12} and len(tids) >= 2 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert renice_process(os.getpid(), os.getpriority(os.PRIO_PROCESS, 0)) is False
    finally:
        release.set()
        worker.join()
