"""A batch: a scenario's pending runs sent to an executor, each finished run stored by this (single) writer."""

from __future__ import annotations

import sys
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

from tqdm import tqdm

from sim.runs import runner, store
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


def run_batch(loaded: LoadedScenario, db: store.Store, executor: Executor, replicates: int,
              panel: bool = False, command: str = "", executor_name: str = "") -> BatchOutcome:
    """Run every arm x replicate of the scenario not yet stored; store each as it finishes."""
    start = time.perf_counter()
    sc = loaded.scenario
    scenario_id = db.add_scenario(loaded)
    batch_id = db.start_batch(scenario_id, replicates, command, executor_name,
                              "participants-weekly" if panel else "")
    todo = runner.tasks(loaded, replicates)
    keys = {t: store.run_key(loaded.sha256, t.arm, t.replicate, t.seed_label(sc.seed)) for t in todo}
    # with --record participants-weekly, runs stored without the panel run again to add it
    done = db.done_keys(list(keys.values()), with_panel=panel)
    pending = [t for t in todo if keys[t] not in done]
    failed, store_seconds = 0, 0.0
    progress = Progress(sc.name, len(pending))
    try:
        for t, fut in runner.as_finished(executor, partial(runner.run_task, loaded, panel=panel), pending):
            t0 = time.perf_counter()
            try:
                rec = fut.result()
            except Exception as e:  # noqa: BLE001 - a failed run is stored as failed and reported
                failed += 1
                db.save_failure(keys[t], scenario_id, batch_id, t.arm, t.replicate, t.seed_label(sc.seed),
                                "".join(traceback.format_exception_only(e)).strip())
            else:
                t0 = time.perf_counter()
                db.save_run(keys[t], scenario_id, batch_id, rec, panel=panel)
            store_seconds += time.perf_counter() - t0
            progress.update(failed=fut.exception() is not None)
    finally:
        progress.close()
    wall = time.perf_counter() - start
    db.finish_batch(batch_id, wall, store_seconds)
    return BatchOutcome(batch_id, len(todo), len(todo) - len(pending), failed, wall, store_seconds)
