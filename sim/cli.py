"""The `sim` command line: a thin layer over scenario loading, the runner, the store and the reports."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import traceback
from concurrent.futures import as_completed
from pathlib import Path

from tqdm import tqdm

from sim import metrics, plots, provenance, results, runner, store
from sim.scenario import LoadedScenario, ScenarioError, load

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the user must fix; printed as one message with exit code 2."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="sim", description="Virtual trials of exercise adherence in depression.")
    parser.add_argument("--version", action="version", version=f"sim {provenance.code_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenarios' arms x replicates, store, summarise and plot")
    run.add_argument("scenarios", nargs="+", type=Path, help="scenario YAML files")
    run.add_argument("--replicates", type=_positive, help="replicate trials per arm (default: the scenario's)")
    run.add_argument("--jobs", type=_positive, default=1, help="worker processes (default 1)")
    run.add_argument("--db", help=f"SQLAlchemy URL of the results store (default $SIM_DB_URL or {store.DEFAULT_URL})")
    run.add_argument("--figures", type=Path, default=Path("results/figures"), help="folder for figures")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sim` console script."""
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run}[args.command](args)
    except (BadInput, ScenarioError, store.StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are stored; run the same command again to resume.", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    """`sim run`: every scenario is validated before anything runs."""
    loaded = [load(p) for p in args.scenarios]
    names = [ls.scenario.name for ls in loaded]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BadInput(f"two scenario files share the name {dup!r}; names must be unique within one run")
    db = store.Store(args.db)
    failures = 0
    with runner.make_executor(args.jobs) as executor:
        for ls in loaded:
            failures += _run_scenario(ls, db, executor, args)
    return 1 if failures else 0


def _run_scenario(ls: LoadedScenario, db: store.Store, executor, args) -> int:
    sc = ls.scenario
    reps = args.replicates or sc.replicates
    scenario_id = db.add_scenario(ls)
    batch_id = db.start_batch(scenario_id, reps)
    todo = runner.tasks(ls, reps)
    keys = {t: store.run_key(ls.sha256, t.arm, t.replicate, t.seed_label(sc.seed)) for t in todo}
    done = db.done_keys(list(keys.values()))
    pending = [t for t in todo if keys[t] not in done]
    print(f"\n== {sc.name} ({ls.path}): {len(sc.arms)} arms x {reps} replicates x {sc.population.size} "
          f"participants, {sc.weeks} + {sc.follow_up_weeks} weeks; {len(todo) - len(pending)} runs already stored")
    failures = 0
    futures = {executor.submit(runner.run_task, ls, t): t for t in pending}
    bar = tqdm(total=len(pending), desc=sc.name, unit="run", disable=None, dynamic_ncols=True)
    for fut in as_completed(futures):
        t = futures[fut]
        try:
            rec = fut.result()
        except Exception as e:  # noqa: BLE001 - a failed run is stored as failed and reported
            failures += 1
            db.save_failure(keys[t], scenario_id, batch_id, t.arm, t.replicate, t.seed_label(sc.seed),
                            "".join(traceback.format_exception_only(e)).strip())
            bar.set_postfix(failed=failures)
        else:
            db.save_run(keys[t], scenario_id, batch_id, rec)
        bar.update()
    bar.close()
    db.finish_batch(batch_id)
    if failures:
        print(f"{failures} runs failed; their errors are stored in the runs table (status 'failed').",
              file=sys.stderr)
    res = results.scenario_results(db, ls.sha256, reps)
    _summarise(ls, res, reps, db.url, args.figures)
    return failures


def _pct(v: float) -> str:
    return "   -" if v != v else f"{100 * v:5.1f}"


def _summarise(ls: LoadedScenario, res: results.ScenarioResults, reps: int, url: str, figures: Path) -> None:
    sc = ls.scenario
    if res.participants.empty:
        print("no finished runs to summarise")
        return
    version = provenance.code_version()
    ends = [(sc.weeks, "end of programme")]
    if sc.follow_up_weeks:
        ends.append((sc.weeks + sc.follow_up_weeks, "end of follow-up"))
    for week, label in ends:
        trials = metrics.trial_metrics(res.participants, res.weekly, sc.outcomes, sc.reference, week)
        table = metrics.across_replicates(trials, list(sc.arms))
        print(f"\n{sc.name}: week {week} ({label}); means over {reps} replicate trials; "
              f"severity on {sc.outcomes.scale}; g against '{sc.reference}' (positive = fewer symptoms)")
        print(f"{'arm':<24}{'n':>6}{'adher%':>8}{'drop%':>7}{'change':>8}{'chg%':>7}{'resp%':>7}{'remit%':>7}"
              f"{'>=150%':>7}  {'g [95% CI of one trial]':<24}{'g 95% over reps':<16}{'power':>6}")
        for _, r in table.iterrows():
            g = "reference" if r.arm == sc.reference else f"{r.g:5.2f} [{r.g_low:5.2f}, {r.g_high:5.2f}]"
            spread = "" if r.arm == sc.reference else f"{r['g_p2.5']:5.2f} to {r['g_p97.5']:5.2f}"
            power = "" if r.arm == sc.reference else _pct(r.power)
            print(f"{r.arm:<24}{r.n:6.0f}{_pct(r.adherence):>8}{_pct(r.dropout):>7}{r.change:8.1f}{r.change_pct:7.1f}"
                  f"{_pct(r.response):>7}{_pct(r.remission):>7}{_pct(r.meets_guideline):>7}  {g:<24}{spread:<16}"
                  f"{power:>6}")
    if sc.checks:
        checks = metrics.evaluate_checks(sc.checks, res.participants, res.weekly, sc.outcomes, sc.reference)
        print("\nplausibility against published findings (mean over replicates [95% of replicates]):")
        for _, c in checks.iterrows():
            verdict = "ok " if c.passed else "OFF"
            print(f"  {verdict} {c.id:<28} {c.metric} {c.arm} week {c.week}: {c['mean']:.3f} "
                  f"[{c['p2.5']:.3f}, {c['p97.5']:.3f}]  accept {c.accept}  ({c.source})")
    footer = (f"scenario {sc.name} (sha256 {ls.sha256[:10]}), seed {sc.seed}, {reps} replicates x "
              f"{sc.population.size}/arm, sim {version}, {dt.date.today().isoformat()}")
    fig = plots.outcome_curves(res.weekly, sc.weeks, sc.outcomes.scale, footer, list(sc.arms))
    paths = plots.save(fig, figures / f"{sc.name}_outcomes")
    print(f"\nresults: {url}\nfigure:  {paths[0]} (and .svg)")
