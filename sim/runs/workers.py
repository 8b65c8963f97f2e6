"""Pool workers that never outlive the batch that started them, and that start warm.

A process pool's workers wait for work from the process that made the pool; when it dies without shutting the
pool down (kill -9, an out-of-memory kill), nothing tells them, and they stay alive holding memory. Each worker
therefore starts with `die_with`: a watcher thread ends it as soon as that process is gone (on Linux through a
pidfd, which becomes readable the moment it exits; elsewhere by polling), and on Linux the kernel also sends it
SIGKILL when its own parent dies (prctl PR_SET_PDEATHSIG). The owner must be watched, not the parent: a fork
server's workers are the server's children, and the server stays up as long as any of them does.

Then it warms up (`warm_up`): a tiny model run through the path of a batch loads the compiled model code
(numba's first use and its cache: 0.3-0.5 s in a process that has not run the model yet) and what a batch's
work items need to be unpickled, so the worker's first stack of a batch costs what the later ones do. Pools
start their workers as they are made (sim.runs.executors), so this happens while the command opens its
store, not inside the batch.
"""

from __future__ import annotations

import ctypes
import os
import select
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
_began = None  # the pool's event this worker sets as it begins a work item (`begin`)
_dropped = None  # the pool's flags of work items no longer wanted, by slot (`begin`)
DROPPED = "dropped"  # what `begin` returns for an item no longer wanted


def start(ready_count=None, spec: dict | None = WARM_UP, owner: int | None = None, began=None,
          dropped=None) -> None:
    """Process-pool initializer: die with `owner` (the process that made the pool; the parent if None), warm
    up on the scenario `spec` (none if None), then count this worker in `ready_count` (a shared integer);
    `began` is an event this worker sets each time it begins a work item sent through `begin`, `dropped` the
    shared flags (bytes) that tell it which items are no longer wanted."""
    global warm, _began, _dropped
    warm = False  # this worker's own warm-up, not one its parent ran before forking it
    _began, _dropped = began, dropped
    die_with(owner)
    if spec is not None:
        warm_up(spec)
    if ready_count is not None:
        with ready_count.get_lock():
            ready_count.value += 1


def begin(fn, slot: int, item):
    """A worker's work item: unless the pool's flag at `slot` says it is no longer wanted (then DROPPED), tell
    the pool's process that this worker has begun it, then fn(item)."""
    if _dropped is not None and _dropped[slot]:
        return DROPPED
    if _began is not None:
        _began.set()
    return fn(item)


def warm_up(spec: dict = WARM_UP) -> None:
    """Run a tiny scenario through a batch's work item (build, stack, kernel, records); never raises: if it
    fails, the worker's first real stack pays for loading the model code instead."""
    global warm
    try:
        from sim.runs import batch, runner
        from sim.scenario import LoadedScenario, parse

        scenario, arms = parse(spec, "<warm-up>")
        tiny = LoadedScenario(scenario=scenario, path="<warm-up>", text="", sha256="", arms=arms)
        batch.run_item(({0: tiny}, [(0, t) for t in runner.tasks(tiny, 1)]), panel=False)
        warm = True
    except Exception:  # noqa: BLE001 - a cold worker is slower on its first stack, nothing else
        pass


def die_with(owner: int | None = None) -> None:
    """Make this process exit as soon as `owner` (by default its parent) is gone."""
    parent = os.getppid()
    owner = parent if owner is None else owner
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the watcher below still works
            pass
    try:
        exited = os.pidfd_open(owner)
    except (AttributeError, OSError):  # not Linux, or the owner is already gone (checked below)
        exited = None
    if os.getppid() != parent or not pid_alive(owner):  # gone before the watch was set up
        os._exit(1)
    threading.Thread(target=_watch, args=(owner, parent, exited), name="sim-owner-watch", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` on this host still runs (True where that cannot be told: Windows, whose
    os.kill(pid, 0) sends Ctrl-C, or another user's process)."""
    if sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _watch(owner: int, parent: int, exited: int | None) -> None:
    while True:
        if exited is not None:
            if select.select([exited], [], [], POLL_SECONDS)[0]:  # the owner has exited
                os._exit(1)
        else:
            time.sleep(POLL_SECONDS)
        if os.getppid() != parent or not pid_alive(owner):  # re-parented, or the owner is gone
            os._exit(1)
