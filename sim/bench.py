"""Benchmarks (not tests): speed and memory figures, measured side by side in one run.

    sim bench [--quick] [--out results/bench.json]        # or: make bench

Each figure is printed with what was run, and all of them are written to a JSON file with the machine,
the package versions and the command. Figures that compare two ways of doing the same thing are ratios
measured one after the other in this process, since the machines are shared and noisy.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project (benchmarks/ is not part of the package)
BENCH_SCENARIO = ROOT / "benchmarks" / "store_cost.yaml"  # 16 + 26 weeks, usual care vs classes


def _sized(loaded, size: int, weeks: int | None = None, follow_up: int | None = None):
    sc = loaded.scenario
    update = {"population": sc.population.model_copy(update={"size": size})}
    if weeks is not None:
        update |= {"weeks": weeks, "follow_up_weeks": follow_up}
    return loaded.model_copy(update={"scenario": sc.model_copy(update=update)})


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _best(fn, repeat: int) -> float:
    return min(_timed(fn)[0] for _ in range(repeat))


def _best_cpu(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time of this process over `repeat` calls (CPU time leaves out the time
    spent waiting for a core on a shared machine)."""
    walls, cpus = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return min(walls), min(cpus)


def trial_stacks(loaded, stack: int, repeat: int) -> dict:
    """Trial-sized runs (200 people, 294 days), one at a time and `stack` advanced together."""
    from sim.model.stack import Stack
    from sim.runs import runner

    small = _sized(loaded, 200, 14, 28)
    todo = [runner.Task("exercise", r) for r in range(stack)]
    Stack(runner.build_models(small, todo[:2], panel=False)).run()  # compiled code loaded before timing

    def one_by_one():
        for t in todo:
            Stack(runner.build_models(small, [t], panel=False)).run()

    def stacked():
        Stack(runner.build_models(small, todo, panel=False)).run()

    (alone, _), (together, together_cpu) = _best_cpu(one_by_one, repeat), _best_cpu(stacked, repeat)
    cells = stack * 200 * small.scenario.days
    return {"what": f"{stack} runs of 200 people x {small.scenario.days} days (build + run, one core)",
            "alone_M_agent_days_per_s": cells / alone / 1e6, "stacked_M_agent_days_per_s": cells / together / 1e6,
            "stacked_M_agent_days_per_cpu_s": cells / together_cpu / 1e6, "stacked_vs_alone": alone / together}


def population(loaded, size: int, repeat: int) -> dict:
    """One run of `size` people for 364 days on one core."""
    big = _sized(loaded, size)
    from sim.model.model import AdherenceModel

    build = _best(lambda: AdherenceModel(big, arm="exercise", rng=0), repeat)
    total, cpu = _best_cpu(lambda: AdherenceModel(big, arm="exercise", rng=0).run(), repeat)
    cells = size * big.scenario.days
    return {"what": f"one run of {size:,} people x {big.scenario.days} days, every mechanism on (one core)",
            "build_s": build, "run_s": total - build, "M_agent_days_per_s": cells / total / 1e6,
            "M_agent_days_per_cpu_s": cells / cpu / 1e6}


def hugepages(size: int, repeat: int) -> dict:
    """The `population` figure in two fresh processes, without and with numpy's huge-page advice
    (NUMPY_MADVISE_HUGEPAGE=0, which `sim` sets unless the user has, and =1, numpy's own default on Linux)."""
    code = ("import json; from sim.bench import population, BENCH_SCENARIO; from sim.scenario import load;"
            f"print(json.dumps(population(load(BENCH_SCENARIO), {size}, {repeat})))")
    speed = {}
    for flag in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "NUMPY_MADVISE_HUGEPAGE": flag})
        speed[flag] = json.loads(out.stdout.strip().splitlines()[-1])["M_agent_days_per_s"]
    return {"what": f"the population figure ({size:,} people) in fresh processes: numpy's huge-page advice off (as "
                    "`sim` runs) and on (numpy's default)", "off_M_agent_days_per_s": speed["0"],
            "on_M_agent_days_per_s": speed["1"], "off_vs_on": speed["0"] / speed["1"]}


