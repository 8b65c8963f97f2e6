"""Claims on runs, so that two `sim run` processes on one scenario and store do not both compute a run.

A batch looks at its runs first (`look`: stored, held by another live process, or free), then claims the free
ones while its workers begin the first of them: each run's row gets `claimed_by` (host:pid) and `lease_until`,
in one transaction (SQLite's BEGIN IMMEDIATE, or row locks on PostgreSQL). Runs another live process holds are
left to it (those it claimed in between are not computed, or not stored if a worker had begun them); once this
batch's own runs are done it waits for those, and computes any whose holder died. A claim is fresh while its
lease runs (renewed every RENEW_SECONDS by a thread) and, on the same host, while its process is alive, so a
batch killed with kill -9 blocks nothing: the next run of the command takes its runs over at once (from another
host: once the lease of LEASE_SECONDS ends). Storing a run clears its claim.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import threading
import time
from concurrent.futures import Executor
from typing import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from sim.runs import executors, workers
from sim.runs import store as st

LEASE_SECONDS = 120.0
RENEW_SECONDS = 30.0
POLL_SECONDS = 2.0


def owner() -> str:
    """This process as a claim holder: host:pid."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _alive(holder: str) -> bool:
    """Whether a holder on this host still runs (a holder elsewhere is judged by its lease alone)."""
    host, _, pid = holder.rpartition(":")
    return host != socket.gethostname()[:100] or not pid.isdigit() or workers.pid_alive(int(pid))


