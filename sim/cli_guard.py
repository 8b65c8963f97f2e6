"""Guards of the `sim` command line: option values checked before anything runs, the recorded command line
without passwords, an executor whose failure to start is told apart from failures of the work it runs,
each scenario's failure reported as what it is (file, OS error, store) while the others go on, and the
cost check before a batch starts.

Kept apart from sim/cli.py so that the parser stays light: nothing here imports a heavy library at import.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator

from sim.lazy import lazy
from sim.outputs import not_regular
from sim.redact import mask, mask_argv

executors, cost = lazy("sim.runs.executors"), lazy("sim.runs.cost")

MAX_ID = 2**31 - 1  # batch and sweep ids are 32-bit integers in every store backend
MAX_JOBS = 256  # parallel workers
SCHEDULER_PROTOCOLS = ("tcp", "tls", "ucx", "inproc", "ws", "wss")


def whole(text: str, low: int = 1, high: int = MAX_ID, what: str = "") -> int:
    """An argparse value: a whole number from `low` to `high`, refused with the range otherwise."""
    text = text.strip()
    if not re.fullmatch(r"[-+]?[0-9]{1,40}", text):
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise argparse.ArgumentTypeError(f"{shown!r} is not a whole number")
    value = int(text)
    shown = value if abs(value) < 10**15 else text[:15] + "…"
    if value < low:
        raise argparse.ArgumentTypeError(f"{shown} must be {low} or more")
    if value > high:
        raise argparse.ArgumentTypeError(f"{shown} is more than {high:,}, the most allowed{' for ' + what if what else ''}"
                                         f" ({low:,} to {high:,})")
    return value


def jobs(text: str) -> int:
    """An argparse value for --jobs: 1 to MAX_JOBS workers."""
    return whole(text, 1, MAX_JOBS, "the number of workers")


def scheduler(text: str) -> str:
    """A Dask scheduler address, protocol://host:port (or host:port) with a port from 1 to 65535."""
    proto, sep, rest = text.rpartition("://")
    host, _, port = rest.rpartition(":")
    ok = (bool(host) and re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+", host) is not None and port.isdigit()
          and len(port) <= 5 and 1 <= int(port) <= 65535 and (not sep or proto in SCHEDULER_PROTOCOLS))
    if not ok:
        shown = text if len(text) <= 80 else text[:80] + "…"
        raise argparse.ArgumentTypeError(f"{mask(shown)!r} is not a scheduler address; expected tcp://host:port "
                                         "with a port from 1 to 65535, e.g. tcp://10.0.0.5:8786")
    return text


def command_line(argv: list[str] | None = None) -> str:
    """The command line to record with a batch, as `sim ...`, with any password masked."""
    argv = sys.argv if argv is None else argv
    ours = bool(argv) and argv[0].endswith(("sim", "sim/__main__.py", "sim/cli.py"))  # not pytest's argv
    return shlex.join(["sim", *mask_argv(argv[1:] if ours else [])])


@contextmanager
def executor(kind: str, n_jobs: int, address: str | None, bad_input: type[Exception]) -> Iterator:
    """executors.executor, with a failure to start it (an unreachable scheduler, no processes) as bad input;
    errors of the work done inside pass through as they are."""
    with ExitStack() as stack:
        try:
            ex = stack.enter_context(executors.executor(kind, n_jobs, address))
        except (OSError, TimeoutError, ValueError) as e:
            raise bad_input(f"executor {kind!r} could not start: {mask(_first_line(e))}") from None
        yield ex


BAD_INPUT_ERRORS = (("sim.schema", "ScenarioError"), ("sim.runs.store_open", "StoreError"),
                    ("sim.analysis.metrics", "MetricError"))


def _loaded(pairs) -> tuple[type, ...]:
    """The exception classes of those (module, name) pairs whose module is already imported."""
    return tuple(getattr(sys.modules[m], n) for m, n in pairs if m in sys.modules)


def is_bad_input(e: BaseException) -> bool:
    """Whether `e` is a scenario, store or metric error: input the user must fix (exit code 2)."""
    return isinstance(e, _loaded(BAD_INPUT_ERRORS))


def failure(e: BaseException) -> str | None:
    """What went wrong, in one line, for an error that ends one scenario's work but not the command's (a
    file that cannot be written, a store that fails mid-batch); None for anything else."""
    if isinstance(e, OSError):  # a file that cannot be written or read: the file and the OS's reason
        return f"{e.filename}: {e.strerror or _first_line(e)}" if e.filename else f"OS error: {_first_line(e)}"
    if isinstance(e, _loaded([("sim.runs.store_open", "StoreError")])):
        return str(e)
    if isinstance(e, _loaded([("sqlalchemy.exc", "SQLAlchemyError")])):
        return f"the results store failed: {mask(_first_line(getattr(e, 'orig', None) or e))}"
    return None


def guarded(what: str, work: Callable[[], int]) -> int:
    """Run one scenario's `work`; a failure that `failure` recognises is printed as `what: cause` and counted
    (1) so the command's other scenarios still run; anything else propagates."""
    try:
        return work()
    except Exception as e:  # noqa: BLE001 - sorted by `failure`; unknown errors re-raised
        cause = failure(e)
        if cause is None:
            raise
        print(f"error: {what}: {cause}; the other scenarios go on", file=sys.stderr, flush=True)
        return 1


def check_cost(batches: list[tuple[int, int, int, int]], n_jobs: int, yes: bool, bad_input: type[Exception]) -> None:
    """Print the estimate of what the batches cost; bad input if they need more memory than there is, or
    exceed the threshold without --yes (see sim.runs.cost)."""
    e = cost.estimate(batches, n_jobs)
    print(e.text(), flush=True)
    if (why := cost.problem(e, yes)) is not None:
        raise bad_input(why)


def early_checks(args: argparse.Namespace, bad_input: type[Exception]) -> None:
    """Checks that need no heavy module, made before one is imported: the --db URL (empty, in-memory,
    malformed, unsupported: a StoreError) and a report's --out that is a device, pipe or socket."""
    if hasattr(args, "db"):
        from sim.runs import store_open

        store_open.parse_url(store_open.resolve_url(args.db))
    out = getattr(args, "out", None)
    if args.command == "report" and out is not None and not out.is_dir() and (why := not_regular(out)):
        raise bad_input(f"{out} {why}; give the name of a regular file, e.g. results/report.html")


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else e.__class__.__name__