def against_reference(loaded, size: int, weeks: int) -> dict:
    """The compiled update against the per-agent reference on the same people and days."""
    from sim.runs import runner

    short = _sized(loaded, size, weeks, 0)
    runner.build_model(short, "exercise", 0).run()
    fast = _best(lambda: runner.build_model(short, "exercise", 0).run(), 3)
    slow = _timed(lambda: runner.build_model(short, "exercise", 0, reference=True).run())[0]
    return {"what": f"{size:,} people x {7 * weeks} days, compiled vs per-agent reference (Mesa agents)",
            "compiled_s": fast, "reference_s": slow, "ratio": slow / fast}


def million(size: int, builds: int = 3) -> dict:
    """Peak memory, build and run time of one run of `size` people x 364 days, each in a fresh process; the
    build is timed in `builds` fresh processes and the median reported (first touches of memory are erratic
    on shared machines)."""
    setup = (f"import resource, time, json; from sim.scenario import load; from sim.bench import _sized, BENCH_SCENARIO;"
             f"from sim.model.model import AdherenceModel; ls = _sized(load(BENCH_SCENARIO), {size}, 13, 39);"
             "t = time.perf_counter(); m = AdherenceModel(ls, arm='exercise', rng=0); b = time.perf_counter() - t;")
    full = setup + ("m.run(); r = time.perf_counter() - t - b;"
                    "print(json.dumps({'build_s': b, 'run_s': r, 'days': m.days,"
                    "'peak_GiB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))")

    def fresh(code: str) -> dict:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    res = fresh(full)
    others = [fresh(setup + "print(json.dumps({'build_s': b}))")["build_s"] for _ in range(builds - 1)]
    res["build_s_each"] = [res["build_s"], *others]
    res["build_s"] = float(statistics.median(res["build_s_each"]))
    res["what"] = (f"one run of {size:,} people x {res['days']} days in a fresh process (default records: "
                   "daily aggregates, assessments, participant summaries; no weekly panel or habit history); "
                   f"build: median of {builds} fresh processes")
    res["M_agent_days_per_s"] = size * res["days"] / res["run_s"] / 1e6
    return res


def batch_jobs(loaded, replicates: int, repeat: int = 7) -> dict:
    """A batch of 2 x `replicates` runs stored in SQLite: serial and on a pool of two lanes made (and warmed up)
    before the timed batch, in turn `repeat` times (median share and range), then once on a pool made inside
    the timed region ("cold"). Each batch writes a fresh store. Beside them, this machine's limit: the batch's
    runs computed (nothing sent back or stored) in two halves at once, one on each lane, against both on one."""
    from functools import partial

    from sim.runs import batch, executors, runner, store

    small = _sized(loaded, 200, 14, 28)
    halves = [({0: small}, stack) for stack in runner.stacks([(0, t) for t in runner.tasks(small, replicates)], 1)]
    compute = partial(_computed, batch.run_item)
    times: dict = {"serial": [], "jobs2": [], "one_lane": [], "two_lanes": []}

    def timed(pool, name: str, tmp: str, k: int, start: float | None = None) -> tuple[float, object]:
        db = store.Store(f"sqlite:///{tmp}/{name}{k}.db", create=True)
        if start is None:  # what making the store left (thousands of schema objects) is not the batch's to collect
            gc.collect()
            start = time.perf_counter()
        res = batch.run_batch(small, db, pool, replicates)
        wall = time.perf_counter() - start
        db.engine.dispose()
        return wall, res

    def lanes(pool, both: bool) -> float:
        gc.collect()
        start = time.perf_counter()
        other = pool.submit(compute, halves[1]) if both else None
        compute(halves[0])
        compute(halves[1]) if other is None else other.result()
        return time.perf_counter() - start

    # the batches' progress lines are not figures
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        with executors.executor("serial") as serial, executors.executor("processes", 2) as pool:
            executors.ready(pool)
            timed(serial, "first", tmp, 0)  # untimed: the store's code paths used once, as the kernel is
            timed(pool, "first", tmp, 1)
            lanes(pool, True)
            for k in range(repeat):  # side by side: the machine's load moves all of them alike
                times["serial"].append(timed(serial, "serial", tmp, k))
                times["jobs2"].append(timed(pool, "jobs2", tmp, k))
                times["one_lane"].append(lanes(pool, False))
                times["two_lanes"].append(lanes(pool, True))
        gc.collect()
        start = time.perf_counter()  # cold: the workers' start and warm-up are part of the figure
        with executors.executor("processes", 2) as pool:
            cold = timed(pool, "cold", tmp, 0, start)[0]
    serial = [w for w, _ in times["serial"]]
    shares = sorted(j / s for (j, _), s in zip(times["jobs2"], serial))
    limit = sorted(two / one for two, one in zip(times["two_lanes"], times["one_lane"]))
    return {"what": f"a batch of {2 * replicates} runs (200 people x 294 days) stored in SQLite, serial and "
                    f"with --jobs 2 in turn {repeat} times after one untimed batch of each (pool made before "
                    "them; medians), then once with the pool made inside the timed region (jobs2_cold); "
                    "two_lanes_share: the same runs computed (records neither sent back nor stored) in two halves "
                    "at once on the pool's two lanes, against both halves on one, measured in turn with the batches "
                    "(this machine's limit)",
            "serial_s": statistics.median(serial), "jobs2_s": statistics.median(w for w, _ in times["jobs2"]),
            "jobs2_share_of_serial": statistics.median(shares), "jobs2_share_min": shares[0],
            "jobs2_share_max": shares[-1], "jobs2_cold_s": cold,
            "jobs2_cold_share_of_serial": cold / statistics.median(serial),
            "serial_store_share": statistics.median(r.store_share for _, r in times["serial"]),
            "two_lanes_share": statistics.median(limit), "two_lanes_share_min": limit[0],
            "two_lanes_share_max": limit[-1]}


