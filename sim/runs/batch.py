"""A batch: a scenario's pending runs sent to an executor, each finished run stored by this (single) writer."""

from __future__ import annotations

import sys
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

from tqdm import tqdm

from sim.runs import claims, executors, runner, store
from sim.scenario import LoadedScenario


@dataclass
class BatchOutcome:
    """What a batch did and what it cost."""

    batch_id: int
    total: int
    skipped: int
    failed: int
    wall_seconds: float
    store_seconds: float

    @property
    def store_share(self) -> float:
        """Share of the batch's wall time spent writing to the store."""
        return self.store_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class Progress:
    """A tqdm bar on a terminal; plain log lines (at most every `every` seconds) otherwise."""

    def __init__(self, name: str, total: int, every: float = 10.0, stream=None):
        self.stream = stream or sys.stderr
        self.name, self.total, self.done, self.failed = name, total, 0, 0
        self.start = self.last = time.monotonic()
        self.every = every
        self.bar = tqdm(total=total, desc=name, unit="run", file=self.stream, dynamic_ncols=True) \
            if self.stream.isatty() else None

    def update(self, failed: bool) -> None:
        """Count one finished run."""
        self.done += 1
        self.failed += failed
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update()
            return
        now = time.monotonic()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"[{self.name}] {self.done}/{self.total} runs done, {self.failed} failed, "
                  f"elapsed {now - self.start:.0f}s, ETA {eta:.0f}s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_item(item: tuple[dict[int, LoadedScenario], list[tuple[int, runner.Task]]], panel: bool):
    """A batch's work item: the records of a stack of tasks of scenarios that share their structure (module
    level, so process pools can pickle it)."""
    scenarios, pairs = item
    return runner.run_pairs([(scenarios[i], t) for i, t in pairs], panel=panel)


def run_batch(loaded: LoadedScenario, db: store.Store, executor: Executor, replicates: int,
              panel: bool = False, command: str = "", executor_name: str = "",
              stack_runs: int = runner.STACK_RUNS) -> BatchOutcome:
    """Run every arm x replicate of the scenario not yet stored; store each as it finishes."""
    return run_batches([loaded], db, executor, replicates, panel, command, executor_name, stack_runs=stack_runs)[0]


def run_batches(loaded: list[LoadedScenario], db: store.Store, executor: Executor, replicates: int,
                panel: bool = False, command: str = "", executor_name: str = "",
                label: str | None = None, stack_runs: int = runner.STACK_RUNS) -> list[BatchOutcome]:
    """Run the pending arm x replicate tasks of several scenarios (a sweep's points) through one executor,
    one batch per scenario, in stacks of at most `stack_runs` runs advanced together; each finished run is
    stored as its stack arrives, by this single writer."""
    start = time.perf_counter()
    keys = {(i, t): store.run_key(ls.sha256, t.arm, t.replicate, t.seed_label(ls.scenario.seed))
            for i, ls in enumerate(loaded) for t in runner.tasks(ls, replicates)}
    held = claims.Claims(db, keys, [], [], [ls.scenario.seed for ls in loaded], panel)  # ids: begin()
    # with --record participants-weekly, runs stored without the panel run again to add it
    done, busy, pending = held.look(list(keys))
    totals = [(replicates * len(ls.scenario.arms), 0) for ls in loaded]
    for i, _ in done:
        totals[i] = (totals[i][0], totals[i][1] + 1)

    def begin() -> tuple[list[int], list[int]]:  # written while the workers begin their first stacks
        scenario_ids = db.add_scenarios(loaded)
        return scenario_ids, db.start_batches(scenario_ids, replicates, command, executor_name,
                                              "participants-weekly" if panel else "")

    failed, store_seconds = [0] * len(loaded), [0.0] * len(loaded)
    progress = Progress(label or loaded[0].scenario.name, len(pending) + len(busy))
    # pending runs go out in stacks (a sweep's points together when they share their structure), each
    # advanced together by one worker; runs another process is computing are left to it (sim.runs.claims),
    # then waited for
    workers = executors.workers_of(executor)
    shape = [runner.structure(ls) for ls in loaded]

    def stacked(pairs: list) -> list:
        groups: dict = {}
        for i, t in pairs:
            groups.setdefault(shape[i], []).append((i, t))
        # This process stores every run: short stacks first, one per lane, so that it starts storing after a
        # few runs rather than a whole stack
        return [({i: loaded[i] for i, _ in stack}, stack)
                for stack in runner.stacks([p for group in groups.values() for p in group], workers, stack_runs,
                                           heads=workers if workers > 1 else 0, key=lambda p: shape[p[0]])]

    held.start()
    try:
        for finished in held.as_finished(executor, partial(run_item, panel=panel), pending, stacked, panel,
                                         busy, begin):
            t0, ok, counted, recs = time.perf_counter(), [], [], None
            scenario_ids, batch_ids = held.scenario_ids, held.batch_ids
            for (_, whole), fut in finished:
                stack = [x for x in whole if x in held.mine]  # runs claimed elsewhere meanwhile are theirs
                if not stack:
                    continue
                try:
                    recs = fut.result()
                except Exception as e:  # noqa: BLE001 - a failed stack's runs are stored as failed and reported
                    error = "".join(traceback.format_exception_only(e)).strip()
                    for i, t in stack:
                        failed[i] += 1
                        db.save_failure(keys[(i, t)], scenario_ids[i], batch_ids[i], t.arm, t.replicate,
                                        t.seed_label(loaded[i].scenario.seed), error)
                        held.settle([(i, t)])
                    counted.append((stack, True))
                    continue
                ok += [(keys[x], scenario_ids[x[0]], batch_ids[x[0]], rec) for x, rec in zip(whole, recs)
                       if x in held.mine]
                counted.append((stack, False))
            if ok:  # the stacks that finished together, in one transaction
                db.save_runs(ok, panel=panel)
                held.settle(x for stack, bad in counted if not bad for x in stack)
            del ok, finished, recs  # freed once stored
            each = (time.perf_counter() - t0) / max(sum(len(stack) for stack, _ in counted), 1)
            for stack, bad in counted:
                for i, _ in stack:
                    store_seconds[i] += each
                    progress.update(failed=bad)
    finally:
        progress.close()
        held.release()
    wall = time.perf_counter() - start
    db.finish_batches(held.batch_ids, wall, store_seconds)
    return [BatchOutcome(b, total, skipped + elsewhere, f, wall, s) for b, (total, skipped), f, s, elsewhere
            in zip(held.batch_ids, totals, failed, store_seconds, held.done_elsewhere)]
