"""What a batch will cost, known before it starts: runs, agent-days (participants x days), wall time and memory.

`sim run` and `sim sweep` print the estimate; above THRESHOLD_AGENT_DAYS, or THRESHOLD_SECONDS of work for one
worker, they run only with --yes (or a 'y' typed at a terminal), and a request whose runs cannot fit in this
machine's memory is refused outright.
The speed and memory figures were measured on the project's 2-core machine (see docs/reliability.md);
they are rough on purpose: the point is to tell minutes from days before a run starts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

THRESHOLD_AGENT_DAYS = 1e9  # ten times the largest shipped job (make sweep, 1e8): above it, ask for --yes
THRESHOLD_SECONDS = 3600.0  # of work for one worker (many small runs cost time more than agent-days)
SECONDS_PER_RUN = 2e-3  # fixed cost of one run: building it (docs/performance.md), per worker
AGENT_DAYS_PER_SECOND = 8e6  # compiled update, per worker (make bench: 8.8-10.8 M idle; 8 M allows for load)
STORE_SECONDS_PER_PERSON = 1e-5  # writing one participant's rows to SQLite, a stack of runs at a time (2 ms per 200)
BYTES_PER_PERSON = 3_000  # model state, agents and per-person records of one run
BYTES_PER_PERSON_WEEK = 200  # weekly history kept per person (severity, minutes, sessions, assessments)
BYTES_PER_WORKER = 400 * 1024**2  # a worker process with numpy, pandas, Mesa and the compiled kernel loaded


@dataclass(frozen=True)
class Estimate:
    """The cost of a set of runs on `jobs` workers."""

    runs: int
    agent_days: float
    seconds: float  # wall time, spread over the workers
    work_seconds: float  # the same work on one worker
    run_bytes: int  # the largest single run
    peak_bytes: int  # runs in flight at once, worker processes included
    jobs: int

    def text(self) -> str:
        """One line: runs, agent-days, wall time and memory."""
        return (f"estimate: {self.runs:,} runs, {self.agent_days:.3g} agent-days (participants x days), about "
                f"{_duration(self.seconds)} computing {self.jobs} run{'s' * (self.jobs > 1)} at once, about "
                f"{_bytes(self.peak_bytes)} of memory at peak")


def estimate(batches: list[tuple[int, int, int, int]], jobs: int = 1) -> Estimate:
    """The cost of batches given as (runs, participants per run, days per run, weeks recorded per person)."""
    runs = sum(b[0] for b in batches)
    agent_days = float(sum(n * size * days for n, size, days, _ in batches))
    cpu = sum(n * (SECONDS_PER_RUN + size * (days / AGENT_DAYS_PER_SECOND + STORE_SECONDS_PER_PERSON))
              for n, size, days, _ in batches)
    workers = max(1, min(jobs, runs))
    run_bytes = max((size * (BYTES_PER_PERSON + weeks * BYTES_PER_PERSON_WEEK) for _, size, _, weeks in batches),
                    default=0)
    return Estimate(runs, agent_days, cpu / workers, cpu, run_bytes, workers * (run_bytes + BYTES_PER_WORKER),
                    workers)


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (MemAvailable), or None where that is not known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def problem(e: Estimate, yes: bool, ask=None) -> str | None:
    """Why the batch must not start (too big for memory; above the threshold without --yes), else None.
    `ask` (a prompt function) is used at a terminal; None means ask only when stdin is one."""
    free = available_memory()
    if free is not None and e.peak_bytes > free:
        return (f"{e.text()}; that needs about {_bytes(e.run_bytes)} per run x {e.jobs} at once plus the workers, "
                f"and this machine has {_bytes(free)} available: use fewer --jobs, a smaller population or fewer "
                "weeks")
    if (e.agent_days <= THRESHOLD_AGENT_DAYS and e.work_seconds <= THRESHOLD_SECONDS) or yes:
        return None
    if ask is None and sys.stdin is not None and sys.stdin.isatty():
        ask = input
    if ask is not None:
        try:
            if ask(f"{e.text()}. Start it? [y/N] ").strip().lower() in ("y", "yes"):
                return None
        except EOFError:
            pass
    return (f"{e.text()}: more than runs without asking ({THRESHOLD_AGENT_DAYS:.0e} agent-days or "
            f"{THRESHOLD_SECONDS / 3600:g} h of work for one worker); pass --yes to run it anyway, or lower "
            "replicates, arms, population size or weeks")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"


def _bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"