class Claims:
    """The runs one batch holds, with the thread that renews their lease: `start()`, then `release()`."""

    def __init__(self, db: st.Store, keys: dict, scenario_ids: list[int], batch_ids: list[int], seeds: list[int],
                 panel: bool = False):
        """`keys` maps (scenario index, Task) to run keys; ids and seeds are per scenario index (the ids may come
        later, from `as_finished`'s `before`); with `panel`, a run stored without the weekly panel is still to do."""
        self.db, self.keys, self.me, self.panel = db, keys, owner(), panel
        self.scenario_ids, self.batch_ids, self.seeds = scenario_ids, batch_ids, seeds
        self.done_elsewhere = [0] * len(seeds)
        self.mine: set = set()  # the items this process has claimed
        self._open: set = set()  # those of them whose claim storing has not yet cleared (`settle`)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Claims":
        """Start renewing this process's leases; returns self."""
        self._thread = threading.Thread(target=self._renew, name="sim-claims", daemon=True)
        self._thread.start()
        return self

    def settle(self, items) -> None:
        """Note items stored, done or failed: storing a run clears its claim."""
        self._open.difference_update(items)

    def release(self) -> None:
        """Stop renewing and release every claim this process still holds (runs it did not finish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self._open:  # every run claimed was stored: no claim is left (and no scan of the runs table)
            return
        try:
            with self.db.engine.begin() as c:
                c.execute(st.runs.update().where(st.runs.c.claimed_by == self.me)
                          .values(claimed_by=None, lease_until=None))
        except Exception:  # noqa: BLE001 - releasing is a courtesy: a dead holder's claims lapse anyway
            pass

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                with self.db.engine.begin() as c:
                    c.execute(st.runs.update().where(st.runs.c.claimed_by == self.me)
                              .values(lease_until=_now() + dt.timedelta(seconds=LEASE_SECONDS)))
            except Exception:  # noqa: BLE001 - a missed renewal only shortens the lease
                pass

    def take(self, items: list) -> tuple[list, list]:
        """Claim the (scenario index, Task) items: (those this process now holds, those another live process
        holds or has stored meanwhile)."""
        for attempt in range(3):
            try:
                return self._take(items)
            except (IntegrityError, OperationalError):  # another process claimed the same new run at once
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def look(self, items: list) -> tuple[list, list, list]:
        """Sort the items as they stand, claiming nothing: (those stored complete, those another live process
        holds, the others)."""
        done, busy, free = [], [], []
        with self.db.engine.connect() as c:
            found, now = self._rows(c, items, lock=False), _now()
        for item in items:
            row = found.get(self.keys[item])
            (done if row is not None and row.done else busy if self._elsewhere(row, now) else free).append(item)
        return done, busy, free

    def _rows(self, c: sa.Connection, items: list, lock: bool) -> dict:
        """The runs table's rows of the items, by key: claim holder, lease, whether stored complete."""
        found, wanted = {}, [self.keys[x] for x in items]
        stored = sa.exists().where(st.participant_weeks.c.run_id == st.runs.c.id) if self.panel else sa.true()
        for start in range(0, len(wanted), 500):
            q = (sa.select(st.runs.c.key, st.runs.c.claimed_by, st.runs.c.lease_until,
                           sa.and_(st.runs.c.status == "done", stored).label("done"))
                 .where(st.runs.c.key.in_(wanted[start:start + 500])))
            found.update({r.key: r for r in c.execute(q.with_for_update(of=st.runs) if lock else q)})
        return found

    def _elsewhere(self, row, now: dt.datetime) -> bool:
        """Whether a run's row is claimed by another process that is alive and whose lease runs."""
        return (row is not None and row.claimed_by not in (None, self.me) and row.lease_until is not None
                and row.lease_until > now and _alive(row.claimed_by))

    def _take(self, items: list) -> tuple[list, list]:
        if self.db.read_only or not items:
            self.mine.update(items)
            return list(items), []
        now = _now()
        until = now + dt.timedelta(seconds=LEASE_SECONDS)
        mine, others = [], []
        with self.db.engine.begin() as c:
            found = self._rows(c, items, lock=True)
            new, renew = [], []
            for item in items:
                row = found.get(self.keys[item])
                # a run stored since the batch looked (by a process that has let go of it) is not computed again
                if row is not None and row.done or self._elsewhere(row, now):
                    others.append(item)
                    continue
                mine.append(item)
                (renew if row is not None else new).append(item)
            if renew:
                c.execute(st.runs.update().where(st.runs.c.key.in_([self.keys[x] for x in renew]))
                          .values(claimed_by=self.me, lease_until=until))
            if new:
                c.execute(st.runs.insert(), [
                    {"key": self.keys[(i, t)], "scenario_id": self.scenario_ids[i], "batch_id": self.batch_ids[i],
                     "arm": t.arm, "replicate": t.replicate, "seed": t.seed_label(self.seeds[i]),
                     "status": "running", "claimed_by": self.me, "lease_until": until} for i, t in new])
        self.mine.update(mine)
        self._open.update(mine)
        return mine, others

    def wait(self, others: list, panel: bool) -> Iterator[list]:
        """Wait for runs other processes hold: yield, each time some are left to this process (their holder
        died or gave up), those items, now claimed; return when every one is done."""
        told = False
        while others:
            done = self.db.done_keys([self.keys[x] for x in others], with_panel=panel)
            for x in others:
                if self.keys[x] in done:
                    self.done_elsewhere[x[0]] += 1
            others = [x for x in others if self.keys[x] not in done]
            if not others:
                return
            mine, others = self.take(others)
            if mine:
                yield mine
            elif others:
                if not told:
                    print(f"waiting for {len(others)} runs that another process is computing (claims in the runs "
                          "table; they are taken over if it stops)", file=sys.stderr, flush=True)
                    told = True
                time.sleep(POLL_SECONDS)

    def as_finished(self, executor: Executor, fn: Callable, pending: list, items_of: Callable[[list], list],
                    panel: bool, busy: list = (),
                    before: Callable[[], tuple[list[int], list[int]]] | None = None) -> Iterator:
        """executors.as_finished over the work items (`items_of` a list of pending runs; each item a pair whose
        second element is its runs) of the runs this process could claim, then of those left to it by other
        processes, waiting for the rest to be stored by them.

        Runs `busy` (another process held them when the batch looked, `look`) are only waited for. The others are
        claimed while the workers begin the first items, after `before()` (the batch writing its rows; it returns
        the scenario and batch ids); items with no run left to this process are then dropped, and one a worker
        had begun is computed for nothing. Items some of whose runs went elsewhere are computed whole: the caller
        stores only the runs in `mine`."""
        others: list = []

        def claim() -> Callable[[tuple], bool] | None:
            if before is not None:
                self.scenario_ids, self.batch_ids = before()
            others.extend(self.take(pending)[1])
            return (lambda item: not self.mine.isdisjoint(item[1])) if others else None

        yield from executors.as_finished(executor, fn, items_of(pending), meanwhile=claim)
        for left in self.wait(others + list(busy), panel):
            yield from executors.as_finished(executor, fn, items_of(left))
