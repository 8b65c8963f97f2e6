"""Benchmarks (not tests): ratios, since the machines are shared and noisy.

    .venv/bin/python benchmarks/bench.py        # or: make bench

- kernel: the fused numba update (the default engine) against the numpy array update;
- engine: the default update against the per-agent reference on the same run;
- scale: cost per participant-day at 200 vs 2,000 participants (vectorization should keep it flat);
- store: time to write one run's records against the time to compute it (SQLite).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from sim import scenario
from sim.runs import runner, store

ROOT = Path(__file__).resolve().parent.parent


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Print the four ratios."""
    loaded = scenario.load(ROOT / "benchmarks" / "store_cost.yaml")
    small = loaded.model_copy(update={"scenario": loaded.scenario.model_copy(update={
        "population": loaded.scenario.population.model_copy(update={"size": 200})})})
    fast = _best(lambda: runner.build_model(small, "exercise", 0).run())

    def numpy_run():
        model = runner.build_model(small, "exercise", 0)
        model.engine = "numpy"
        model.run()

    arrays = _best(numpy_run)
    print(f"kernel: fused numba update {fast:.3f} s vs numpy array update {arrays:.3f} s for 200 people x "
          f"{small.scenario.days} days: {arrays / fast:.1f}x faster")
    slow = _best(lambda: runner.build_model(small, "exercise", 0, reference=True).run(), repeat=1)
    print(f"engine: default {fast:.3f} s vs per-agent reference {slow:.2f} s for 200 people x "
          f"{small.scenario.days} days: {slow / fast:.0f}x faster")
    big = _best(lambda: runner.build_model(loaded, "exercise", 0).run())
    per_small, per_big = fast / 200, big / loaded.scenario.population.size
    print(f"scale: {big:.3f} s for {loaded.scenario.population.size} people; cost per person-day at 1,000 "
          f"is {per_big / per_small:.2f} of that at 200")
    rec = runner.run_task(loaded, runner.Task("exercise", 0), panel=False)
    with tempfile.TemporaryDirectory() as tmp:
        db = store.Store(f"sqlite:///{tmp}/bench.db", create=True)
        sid = db.add_scenario(loaded)
        bid = db.start_batch(sid, 1)
        writes = []
        for i in range(5):
            t0 = time.perf_counter()
            db.save_run(f"bench{i}", sid, bid, rec)
            writes.append(time.perf_counter() - t0)
    write = statistics.median(writes)
    print(f"store: writing one run ({loaded.scenario.population.size} participants) takes {write * 1000:.1f} ms, "
          f"{100 * write / big:.1f}% of the time to compute it")


if __name__ == "__main__":
    main()
