"""The sweep commands of `sim`: `sim sweep`, `sim power` and `sim run --parameter-draws`.

Each builds a sweep (from a file, or in memory), runs it through the batch machinery into the store,
and prints what the analysis says; heavy modules are imported inside the command that uses them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sim import cli_guard, outputs
from sim.cli_defaults import EXECUTORS
from sim.lazy import lazy
from sim.vocabulary import TRAITS

yaml = lazy("yaml")
parameters, sweep_spec = lazy("sim.parameters"), lazy("sim.sweep_spec")
results, runner, store, sweep = lazy("sim.runs.results"), lazy("sim.runs.runner"), lazy("sim.runs.store"), lazy("sim.runs.sweep")
scenario = lazy("sim.scenario")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers, e.g. "
                                         "50,100,200,400") from None
    if not sizes or min(sizes) < 2 or max(sizes) > 200_000:
        raise argparse.ArgumentTypeError(f"{text!r}: each size is participants per arm, 2 to 200,000")
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a size")
    return sorted(sizes)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} must lie between 0 and 1 (e.g. 0.8)")
    return value


def add_parsers(sub, db_help: str, positive, replicates, scheduler) -> None:
    """Register `sweep` and `power` on the `sim` subcommand parser."""
    sw = sub.add_parser("sweep", help="run a sweep file (grid, lhs, sobol, morris, uncertainty) and analyse it")
    sw.add_argument("sweep", type=Path, help="sweep YAML file (docs/sweeps.md)")
    sw.add_argument("--replicates", type=replicates, help="replicate trials per point (default: the sweep's)")
    _common(sw, db_help, positive, scheduler)
    pw = sub.add_parser("power", help="power curve over sample sizes for one comparison (trial planning)")
    pw.add_argument("scenario", type=Path, help="scenario YAML file")
    pw.add_argument("--arm", required=True, help="the arm whose effect is to be detected")
    pw.add_argument("--reference", help="the arm it is compared with (default: the scenario's reference arm)")
    pw.add_argument("--sizes", type=_sizes, default=[50, 100, 200, 400],
                    help="participants per arm to try, comma-separated (default 50,100,200,400)")
    pw.add_argument("--week", type=positive, help="week of the comparison (default: end of the programme)")
    pw.add_argument("--replicates", type=replicates, default=200,
                    help="replicate trials per size (default 200; fewer than 100 gives wide Monte Carlo intervals)")
    pw.add_argument("--target", type=_fraction, default=0.8, help="power to reach (default 0.8)")
    pw.add_argument("--moderator", choices=TRAITS,
                    help="also the power to detect that the effect differs between this trait's lowest and "
                         "highest tertile (arm x tertile interaction; default: none)")
    _common(pw, db_help, positive, scheduler)


def _common(p, db_help: str, positive, scheduler) -> None:
    p.add_argument("--jobs", type=cli_guard.jobs, default=1,
                   help="runs computed at once (default 1; local processes: this one and N - 1 workers)")
    p.add_argument("--executor", choices=EXECUTORS, default="processes",
                   help="where runs execute: in this process, local processes (default), or Dask distributed")
    p.add_argument("--scheduler", type=scheduler, help="address of an existing Dask scheduler (implies --executor dask; default: "
                   "none, a local cluster)")
    p.add_argument("--db", help=db_help)
    p.add_argument("--figures", type=Path, default=Path("results/figures"),
                   help="folder for the figures (default results/figures)")
    p.add_argument("--out", type=Path, help="HTML report to write (default results/<sweep name>.html)")
    p.add_argument("--yes", action="store_true",
                   help="run even when the estimate is above the threshold that asks first (docs/reliability.md; "
                   "default: ask at a terminal, refuse otherwise)")


def _execute(sw: sweep_spec.Sweep, args, bad_input, command: str, panel: bool = False, with_base: bool = True):
    """Run the sweep into the store; the store and output folders are checked before anything runs."""
    kind = "dask" if args.scheduler else args.executor
    n = sweep_spec.design_size(sw)
    reps = getattr(args, "replicates", None) or sw.spec.replicates
    n_all, arms = n + with_base, len(sw.base.scenario.arms)
    size = ("of the sizes the design sets" if "population.size" in sw.factor_names
            else f"of {sw.base.scenario.population.size} participants")
    print(f"\n== sweep {sw.name} ({sw.path}): {sw.spec.design} design, {n} points{' + the base scenario' * with_base}"
          f" x {reps} replicates x {arms} arms = {n_all * reps * arms} runs {size}", flush=True)
    cli_guard.check_cost(_cost(sw, n_all * reps * arms), args.jobs if kind != "serial" else 1, args.yes, bad_input)
    with cli_guard.executor(kind, args.jobs, args.scheduler, bad_input) as ex:  # a pool warms up as the store opens
        db = store.Store(args.db, create=True)  # after the cost check: a refused sweep leaves no trace
        out = sweep.run_sweep(sw, db, ex, reps, command=command, executor_name=kind, panel=panel, with_base=with_base)
    print(f"sweep {out.sweep_id}: {out.runs - out.skipped} runs now, {out.skipped} already stored, {out.failed} "
          f"failed; {out.wall_seconds:.1f} s", flush=True)
    return db, out, reps


def _cost(sw: sweep_spec.Sweep, runs: int) -> list[tuple[int, int, int, int]]:
    """The sweep's runs for the cost estimate, at the largest population and length its factors reach."""
    sc, top = sw.base.scenario, {name: hi for name, (_, hi) in sw.bounds.items()}
    weeks = int(max(sc.weeks, top.get("weeks", 0)) + max(sc.follow_up_weeks, top.get("follow_up_weeks", 0)))
    return [(runs, int(max(sc.population.size, top.get("population.size", 0))), 7 * weeks, weeks)]


