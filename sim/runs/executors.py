"""Where runs are computed: in this process, in a local pool of which this process is one lane, or on Dask."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import threading
import time
import weakref
from collections import deque
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterable, Iterator, TypeVar

from sim.cli_defaults import EXECUTORS
from sim.runs import spill, workers

T = TypeVar("T")
RESULT_PIPE_BYTES = 1 << 20  # a local pool's result pipe: a stack's records fit whole when they cannot go by file
SWITCH_SECONDS = 0.001  # the interpreter's switch interval while this process computes beside its workers
HANDOVER_SECONDS = 0.005  # how long this process waits, at most, for a worker to begin the first items it was sent
DROP_SLOTS = 4096  # a pool's flags of items no longer wanted: a slot is reused after this many items


class _Serial(Executor):
    """In-process executor with the concurrent.futures interface (--jobs 1, debugging, tests)."""

    def submit(self, fn, /, *args, **kwargs):
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future (Ctrl-C is not)
            f.set_exception(e)
        return f


class _Pool(ProcessPoolExecutor):
    """A local pool of `jobs` lanes: this process and jobs - 1 worker processes, which start and warm up on
    `warm_up` (sim.runs.workers.start; this process on a thread of its own) as it is made. Through `as_finished`
    and `map` this process computes work items too, between storing those the workers finish, and the workers'
    run records come back by file (sim.runs.spill); `submit` sends an item to the workers alone, its result
    through the pipe."""

    # A batch's own process stores every run; with a worker per core it would also take CPU from them, a third
    # process on two cores. As one of the lanes it computes what the workers have not yet taken whenever it has
    # nothing to store. The workers start by the platform's default method (fork on Linux before Python 3.14,
    # a fork server from 3.14): forked ones are ready in 0.2-0.3 s, where spawned ones, or a fork server's,
    # import everything first (1.5-2 s on two cores, longer than a small batch takes). The same 40-run batch
    # on a pool made before it takes the same time either way (docs/performance.md).

    def __init__(self, jobs: int, warm_up: dict | None = workers.WARM_UP):
        context = multiprocessing.get_context()
        self.jobs = jobs
        try:  # the folder the workers write their results to (sim.runs.spill); without one, the pipe
            self.spill: str | None = spill.folder()
        except OSError:
            self.spill = None
        self.ready_count = context.Value("i", 0)  # workers past their warm-up
        self.began = context.Event()  # set by a worker as it begins a work item (workers.begin)
        # an item's flag, set when it is dropped: one the pool's queue has already handed to a worker (so its
        # future can no longer be cancelled) is then skipped by the worker (workers.begin)
        self.dropped = context.Array("b", DROP_SLOTS, lock=False)
        self._slots = itertools.count()
        try:
            super().__init__(max_workers=jobs - 1, mp_context=context, initializer=workers.start,
                             initargs=(self.ready_count, warm_up, os.getpid(), self.began, self.dropped))
        except BaseException:
            if self.spill is not None:
                spill.remove(self.spill)
            raise
        # Workers start at the first submit (spawn: one per submit): one no-op per worker now, not waited for,
        # starts them all while the caller goes on (opens its store), not inside its batch.
        for _ in range(jobs - 1):
            self.submit(int)
        _widen(self._result_queue._reader)
        if warm_up is not None:  # a lane too: this process loads the compiled model meanwhile, not in the batch
            threading.Thread(target=workers.warm_up, args=(warm_up,), name="sim-warm-up", daemon=True).start()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Executor.shutdown, then the pool's results folder removed with any result not read."""
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if self.spill is not None:
            spill.remove(self.spill)

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Executor.map, with this process computing items too; results in order (items start when the first
        result is asked for, not at the call)."""
        if timeout is not None or chunksize != 1:
            return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)
        return self._in_order(fn, list(zip(*iterables)))

    def _in_order(self, fn, args: list[tuple]) -> Iterator:
        ready, k = {}, 0
        for finished in _shared(self, partial(_star, fn), list(enumerate(args))):
            ready.update((i, fut) for (i, _), fut in finished)
            while k in ready:
                yield ready.pop(k).result()
                k += 1


def _star(fn, item):
    return fn(*item[1])


def _widen(reader) -> None:
    """Make the pipe under a pool's result queue 1 MiB, where the system allows it."""
    # A worker's result is written through this pipe (64 KiB by default) while this process's queue thread reads
    # it; when this process is computing, that thread waits for the interpreter, so a worker with a bigger
    # result than the pipe holds waits too, instead of taking its next item. Run records normally come by file
    # (sim.runs.spill); this is for those that cannot, and for other results (Linux; else the default).
    try:
        import fcntl

        fcntl.fcntl(reader.fileno(), fcntl.F_SETPIPE_SZ, RESULT_PIPE_BYTES)
    except (ImportError, AttributeError, OSError):  # not Linux, or over /proc/sys/fs/pipe-max-size: as it was
        pass


