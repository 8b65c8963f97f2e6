"""The `sim` command line: a thin layer over scenarios, batches, the store, summaries and plots."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import socket
import sys
from contextlib import ExitStack
from pathlib import Path

from sim import cli_defaults as defaults
from sim import cli_guard, outputs
from sim.cli_defaults import MAX_REPLICATES
from sim.lazy import lazy

cli_sweeps = lazy("sim.cli_sweeps")
metrics, plots, report = lazy("sim.analysis.metrics"), lazy("sim.analysis.plots"), lazy("sim.analysis.report")
summary, validation = lazy("sim.analysis.summary"), lazy("sim.analysis.validation")
report_text = lazy("sim.analysis.report_text")
batch, provenance, results = lazy("sim.runs.batch"), lazy("sim.runs.provenance"), lazy("sim.runs.results")
executors, store, scenario = lazy("sim.runs.executors"), lazy("sim.runs.store"), lazy("sim.scenario")
explore_model = lazy("sim.explore_model")

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the user must fix; printed as one message with exit code 2."""


def _positive(text: str) -> int:
    return cli_guard.whole(text)  # 1 to 2^31 - 1: ids and counts fit every store backend


def _replicates(text: str) -> int:
    value = _positive(text)
    if value > MAX_REPLICATES:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_REPLICATES:,} (the most a scenario allows)")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value


_scheduler = cli_guard.scheduler  # a Dask scheduler address: tcp://host:port, port 1-65535