def _computed(run_item, item) -> None:
    """A batch's work item, its records dropped: what computing it costs a lane, with nothing to send back."""
    run_item(item, panel=False)


def help_time() -> dict:
    """Wall time of `sim --help` in a fresh process."""
    t = min(_timed(lambda: subprocess.run([sys.executable, "-m", "sim", "--help"], capture_output=True,
                                          check=True))[0] for _ in range(3))
    return {"what": "python -m sim --help (fresh process)", "seconds": t}


def bare_loop(size: int, days: int) -> dict:
    """This machine's limit: a bare compiled loop updating ten float arrays of the same size per day."""
    import numpy as np
    from numba import njit

    @njit(cache=False)
    def loop(a, days):
        for d in range(days):
            for i in range(a.shape[1]):
                x = a[0, i]
                for k in range(1, a.shape[0]):
                    a[k, i] = 0.99 * a[k, i] + 0.01 * x
                    x = a[k, i]
        return a

    arr = np.random.default_rng(0).random((10, size))
    loop(arr[:, :10], 1)
    t = _best(lambda: loop(arr, days), 3)
    return {"what": f"bare compiled loop, 10 arrays x {size:,} x {days} days", "M_agent_days_per_s": size * days / t / 1e6}


def machine() -> dict:
    """Where and with what the figures were measured."""
    pkgs = ("numpy", "numba", "mesa", "pandas", "SQLAlchemy")
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average": os.getloadavg(), "versions": {p: metadata.version(p) for p in pkgs}}


def run(out: Path, quick: bool = False, log=print) -> dict:
    """Measure every figure, print each as it comes, write them all to `out` (JSON)."""
    from sim.scenario import load

    loaded = load(BENCH_SCENARIO)
    figures, started = {}, time.time()
    steps = [("trial_stacks", lambda: trial_stacks(loaded, 10 if quick else 50, 1 if quick else 3)),
             ("population_100k", lambda: population(loaded, 20_000 if quick else 100_000, 1 if quick else 2)),
             ("hugepages", lambda: hugepages(20_000 if quick else 100_000, 1 if quick else 2)),
             ("against_reference_10k", lambda: against_reference(loaded, 2_000 if quick else 10_000, 2 if quick else 4)),
             ("million", lambda: million(100_000 if quick else 1_000_000)),
             ("batch_jobs", lambda: batch_jobs(loaded, 5 if quick else 20, 2 if quick else 7)),
             ("help", help_time),
             ("bare_loop", lambda: bare_loop(100_000, 364))]
    for name, fn in steps:
        figures[name] = fn()
        log(f"{name}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in figures[name].items()))
    report = {"command": " ".join(["sim", *sys.argv[1:]]) if sys.argv else "sim bench", "quick": quick,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
              "machine": machine(), "figures": figures}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report