def ready(pool: Executor, timeout: float = 120.0) -> bool:
    """Wait until a local pool's workers have all started and warmed up (True at once for other executors);
    False if that took longer than `timeout` seconds, or the pool is broken (a worker died)."""
    count = getattr(pool, "ready_count", None)
    deadline = time.monotonic() + timeout
    while count is not None:
        if pool._broken:  # a worker died, in its start or since
            return False
        if count.value >= pool._max_workers:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def workers_of(pool: Executor) -> int:
    """How many runs an executor works on at once (1 in-process; a local pool's lanes, this process included)."""
    if isinstance(pool, _Serial):
        return 1
    if isinstance(pool, _Pool):
        return pool.jobs
    n = getattr(pool, "_max_workers", None)
    if n is None and hasattr(pool, "_client"):  # dask's ClientExecutor
        n = sum(pool._client.nthreads().values())
    return max(int(n or 1), 1)


def as_finished(pool: Executor, fn: Callable[[T], object], items: Iterable[T],
                meanwhile: Callable[[], Callable[[T], bool] | None] | None = None) -> Iterator[list[tuple[T, Future]]]:
    """Yield, each time runs have finished, those (item, future of fn(item)) that finished since the last time.

    `meanwhile()` is called once, as soon as the workers have their first items and before this process computes
    any, so that what it does there (a batch writing its rows and claiming its runs) costs the workers nothing; if
    it returns a function, the items that function rejects are dropped: not computed, or, if a worker has begun
    one already, its result thrown away, never yielded.

    In-process, items run one at a time as they are asked for, so the caller stores each run before the
    next starts (a batch killed midway keeps what it finished); pools get every item at once, and a local
    pool's own process computes those its workers have not started (`_shared`).
    """
    if isinstance(pool, _Serial):
        keep = meanwhile() if meanwhile is not None else None
        for item in items:
            if keep is None or keep(item):
                yield [(item, pool.submit(fn, item))]
        return
    if isinstance(pool, _Pool):
        yield from _shared(pool, fn, list(items), meanwhile)
        return
    futures = {pool.submit(fn, item): item for item in items}
    try:
        keep = meanwhile() if meanwhile is not None else None
        for fut in [f for f, item in futures.items() if keep is not None and not keep(item)]:
            del futures[fut]
            fut.cancel()
        while futures:
            wait(futures, return_when=FIRST_COMPLETED)
            # dropped here, so a finished run's records are freed once stored
            yield [(futures.pop(f), f) for f in [f for f in futures if f.done()]]
    finally:  # the caller stopped early (an error while storing): runs not yet started are not started
        for fut in futures:
            fut.cancel()