class _Version(argparse.Action):
    """--version: the code version is looked up (git) only when asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(message=f"sim {provenance.code_version()}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="sim", description="Virtual trials of exercise adherence in depression.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the code version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    db_help = f"SQLAlchemy URL of the results store (default $SIM_DB_URL, else {defaults.DEFAULT_URL})"

    run = sub.add_parser("run", help="run scenarios' arms x replicates, store, summarise and plot")
    run.add_argument("scenarios", nargs="+", type=Path, help="scenario YAML files")
    run.add_argument("--replicates", type=_replicates, help="replicate trials per arm (default: the scenario's)")
    run.add_argument("--jobs", type=cli_guard.jobs, default=1,
                     help="runs computed at once (default 1; local processes: this one and N - 1 workers)")
    run.add_argument("--executor", choices=defaults.EXECUTORS, default="processes",
                     help="where runs execute: in this process, local processes (default), or Dask distributed")
    run.add_argument("--scheduler", type=_scheduler,
                     help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (implies --executor dask; "
                          "default: none)")
    run.add_argument("--db", help=db_help)
    run.add_argument("--record", choices=defaults.RECORD_OPTIONS, action="append", default=[],
                     help="also store the per-participant weekly panel (severity and minutes every week; default: "
                          "endpoints only)")
    run.add_argument("--figures", type=Path, default=Path("results/figures"),
                     help="folder for figures (default results/figures, under the current folder)")
    run.add_argument("--allow-changed", action="store_true",
                     help="run a scenario file even though it changed since its last batch was interrupted "
                          "(default: refuse)")
    run.add_argument("--yes", action="store_true",
                     help="run even when the estimate is above the threshold that asks first (docs/reliability.md; "
                          "default: ask at a terminal, refuse otherwise)")
    run.add_argument("--parameter-draws", type=_positive, metavar="N",
                     help="run each scenario under N draws of the main uncertain parameters (Latin hypercube over "
                          "their declared ranges) and show intervals with and without parameter uncertainty "
                          "(default: none)")

    val = sub.add_parser("validate", help="compare the model with published findings (a targets file): calibration "
                         "fit for targets the calibration used, validation for those held out of it")
    val.add_argument("--targets", type=Path, default=defaults.DEFAULT_TARGETS, help="targets file "
                     f"(default {defaults.DEFAULT_TARGETS})")
    val.add_argument("--replicates", type=_replicates, help="replicates per scenario (default: per target/scenario)")
    val.add_argument("--hold-out", nargs="+", default=[], metavar="ID",
                     help="report these targets as validation (out-of-sample), besides those marked `holdout: true`; "
                          "true only for parameters calibrated without them (default: none)")
    val.add_argument("--jobs", type=cli_guard.jobs, default=1,
                     help="runs computed at once (default 1; local processes: this one and N - 1 workers)")
    val.add_argument("--executor", choices=defaults.EXECUTORS, default="processes",
                     help="where runs execute: in this process, local processes (default), or Dask distributed")
    val.add_argument("--db", help=db_help)
    val.add_argument("--out", type=Path, help="markdown table to write, with a .json next to it (default "
                     "results/validation.md for the project's targets, results/validation_<targets file>.md otherwise)")

    exp = sub.add_parser("export", help="write stored results as parquet or csv files")
    exp.add_argument("--db", help=db_help)
    exp.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="file format (default parquet)")
    exp.add_argument("--out", type=Path, required=True, help="folder to write into")
    exp.add_argument("--scenario", help="only this scenario (name or text hash; default: every scenario)")
    exp.add_argument("--sweep", type=_positive, help="a sweep's points x outcomes and per-replicate outcome values "
                     "(sweep id, as `sim sweep` prints it; default: none)")

    rep = sub.add_parser("report", help="write one self-contained HTML report of stored results (and figures)")
    rep.add_argument("--db", help=db_help)
    rep.add_argument("--batch", type=_positive, action="append", default=[],
                     help="report this batch (repeatable; default: the most recent batch)")
    rep.add_argument("--scenario", action="append", default=[],
                     help="report this scenario (name or text hash) as of its latest batch (repeatable; default: "
                          "the most recent batch)")
    rep.add_argument("--sweep", type=_positive, help="report this sweep (id, as `sim sweep` prints it) instead of "
                     "batches or scenarios (default: none)")
    rep.add_argument("--reference", help="arm to compare the others with (default: each scenario's reference arm)")
    rep.add_argument("--out", type=Path, help=f"HTML file to write (default {defaults.REPORT_OUT}, "
                                              "unless only --figures is given)")
    rep.add_argument("--figures", type=Path,
                     help="also save every figure as PNG and SVG into this folder (default: none)")
    rep.add_argument("--validation", type=Path,
                     help=f"`sim validate` result to include (default {defaults.VALIDATION_OUT}; skipped if absent)")
    rep.add_argument("--loto", type=Path, default=defaults.LOTO_OUT,
                     help=f"leave-one-trial-out validation record to include (default {defaults.LOTO_OUT}; "
                          "skipped if absent; written by make loto)")
    cli_sweeps.add_parsers(sub, db_help, _positive, _replicates, _scheduler)
    ben = sub.add_parser("bench", help="speed and memory benchmarks (minutes; not tests), written as JSON")
    ben.add_argument("--out", type=Path, default=Path("results/bench.json"),
                     help="JSON file to write the figures to (default results/bench.json)")
    ben.add_argument("--quick", action="store_true",
                     help="smaller sizes, one repeat: a check that the benchmarks work, not figures to quote "
                          "(default: full sizes, several repeats)")

    xp = sub.add_parser("explore", help="interactive explorer in the browser (Mesa SolaraViz on 127.0.0.1)")
    xp.add_argument("scenario", nargs="?", type=Path, default=defaults.EXPLORE_SCENARIO,
                    help=f"scenario file to explore (default {defaults.EXPLORE_SCENARIO})")
    xp.add_argument("--port", type=_port, default=defaults.EXPLORE_PORT,
                    help=f"port on 127.0.0.1 to serve it on (default {defaults.EXPLORE_PORT})")
    xp.add_argument("--arm", help="arm whose design the controls set (default: the first arm other than the reference)")
    xp.add_argument("--reference", help="arm shown beside it (default: the scenario's reference arm)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sim` console script."""
    # numpy asks the kernel for transparent huge pages for arrays of 4 MB and more (read when numpy is first
    # imported, which is after this line): on the shared machines this project runs on, their first touch
    # costs 2-4x that of small pages, and the blocked kernel does not need their TLB reach (docs/performance.md,
    # "Huge pages"). The user's own setting wins, and worker processes inherit this one.
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    args = build_parser().parse_args(argv)
    try:
        cli_guard.early_checks(args, BadInput)  # the --db URL and a report's --out, before heavy imports
        if args.command in ("sweep", "power"):
            run = cli_sweeps.cmd_sweep if args.command == "sweep" else cli_sweeps.cmd_power
            return run(args, BadInput, _command())
        return {"run": cmd_run, "validate": cmd_validate, "export": cmd_export,
                "report": cmd_report, "bench": cmd_bench, "explore": cmd_explore}[args.command](args)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are stored; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as e:
        # a scenario, store or metric error is bad input (exit 2); a failed write or a store that fails
        # midway is an error (exit 1); both are one line; anything else is a bug and shows its traceback
        if cli_guard.is_bad_input(e):  # checked without importing a module that did not raise it
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if (cause := cli_guard.failure(e)) is not None:
            print(f"error: {cause}", file=sys.stderr)
            return 1
        raise