def _outputs(d, db: store.Store, figures: Path, html: Path) -> None:
    """Every figure of the sweep (PNG and SVG) and its HTML report, from one analysis `d` (SweepData)."""
    from sim.analysis import plots, report, sweep_plots, sweep_report

    folder, paths = figures / d.sw.name, []
    for key, make in sweep_plots.figure_makers(d.sw, d.res, d.values, d.summary, d.idx,
                                               sweep_report.footer(d.sw, d.res)).items():
        paths += plots.save(make(), folder / f"{d.sw.name}_{key}")
    report.write(sweep_report.build(d.sw, d.res, d.values, d.summary, d.idx, db.url, d.notes,
                                    sweep_path=d.row["path"]), html)
    print(f"\nresults: {db.url} (sweep {d.res.sweep_id}; points x outcomes: sim export --sweep {d.res.sweep_id})")
    print(f"figures: {len(paths) // 2} in {folder} (PNG and SVG)\nreport:  {html}")


def _writable(args, bad_input, name: str) -> None:
    from sim.analysis import report

    try:
        report.check_writable(args.out or Path("results") / f"{name}.html")
    except report.ReportError as e:
        raise bad_input(str(e)) from None
    args.figures.mkdir(parents=True, exist_ok=True)


def cmd_sweep(args, bad_input, command: str) -> int:
    """`sim sweep`: run a sweep file, print which factors matter for which outcome, write figures and report."""
    sw = sweep_spec.load_sweep(args.sweep)
    _writable(args, bad_input, sw.name)
    db, out, reps = _execute(sw, args, bad_input, command)
    return _report_sweep(sw, db, out, reps, args)


def _report_sweep(sw, db, out, reps, args) -> int:
    from sim.analysis import sweep_report, sweeps

    d = sweep_report.load(db, out.sweep_id)
    print()
    for note in d.notes:
        print(f"note: {note}")
    if sw.spec.design == "uncertainty":
        print(sweeps.uncertainty_text(sweeps.uncertainty(d.sw, d.values)))
        print()
    if not d.idx.empty:
        print(sweeps.ranking_text(d.sw, d.idx))
    else:
        print(sweeps.grid_text(d.sw, d.res.points, d.summary))
    _outputs(d, db, args.figures, args.out or Path("results") / f"{sw.name}.html")
    return 1 if out.failed else 0


def uncertainty_sweep(ls: scenario.LoadedScenario, draws: int, replicates: int | None, seed: int = 0) -> sweep_spec.Sweep:
    """The scenario under `draws` Latin-hypercube draws of parameters.UNCERTAIN over their declared ranges,
    with each arm's dropout and change and each effect against the reference, at the end of the programme
    and of follow-up."""
    sc = ls.scenario
    weeks = [sc.weeks] + ([sc.weeks + sc.follow_up_weeks] if sc.follow_up_weeks else [])
    outcomes = []
    for arm in sc.arms:
        outcomes.append({"id": f"{arm}.dropout", "metric": "dropout_rate", "arm": arm, "week": sc.weeks})
        for w in weeks:
            outcomes.append({"id": f"{arm}.change_pct.w{w}", "metric": "severity_change_pct", "arm": arm, "week": w})
            if arm != sc.reference:
                outcomes.append({"id": f"{arm}.g.w{w}", "metric": "effect_size", "arm": arm,
                                 "reference": sc.reference, "week": w})
    spec = {"name": f"{sc.name}-uncertainty"[:60], "base": Path(ls.path).name, "design": "uncertainty",
            "samples": draws, "replicates": replicates or sc.replicates, "seed": seed,
            "description": f"{sc.name} under {draws} draws of the main uncertain parameters (sim run "
                           "--parameter-draws)",
            "factors": [{"name": n} for n in parameters.UNCERTAIN
                        if n not in sc.parameters], "outcomes": outcomes}
    text = yaml.safe_dump(spec, sort_keys=False)
    return sweep_spec.check(sweep_spec.SweepFile.model_validate(spec), Path(ls.path), text, ls)


