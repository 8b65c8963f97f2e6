"""Leave-one-trial-out validation: each trial replica's targets checked against parameters fitted without it.

    python -m sim.analysis.loto --trials 60 --replicates 8 --jobs 2 --out results/loto.json   (make loto)

For each trial replica (one scenario file of the targets file; a "fold"): its targets are held out, the
calibration stage whose scenarios include it (sim.analysis.calibration.STAGES) is refitted on the stage's
remaining targets, and the held-out targets are then computed under the refitted values at the
replicate counts `sim validate` uses. The refit starts from the sampler's own draws, not from the
current defaults (which were fitted with the held-out trial), so the held-out trial cannot leak in
through the starting point. What stays fixed is stated in every record: the other stages' parameters
and the hand-set ones keep their defaults, which were fitted with every trial (docs/validation.md).
Each finished fold is written at once, so a killed run resumes with the folds it has not done. Tables
judge the stored rows by the current pass rule (sim.analysis.validation.rejudge).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from sim import parameters, scenario
from sim.analysis import calibration, validation
from sim.runs import executors, provenance

COLUMNS = ["id", "published", "mean", "p2.5", "p97.5", "percentile", "accept_low", "accept_high", "passed",
           "verdict", "replicates"]


def stage_of(scenario_file: str) -> str:
    """The calibration stage whose parameters a trial replica informs."""
    for name, stage in calibration.STAGES.items():
        if scenario_file in stage["scenarios"]:
            return name
    raise KeyError(f"{scenario_file} is in no calibration stage ({', '.join(calibration.STAGES)})")


def run_fold(targets: validation.Targets, trial: str, trials: int, replicates: int, executor,
             eval_replicates: dict[str, int], seed: int = 0, log=print) -> dict:
    """Hold out one trial replica's targets, refit its stage from scratch, and evaluate the stage's targets
    (held out and in-sample) under the refitted values."""
    stage = stage_of(trial)
    part = calibration.subset(targets, calibration.STAGES[stage]["scenarios"])
    ids = {t.id for t in part.targets if t.scenario == trial}
    t0 = time.perf_counter()
    fit = calibration.fit_stage(calibration.without(part, ids), stage, dict(parameters.DEFAULTS), trials,
                                replicates, executor, seed, warm_start=False, log=log)
    values = {**parameters.DEFAULTS, **fit["best"]}
    table = calibration.evaluate(part, values, {k: eval_replicates[k] for k in part.scenarios}, executor)
    table["held_out"] = table.id.isin(ids)
    rows = json.loads(table[COLUMNS + ["held_out"]].to_json(orient="records"))
    return {"trial": trial, "stage": stage, "held_out": sorted(ids), "refitted": fit["best"],
            "fit_loss": fit["loss"], "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def defaults_table(targets: validation.Targets, eval_replicates: dict[str, int], executor) -> list[dict]:
    """Every target under the current defaults (fitted to all of them): the in-sample reference."""
    table = calibration.evaluate(targets, dict(parameters.DEFAULTS), eval_replicates, executor)
    return json.loads(table[COLUMNS].to_json(orient="records"))


def _g(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def markdown(record: dict) -> str:
    """The leave-one-trial-out result as a markdown table: each held-out target out of sample, beside its
    in-sample value under the defaults."""
    base = {r["id"]: r for r in record.get("defaults", [])}
    lines = ["| trial held out (stage refitted) | target | published | out of sample: mean [95% of reps] | "
             "percentile | accept | result | in-sample mean (defaults) |", "|---|---|---:|---|---:|---|---|---:|"]
    n = passed = 0
    for fold in record["folds"]:
        for r in (validation.rejudge(r) for r in fold["rows"] if r["held_out"]):
            n += 1
            passed += bool(r["passed"])
            ins = base.get(r["id"], {}).get("mean")
            word = validation.result_word(r) if r["passed"] else f"**{validation.result_word(r)}**"
            lines.append(f"| {fold['trial'].removesuffix('.yaml')} ({fold['stage']}) | {r['id']} | {r['published']} | "
                         f"{_g(r['mean'])} [{_g(r['p2.5'])}, {_g(r['p97.5'])}] ({r['replicates']}) | "
                         f"{'-' if r['percentile'] is None else format(r['percentile'], '.1f').removesuffix('.0')} | "
                         f"{r['accept_low']:g} to {r['accept_high']:g} | {word} | "
                         f"{_g(ins)} |")
    lines.append(f"\n{passed} of {n} held-out targets pass out of sample.")
    return "\n".join(lines + ["", refit_quality(record)])


def _loss(rows: list[dict]) -> float:
    """The calibration loss of result rows (sim.analysis.calibration.target_loss), NaN means scoring 25."""
    from types import SimpleNamespace

    return sum(calibration.target_loss(SimpleNamespace(accept=(r["accept_low"], r["accept_high"]),
                                                       published=r["published"]),
                                       float("nan") if r["mean"] is None else r["mean"]) for r in rows)


def refit_quality(record: dict) -> str:
    """Per fold, how well the refit met the stage's in-sample targets, beside the defaults on the same
    targets (both at the `sim validate` replicate counts): a fold whose refit fits worse than the defaults
    may fail out of sample for want of search budget rather than of predictive power."""
    base = {r["id"]: r for r in record.get("defaults", [])}
    lines = ["| trial held out | in-sample targets of its stage | refit: pass, loss | defaults: pass, loss |",
             "|---|---:|---|---|"]
    for fold in record["folds"]:
        mine = [validation.rejudge(r) for r in fold["rows"] if not r["held_out"]]
        theirs = [validation.rejudge(base[r["id"]]) for r in mine if r["id"] in base]
        if not mine:
            lines.append(f"| {fold['trial'].removesuffix('.yaml')} | 0 | - | - |")
            continue
        lines.append(f"| {fold['trial'].removesuffix('.yaml')} | {len(mine)} | "
                     f"{sum(r['passed'] for r in mine)}, {_loss(mine):.2f} | "
                     f"{sum(r['passed'] for r in theirs)}, {_loss(theirs):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line of leave-one-trial-out validation."""
    ap = argparse.ArgumentParser(prog="python -m sim.analysis.loto", description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=Path, default=validation.DEFAULT_TARGETS,
                    help=f"targets file (default {validation.DEFAULT_TARGETS})")
    ap.add_argument("--trials", type=int, default=60, help="Optuna trials per refit (default 60)")
    ap.add_argument("--replicates", type=int, default=8, help="replicates per scenario inside the refit (default 8)")
    ap.add_argument("--eval-replicates", type=int,
                    help="replicates for the held-out check (default: those `sim validate` runs)")
    ap.add_argument("--trial", action="append", default=[], metavar="FILE",
                    help="hold out only this replica, e.g. dose_trial.yaml (repeatable; default: every replica)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="runs computed at once: this process and N - 1 workers (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    ap.add_argument("--out", type=Path, default=Path("results/loto.json"),
                    help="JSON record, resumed if it exists, with a .md table next to it (default results/loto.json)")
    args = ap.parse_args(argv)
    try:
        targets = validation.load_targets(args.targets)
    except scenario.ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    order = [f for stage in calibration.STAGES.values() for f in stage["scenarios"]]
    folds = args.trial or sorted(dict.fromkeys(t.scenario for t in targets.targets),
                                 key=lambda f: order.index(f) if f in order else len(order))
    if bad := [f for f in folds if f not in targets.scenarios]:
        print(f"error: --trial {bad[0]}: not a scenario of {args.targets} ({', '.join(targets.scenarios)})",
              file=sys.stderr)
        return 2
    need = validation.replicates_needed(targets, args.eval_replicates)
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    if record.get("model_hash") not in (None, provenance.model_hash()):
        record = {}  # another model's folds are not resumed
    record.update({"targets": str(args.targets), "trials": args.trials, "replicates": args.replicates,
                   "eval_replicates": need, "seed": args.seed, "model_hash": provenance.model_hash(),
                   "code_version": provenance.code_version(), "fixed": "other stages' parameters and the hand-set "
                   "ones at their defaults (fitted with every trial)"})
    record.setdefault("folds", [])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with executors.executor("processes", args.jobs) as ex:
        if "defaults" not in record:
            record["defaults"] = defaults_table(targets, need, ex)
        for trial in folds:
            if any(f["trial"] == trial for f in record["folds"]):
                print(f"{trial}: already done, kept")
                continue
            print(f"== holding out {trial} (refitting stage {stage_of(trial)}, {args.trials} trials)", flush=True)
            record["folds"].append(run_fold(targets, trial, args.trials, args.replicates, ex, need, args.seed,
                                            log=lambda m: print(m, flush=True)))
            args.out.write_text(json.dumps(record, indent=1))
            args.out.with_suffix(".md").write_text(markdown(record) + "\n")
    print(markdown(record))
    print(f"written: {args.out} (and {args.out.with_suffix('.md').name})")
    frame = pd.DataFrame([validation.rejudge(r) for f in record["folds"] for r in f["rows"] if r["held_out"]])
    return 0 if frame.empty or frame.passed.all() else 1


if __name__ == "__main__":
    sys.exit(main())
