"""The batch figure of `sim bench`, repeated, and the same batch through `sim run` (a benchmark, not a test).

    .venv/bin/python benchmarks/batch_jobs.py [--repeat 5] [--cli 3]

In this process, after loading the compiled kernel as `sim bench` does: `bench.batch_jobs(loaded, 20,
repeat)` (a 40-run batch of 200 people x 294 days in SQLite, serial and on a pool of two made before the
timed batch in turn `--repeat` times, with the medians, then once on a pool made inside the timed region).
Then `sim run` in fresh processes on benchmarks/store_cost.yaml resized the same way (20 replicates), with
--jobs 1 and 2 in turn and a fresh store each time, `--cli` times each: the batch's wall time (from the
store) and the time from the command's start to the line that reports the batch. The machines are shared: compare medians measured together.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # as `sim` runs
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim import bench  # noqa: E402
from sim.scenario import load  # noqa: E402


def in_process(repeat: int) -> dict:
    """bench.batch_jobs(loaded, 20, repeat): `repeat` serial and pool batches in turn, with the medians."""
    loaded = load(bench.BENCH_SCENARIO)
    bench.trial_stacks(loaded, 4, 1)
    return bench.batch_jobs(loaded, 20, repeat)


def through_cli(times: int) -> dict:
    """Medians of `sim run` batches, --jobs 1 and 2 in turn, each in a fresh process with a fresh store."""
    data = yaml.safe_load(bench.BENCH_SCENARIO.read_text())
    data.update(name="batch_jobs", replicates=20, weeks=14, follow_up_weeks=28)
    data["population"]["size"] = 200
    out: dict = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batch_jobs.yaml"
        path.write_text(yaml.safe_dump(data))
        for k in range(times):
            for jobs in (1, 2):
                db = Path(tmp) / f"run{k}_{jobs}.db"
                start = time.perf_counter()
                p = subprocess.Popen([sys.executable, "-m", "sim", "run", str(path), "--db", f"sqlite:///{db}",
                                      "--jobs", str(jobs), "--figures", str(Path(tmp) / "fig")], cwd=tmp,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
                seen = next((time.perf_counter() - start for line in p.stdout if line.startswith("batch 1:")), None)
                p.kill()  # the summary and figures that follow are not part of the figure
                p.wait()
                with sqlite3.connect(db) as con:
                    wall = con.execute("SELECT wall_seconds FROM batches WHERE id = 1").fetchone()[0]
                out[jobs].append((wall, seen))
    med = {jobs: (statistics.median(w for w, _ in v), statistics.median(s for _, s in v)) for jobs, v in out.items()}
    return {"serial_batch_s": med[1][0], "jobs2_batch_s": med[2][0], "jobs2_share_of_serial": med[2][0] / med[1][0],
            "serial_to_batch_line_s": med[1][1], "jobs2_to_batch_line_s": med[2][1]}


def main() -> None:
    """Print the medians as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="in-process batches (default 5)")
    ap.add_argument("--cli", type=int, default=3, help="sim run commands per --jobs value (default 3; 0: none)")
    args = ap.parse_args()
    print(json.dumps({"in_process": in_process(args.repeat), "load_average": os.getloadavg()}, indent=1), flush=True)
    if args.cli:
        print(json.dumps({"sim_run": through_cli(args.cli), "load_average": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
