"""Pool workers that never outlive the batch that started them, and that start warm.

A process pool's workers wait for work from their parent; when the parent dies without shutting the pool
down (kill -9, an out-of-memory kill), nothing tells them, and they stay alive holding memory. Each worker
therefore starts with `die_with_parent`: on Linux the kernel sends it SIGKILL when its parent dies
(prctl PR_SET_PDEATHSIG), and on every platform a watcher thread ends it when its parent changes.

Then it warms up (`warm_up`): a tiny model run through the path of a batch loads the compiled model code
(numba's first use and its cache: 0.3-0.5 s in a process that has not run the model yet), so the worker's
first stack of a batch costs what the later ones do. Pools start their workers as they are made
(sim.runs.runner), so this happens while the command opens its store, not inside the batch.
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
# two people, two weeks, both kinds of arm a batch meets most (no support, and classes: group ties)
WARM_UP = {"name": "warm_up", "seed": 0, "weeks": 1, "follow_up_weeks": 1, "population": {"size": 2},
           "arms": {"usual_care": {}, "classes": {"prescription": {"sessions_per_week": 3, "minutes": 50,
                                                                   "intensity": 0.6},
                                                  "support": {"kind": "class", "level": 0.5}}}}
warm = False  # whether this process's warm-up ran through


def start(ready_count=None) -> None:
    """Process-pool initializer: die with the parent, warm up, then count this worker in `ready_count`
    (a shared integer, when given)."""
    die_with_parent()
    warm_up()
    if ready_count is not None:
        with ready_count.get_lock():
            ready_count.value += 1


def warm_up() -> None:
    """Run a tiny model through the path a batch takes (build, stack, kernel, records); never raises: if it
    fails, the worker's first real stack pays for loading the model code instead."""
    global warm
    try:
        from sim.runs import runner
        from sim.scenario import LoadedScenario, parse

        scenario, arms = parse(WARM_UP, "<warm-up>")
        tiny = LoadedScenario(scenario=scenario, path="<warm-up>", text="", sha256="", arms=arms)
        runner.run_pairs([(tiny, t) for t in runner.tasks(tiny, 1)], panel=False)
        warm = True
    except Exception:  # noqa: BLE001 - a cold worker is slower on its first stack, nothing else
        pass


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
