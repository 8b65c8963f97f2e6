"""Pool workers that never outlive the batch that started them.

A process pool's workers wait for work from their parent; when the parent dies without shutting the pool
down (kill -9, an out-of-memory kill), nothing tells them, and they stay alive holding memory. Each worker
therefore starts with `die_with_parent`: on Linux the kernel sends it SIGKILL when its parent dies
(prctl PR_SET_PDEATHSIG), and on every platform a watcher thread ends it when its parent changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
POLL_SECONDS = 1.0


def die_with_parent() -> None:
    """Process-pool initializer: make this worker exit as soon as its parent process is gone."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the watcher below still works
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="sim-parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if os.getppid() != parent:  # re-parented: the batch process is gone
            os._exit(1)