def run_parameter_draws(loaded: list[scenario.LoadedScenario], args, bad_input, command: str) -> int:
    """`sim run --parameter-draws N`: each scenario as an uncertainty sweep."""
    failed = 0
    for ls in loaded:
        try:
            sw = uncertainty_sweep(ls, args.parameter_draws, args.replicates)
        except scenario.ScenarioError as e:
            raise bad_input(f"{ls.path}: --parameter-draws: {e.allowed} ({e.field})") from None
        args.out = None
        _writable(args, bad_input, sw.name)
        db, out, reps = _execute(sw, args, bad_input, command)
        print(f"\n{ls.scenario.name}: intervals from trial sampling alone (the calibrated defaults) and with "
              f"parameter uncertainty ({len(parameters.UNCERTAIN)} uncertain parameters over their declared "
              "ranges, docs/sweeps.md)")
        failed += _report_sweep(sw, db, out, reps, args)
    return failed


def cmd_power(args, bad_input, command: str) -> int:
    """`sim power`: the power curve of one comparison over sample sizes."""
    from sim.analysis import plots, power, sweep_report
    from sim.scenario import load

    ls = load(args.scenario)
    sc = ls.scenario
    reference = args.reference or sc.reference
    try:
        sw = power.power_sweep(ls, args.arm, reference, args.sizes, args.replicates, args.week)
    except (ValueError, scenario.ScenarioError) as e:
        raise bad_input(f"{args.scenario}: {e}") from None
    week = args.week or sc.weeks
    _writable(args, bad_input, sw.name)
    panel = bool(args.moderator) and power.moderation_needs_panel(ls, week)
    db, out, reps = _execute(sw, args, bad_input, command, panel=panel, with_base=False)
    res = results.sweep_results(db, out.sweep_id, reps)
    table = power.power_table(res, sc.outcomes, args.arm, reference, week, moderator=args.moderator,
                              programme_weeks=sc.weeks)
    print()
    print(power.power_text(table, args.target, args.arm, reference, week))
    fig = power.power_figure(table, args.target, sweep_report.footer(sw, res),
                             f"{sc.name}: {args.arm} vs {reference} at week {week}")
    paths = plots.save(fig, args.figures / f"{sw.name}_power")
    csv = (args.out or Path("results") / f"{sw.name}.html").with_suffix(".csv")
    outputs.write_with(csv, lambda tmp: table.to_csv(tmp, index=False))
    print(f"\nfigure: {paths[0]} (and .svg)\ntable:  {csv}\nresults: {db.url} (sweep {out.sweep_id})")
    return 1 if out.failed else 0


def export_sweep(db: store.Store, sweep_id: int, out: Path, fmt: str) -> list[Path]:
    """Write a sweep's points x outcomes (replicate means, SD, SE) and its per-replicate outcome values."""
    from sim.analysis import sweeps

    sw, res = sweeps.stored(db, sweep_id)
    values = sweeps.outcome_values(sw, res)
    table = sweeps.points_outcomes(res.points, sweeps.point_summary(values))
    paths = []
    for name, df in (("sweep_points", table), ("sweep_outcomes", values)):
        path = out / f"{name}.{fmt}"
        outputs.write_with(path, lambda tmp, df=df: df.to_parquet(tmp, index=False) if fmt == "parquet"
                           else df.to_csv(tmp, index=False))
        paths.append(path)
    return paths



def report_stored(args, bad_input) -> int:
    """`sim report --sweep ID`: the HTML report (and figures with --figures) of a stored sweep."""
    from sim.analysis import report, sweep_report

    db = store.Store(args.db, create=False)
    try:
        d = sweep_report.load(db, args.sweep)
        out = args.out or Path("results") / f"{d.sw.name}.html"
        report.check_writable(out)
    except (sweep_report.SweepReportError, report.ReportError) as e:
        raise bad_input(str(e)) from None
    if args.figures is not None:
        _outputs(d, db, args.figures, out)
    else:
        report.write(sweep_report.build(d.sw, d.res, d.values, d.summary, d.idx, db.url, d.notes,
                                        sweep_path=d.row["path"]), out)
        print(f"report:  {out}")
    return 0