def _shared(pool: _Pool, fn: Callable[[T], object], items: list[T],
            meanwhile: Callable[[], Callable[[T], bool] | None] | None = None) -> Iterator[list[tuple[T, Future]]]:
    """as_finished on a local pool: this process computes items in order until the workers are ready (warmed up),
    then sends them all that is left after the one it computes next and waits until a worker has begun one (at most
    HANDOVER_SECONDS); each time the caller asks for more, it takes back the first item no worker has started,
    computes it, and yields it with what the workers finished meanwhile (if they finished nothing and another item
    is left to take, it keeps it for the next yield); when none is left to take, it waits for the workers. Before
    the workers are ready, or if the pool breaks before the items are sent, this process computes them, yielding
    each as it finishes."""
    # A future that no worker has taken can be cancelled, so this process and the workers take items from one
    # queue, in order, and neither waits for the other. Items are not sent before the workers are ready: the
    # pool's queue hands a worker up to three at once, and those would wait for its start (0.2 s to 2 s)
    # while this process had nothing left to do.
    unsent, order, futures, held = deque(items), deque(), {}, []
    slot: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a sent item's flag in pool.dropped, by future
    # run records come back by file, read by this thread when it yields them (sim.runs.spill)
    sent = partial(workers.begin, fn if pool.spill is None else partial(spill.spilled, fn, pool.spill))
    with _sharing():
        try:
            while unsent or futures:
                # this process's own item first, the rest sent after it: sent together, the pool's queue may hand
                # the workers the first ones before this process asks for one back
                mine = unsent.popleft() if unsent else None
                if unsent and ready(pool, timeout=0):
                    pool.began.clear()
                    try:
                        while unsent:
                            k = next(pool._slots) % DROP_SLOTS
                            pool.dropped[k] = 0
                            fut = pool.submit(sent, k, unsent[0])
                            futures[fut], slot[fut] = unsent.popleft(), k
                            order.append((fut, futures[fut]))
                    except BrokenProcessPool:  # a worker died: what is not sent is computed here
                        pass
                    # the pool's two threads hand the first items over while this process waits (about 1 ms);
                    # begun at once, its own work would hold the interpreter they need, and the worker began
                    # 1-10 ms later
                    pool.began.wait(HANDOVER_SECONDS)
                if meanwhile is not None:
                    keep, meanwhile = meanwhile(), None
                    if keep is not None:
                        mine = mine if mine is not None and keep(mine) else None
                        unsent = deque(item for item in unsent if keep(item))
                        for fut in [f for f, item in futures.items() if not keep(item)]:
                            del futures[fut]
                            pool.dropped[slot[fut]] = 1  # a worker handed it skips it
                            if not fut.cancel():  # handed to a worker: its result (if begun) is thrown away
                                fut.add_done_callback(_discard)
                        order = deque((fut, item) for fut, item in order if fut in futures)
                while mine is None and order:  # workers take items in order: those before are theirs
                    fut, item = order.popleft()
                    if fut.cancel():
                        del futures[fut]
                        mine = item
                if mine is None and futures:
                    wait(futures, return_when=FIRST_COMPLETED)
                if mine is not None:
                    held.append((mine, _Serial().submit(fn, mine)))
                landed = [f for f in futures if f.done()]
                held += [(futures.pop(f), _landed(f)) for f in landed]
                # this process's own runs wait for the workers' next ones while it has items left to take, so the
                # caller stores more at a time (a batch: fewer transactions); once none is left, they go at once
                # (rarely, a worker takes the last one between this look and the take-back: then with its result).
                # With no future left this yields, so nothing is held when the loop ends.
                if landed or not futures or not any(not f.running() and not f.done() for f, _ in order):
                    if held:
                        yield held
                    held = []  # so a finished run's records are freed once stored
            if meanwhile is not None:  # no items at all
                meanwhile()
        finally:  # the caller stopped early (an error while storing): runs not yet started are not started,
            for fut in futures:  # and the files of those a worker had taken are removed once they finish
                pool.dropped[slot[fut]] = 1
                if not fut.cancel():
                    fut.add_done_callback(_discard)


def _discard(fut: Future) -> None:
    if not fut.cancelled() and fut.exception() is None:
        spill.discard(fut.result())


def _landed(fut: Future) -> Future:
    """A finished worker's future, its records read from the pool's folder (spill.read) by this thread."""
    out: Future = Future()
    try:
        out.set_result(spill.read(fut.result()))
    except Exception as e:  # noqa: BLE001 - the item's own error, handed on as the future held it
        out.set_exception(e)
    return out


_shares, _interval = 0, sys.getswitchinterval()  # _shared generators open in this process; the interval before


@contextmanager
def _sharing() -> Iterator[None]:
    """The interpreter's switch interval at SWITCH_SECONDS at most while this process computes beside its workers."""
    # While this process computes, the pool's queue threads need the interpreter to hand the workers their next
    # item and to read their results: a shorter switch interval (5 ms by default) gets it to them sooner. Counted,
    # so that generators closed in any order restore the interval once, when the last one closes.
    global _shares, _interval
    if _shares == 0:
        _interval = sys.getswitchinterval()
        sys.setswitchinterval(min(_interval, SWITCH_SECONDS))
    _shares += 1
    try:
        yield
    finally:
        _shares -= 1
        if _shares == 0:
            sys.setswitchinterval(_interval)


@contextmanager
def executor(kind: str = "processes", jobs: int = 1, scheduler: str | None = None) -> Iterator[Executor]:
    """A concurrent.futures executor: in-process, a local pool of `jobs` lanes, or Dask distributed.

    Dask: connects to `scheduler` (tcp://host:port) if given, else starts a LocalCluster of `jobs`
    single-threaded worker processes; tasks are impure (never deduplicated) and retried when a
    worker dies.
    """
    if kind == "serial" or (kind == "processes" and jobs <= 1):
        yield _Serial()
    elif kind == "processes":
        with _Pool(jobs) as pool:
            yield pool
    elif kind == "dask":
        from distributed import Client, LocalCluster

        cluster = None if scheduler else LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                      dashboard_address=None)
        try:
            with Client(scheduler or cluster, timeout="20s") as client:
                yield client.get_executor(pure=False, retries=3)
        finally:
            if cluster is not None:
                cluster.close()
    else:
        raise ValueError(f"executor {kind!r} is not one of {', '.join(EXECUTORS)}")