def _command() -> str:
    return cli_guard.command_line()  # passwords masked


def _writable_folder(folder: Path, option: str) -> None:
    """BadInput unless `folder` exists or can be made, and can be written (checked before any work)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"{option} {folder}: cannot make this folder ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK):
        raise BadInput(f"{option} {folder}: this folder is not writable")


def _panel_checks(loaded: list[scenario.LoadedScenario], record: bool) -> None:
    """BadInput for a scenario check whose metric needs the weekly panel when it is not being recorded."""
    for ls in loaded:
        for i, c in enumerate(ls.scenario.checks):
            if c.metric in metrics.NEEDS_PANEL and not record:
                raise BadInput(f"{ls.path}: checks.{i} ({c.id}): {c.metric} needs the per-participant weekly "
                               "panel; run with --record participants-weekly")


def cmd_run(args: argparse.Namespace) -> int:
    """`sim run`: every scenario, the database and the output folder are checked before anything runs."""
    loaded = [scenario.load(p) for p in args.scenarios]
    if (dup := scenario.first_repeat([ls.scenario.name for ls in loaded])) is not None:
        raise BadInput(f"two scenario files share the name {dup!r}; names must be unique within one run")
    _panel_checks(loaded, bool(args.record))
    _writable_folder(args.figures, "--figures")
    kind = "dask" if args.scheduler else args.executor
    if not args.parameter_draws:  # before the store is opened (or made): a refused batch leaves no trace
        cli_guard.check_cost([(len(ls.scenario.arms) * (args.replicates or ls.scenario.replicates),
                               ls.scenario.population.size, ls.scenario.days, ls.scenario.days // 7)
                              for ls in loaded], args.jobs if kind != "serial" else 1, args.yes, BadInput)
    with ExitStack() as stack:
        # the executor before the store: a pool's workers start and load the compiled model (0.3-0.5 s each in
        # a fresh command) while this process opens and checks the store; start failures: exit 2
        ex = None if args.parameter_draws else stack.enter_context(
            cli_guard.executor(kind, args.jobs, args.scheduler, BadInput))
        db = store.Store(args.db, create=True)
        if not args.allow_changed:
            for ls in loaded:
                if (row := db.unfinished_other_text(ls)) is not None:
                    raise BadInput(
                        f"{ls.path}: the scenario changed on disk since batch {row.id} (started "
                        f"{row.started_at:%Y-%m-%d %H:%M} UTC from {row.path}, text sha256 {row.sha256[:10]}) was "
                        "interrupted; restore the file to resume that batch, or pass --allow-changed to run the "
                        "changed scenario as new runs")
        if args.parameter_draws:  # each scenario as a sweep, through an executor of its own
            return 1 if cli_sweeps.run_parameter_draws(loaded, args, BadInput, _command()) else 0
        command, failures = _command(), 0
        for ls in loaded:  # a scenario that fails (a file, the store) is reported; the others still run
            failures += cli_guard.guarded(str(ls.path), lambda ls=ls: _run_one(ls, db, ex, args, kind, command))
    return 1 if failures else 0


def _run_one(ls: scenario.LoadedScenario, db: store.Store, ex, args, kind: str, command: str) -> int:
    sc = ls.scenario
    reps = args.replicates or sc.replicates
    print(f"\n== {sc.name} ({ls.path}): {len(sc.arms)} arms x {reps} replicates x {sc.population.size} "
          f"participants, {sc.weeks} + {sc.follow_up_weeks} weeks", flush=True)
    out = batch.run_batch(ls, db, ex, reps, panel=bool(args.record), command=command, executor_name=kind)
    print(f"batch {out.batch_id}: {out.total - out.skipped} runs now, {out.skipped} already stored, "
          f"{out.failed} failed; {out.wall_seconds:.1f} s, {100 * out.store_share:.1f}% of it writing to the store")
    if out.failed:
        print(f"{out.failed} runs failed; their errors are in the runs table (status 'failed'); "
              "run the same command again to retry them", file=sys.stderr)
    res = results.scenario_results(db, ls.sha256, reps)
    print()
    print(summary.summary_text(sc, res))
    if not res.daily.empty:
        footer = (f"scenario {sc.name} (sha256 {ls.sha256[:10]}), seed {sc.seed}, {reps} replicates x "
                  f"{sc.population.size}/arm, sim {provenance.code_version()}, {dt.date.today().isoformat()}")
        fig = plots.outcome_curves(res.daily, sc.weeks, sc.outcomes.scale, footer, list(sc.arms))
        paths = plots.save(fig, args.figures / f"{sc.name}_outcomes")
        print(f"\nresults: {db.url} (batch {out.batch_id})\nfigure:  {paths[0]} (and .svg)")
    return out.failed


def cmd_validate(args: argparse.Namespace) -> int:
    """`sim validate`: run every scenario a targets file names and check each target; 0 only if all pass."""
    targets = validation.load_targets(args.targets)
    held = validation.held_out(targets, args.hold_out)
    if args.out is None:  # the project's targets -> results/validation.md, which the report embeds
        same = args.targets.resolve() == validation.DEFAULT_TARGETS.resolve()
        args.out = Path("results") / ("validation.md" if same else f"validation_{args.targets.stem}.md")
    _writable_folder(args.out.parent, "--out")
    if args.out.is_dir():
        raise BadInput(f"--out {args.out} is a folder; give a file name such as {args.out / 'validation.md'}")
    for target in (args.out, args.out.with_suffix(".json")):
        if (why := outputs.not_regular(target)) is not None:
            raise BadInput(f"--out: {target} {why}; give the name of a regular file")
    db = store.Store(args.db, create=True)
    need = validation.replicates_needed(targets, args.replicates)
    frames = {}
    with executors.executor(args.executor, args.jobs) as ex:
        for name, ls in targets.scenarios.items():
            out = batch.run_batch(ls, db, ex, need[name], panel=True, executor_name=args.executor,
                                  command="sim validate")
            print(f"{ls.scenario.name}: {need[name]} replicates ({out.total - out.skipped} runs now, "
                  f"{out.skipped} already stored, {out.wall_seconds:.0f} s)", flush=True)
            res = results.scenario_results(db, ls.sha256, need[name])
            frames[name] = metrics.Frames.of(res, ls.scenario.outcomes, programme_weeks=ls.scenario.weeks)
    result = validation.evaluate(targets, frames, held)
    print()
    print(validation.table_text(result))
    if held:
        print(f"\nnote: {len(held)} target(s) reported as validation; that holds only if the parameters in use were "
              "calibrated without them (python -m sim.analysis.calibration --hold-out ...); the defaults in "
              "sim/parameters.py were fitted to every target of the project's file (docs/calibration.md)")
    record = validation.to_record(result, args.targets, db.url)
    header = (f"Targets: `{args.targets}`; model code `sim {record['code_version']}` (model hash "
              f"{record['model_hash']}); results in `{db.url}`; {record['date'][:10]}. "
              "Simulated values are means over replicate trials with the 2.5 and 97.5 percentiles; 'published at' "
              "is where the published value falls among the replicate trials. Calibration fit is agreement with "
              "targets the calibration used; validation, with targets held out of it.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    outputs.write_text(args.out, validation.table_markdown(result, header))
    outputs.write_text(args.out.with_suffix(".json"), json.dumps(record, indent=1))
    print(f"\nwritten: {args.out} (and {args.out.with_suffix('.json').name}, which `sim report` embeds)")
    return 0 if result.passed.all() else 1


def cmd_export(args: argparse.Namespace) -> int:
    """`sim export`: runs and record tables as files."""
    db = store.Store(args.db, create=False)
    if args.sweep is not None:
        _writable_folder(args.out, "--out")
        try:
            paths = cli_sweeps.export_sweep(db, args.sweep, args.out, args.format)
        except KeyError as e:
            raise BadInput(e.args[0]) from None
        for path in paths:
            print(path)
        return 0
    if args.scenario and results.runs(db, args.scenario, status=None).empty:
        stored = sorted(set(results.runs(db, status=None).scenario))
        raise BadInput(f"--scenario {args.scenario!r} has no runs in {db.url}; stored scenarios: "
                       f"{', '.join(stored) or 'none'}")
    _writable_folder(args.out, "--out")
    for path in results.export(db, args.out, args.format, args.scenario):
        print(f"{path}" + (f"  (empty: {EMPTY_BECAUSE.get(path.stem, 'nothing stored')})" if _no_rows(path) else ""))
    return 0


EMPTY_BECAUSE = {  # why an exported table has no rows
    "participant_weeks": "these runs were not recorded with the per-participant weekly panel; run them again with "
                         "--record participants-weekly",
    "assessments": "these runs were made before assessments were recorded; run them again",
    "runs": "no runs stored", "arm_days": "no finished runs", "participants": "no finished runs"}


def _no_rows(path: Path) -> bool:
    """Whether an exported csv or parquet file holds no data rows."""
    if path.suffix == ".csv":
        with path.open(encoding="utf-8") as f:
            return sum(1 for _, line in zip(range(2), f) if line.strip()) < 2
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows == 0


def cmd_report(args: argparse.Namespace) -> int:
    """`sim report`: the HTML report (and figures) of the batches or scenarios asked for, else the latest batch."""
    if args.sweep is not None:
        if args.batch or args.scenario or args.reference:
            raise BadInput("--sweep reports one sweep; leave out --batch, --scenario and --reference")
        return cli_sweeps.report_stored(args, BadInput)
    out = args.out or (None if args.figures else defaults.REPORT_OUT)
    try:
        if out is not None:
            report.check_writable(out)
        if args.figures is not None:
            _writable_folder(args.figures, "--figures")
        record = validation.read_record(args.validation or report.DEFAULT_VALIDATION)
        if args.validation is not None and record is None:
            raise BadInput(f"--validation {args.validation}: no such file; write one with `sim validate`, or leave "
                           f"the option out to use {report.DEFAULT_VALIDATION} when it exists")
        try:
            loto = report_text.read_loto(args.loto)
        except ValueError as e:
            raise BadInput(str(e)) from None
        db = store.Store(args.db, create=False)
        sections = report.select(db, args.batch, args.scenario)
        if args.reference:
            sections = report.with_reference(sections, args.reference)
        if args.figures is not None:
            paths = report.save_figures(sections, args.figures)
            print(f"figures: {len(paths) // 2} figures as PNG and SVG in {args.figures}")
        if out is not None:
            report.write(report.build(sections, db.url, validation=record,
                                      validation_path=args.validation or report.DEFAULT_VALIDATION, loto=loto,
                                      loto_path=args.loto), out)
            print(f"report:  {out}")
    except report.ReportError as e:
        raise BadInput(str(e)) from None
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """`sim bench`: measure the speed and memory figures and write them to --out."""
    from sim import bench

    _writable_folder(args.out.parent, "--out")
    bench.run(args.out, quick=args.quick)
    print(f"wrote {args.out}")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    """`sim explore`: the scenario, its arms and the port are checked before the server starts."""
    if importlib.util.find_spec("solara") is None:
        raise BadInput("the explorer needs Solara: pip install -e '.[explore]' (make explore installs it)")
    loaded = scenario.load(args.scenario)
    try:
        arm, reference = explore_model.default_arms(loaded, args.arm, args.reference)
    except ValueError as e:
        raise BadInput(str(e)) from None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            s.bind(("127.0.0.1", args.port))
        except OSError as e:
            raise BadInput(f"--port {args.port}: cannot listen on 127.0.0.1:{args.port} ({e.strerror or e}); "
                           "choose another port") from None
    from sim import explore

    try:
        return explore.serve(args.scenario, arm, reference, args.port)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

