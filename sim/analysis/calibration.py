"""Calibrate model parameters to a targets file: Optuna (TPE) on a replicate-averaged loss.

    python -m sim.analysis.calibration --trials 80 --replicates 12 --jobs 2 --out results/calibration.json

Each trial sets the free parameters, runs every scenario of the targets file in memory (no store)
with common random numbers, and scores the targets that are not held out (`holdout: true` in the
targets file, or `--hold-out ID`): loss = sum over targets of the squared distance
of the simulated mean from the published value in units of half the accept band (direction-only
targets score only their distance outside the band). The best trial's values are written out; the
spread of the best 10% of trials is a rough guide to how well each parameter is pinned down (not a
posterior). docs/calibration.md records a run and which target constrains which parameter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

# The free parameters and their search ranges (inside each parameter's plausible range).
from sim import inputs, parameters, scenario
from sim.analysis import metrics, validation
from sim.runs import executors, provenance, runner

# Calibration runs in stages, each fitting its parameters to the targets of its trials with the earlier
# stages' values fixed: the untreated course first (it underlies every arm), then pills (drug, placebo,
# stopping, relapse), then exercise. Search ranges lie inside each parameter's plausible range.
STAGES: dict[str, dict] = {
    "course": {
        "scenarios": ("natural_course_year.yaml", "waitlist_course.yaml"),
        "free": {"symptoms.natural_improvement": (0.0, 0.25), "course.episode_median_days": (150.0, 700.0),
                 "course.episode_shape": (0.5, 1.2), "symptoms.course_spread": (0.05, 0.5)}},
    "pills": {
        "scenarios": ("antidepressant_acute.yaml", "continuation_vs_discontinuation.yaml"),
        "free": {"medication.effect": (0.15, 0.6), "pill.stop_base": (0.001, 0.008),
                 "pill.stop_no_benefit": (0.0, 0.015), "pill.stop_settle_days": (30.0, 360.0),
                 "episode.relapse_given_event": (0.1, 0.9), "episode.drug_protection": (0.3, 0.95),
                 "placebo.benefit": (0.0, 0.3), "response.drug_spread": (0.2, 1.0)}},
    "exercise": {
        "scenarios": ("stubbs_dropout.yaml", "meta_end_of_treatment.yaml", "dose_trial.yaml",
                      "exercise_vs_sertraline.yaml", "exercise_augmentation_older.yaml",
                      "exercise_augmentation_ssri.yaml", "long_term_maintenance.yaml", "habit_formation.yaml"),
        "free": {"dropout.base": (0.1, 0.3), "intention.bias": (1.6, 2.6),
                 "symptoms.plasticity_benefit": (0.5, 0.8), "symptoms.plasticity_half": (0.4, 0.9),
                 "symptoms.plasticity_hill": (3.0, 5.0), "plasticity.gain": (0.03, 0.12),
                 "symptoms.contact_benefit": (0.0, 0.2), "symptoms.efficacy_benefit": (0.1, 0.4),
                 "response.exercise_spread": (0.5, 1.0), "response.nonspecific_spread": (0.2, 0.6),
                 "habit.event_quit": (0.2, 0.7), "age.plasticity_decline": (0.0, 0.2)}},
}
FREE = {k: r for stage in STAGES.values() for k, r in stage["free"].items()}


def with_parameters(loaded: scenario.LoadedScenario, values: dict[str, float]) -> scenario.LoadedScenario:
    """The scenario with parameter overrides added (its own overrides win)."""
    data = inputs.load_yaml(loaded.text, loaded.path)
    data["parameters"] = {**values, **(data.get("parameters") or {})}
    s, arms = scenario.parse(data, loaded.path)
    return scenario.LoadedScenario(scenario=s, path=loaded.path, text=yaml.safe_dump(data),
                                   sha256="calibration", arms=arms)


def frames_of(loaded: scenario.LoadedScenario, replicates: int, executor) -> metrics.Frames:
    """Run every arm x replicate in memory and gather the records as metric frames."""
    groups = runner.stacks(runner.tasks(loaded, replicates), executors.workers_of(executor))
    recs = [r for stack in executor.map(runner.run_tasks, [loaded] * len(groups), groups) for r in stack]
    tag = lambda df, r: df.assign(arm=r.arm, replicate=r.replicate)  # noqa: E731
    return metrics.Frames(participants=pd.concat([tag(r.participants, r) for r in recs], ignore_index=True),
                          daily=pd.concat([tag(r.daily, r) for r in recs], ignore_index=True),
                          weekly=pd.concat([tag(r.weekly, r) for r in recs], ignore_index=True),
                          outcomes=loaded.scenario.outcomes, programme_weeks=loaded.scenario.weeks,
                          assessments=pd.concat([tag(r.assessments, r) for r in recs], ignore_index=True))


def target_loss(t: validation.Target, mean: float) -> float:
    """Squared distance from the published value (or from the band, for a direction) in half-bands."""
    low, high = t.accept
    half = (high - low) / 2 or 1.0
    if not math.isfinite(mean):
        return 25.0
    if isinstance(t.published, str):
        return (max(0.0, low - mean, mean - high) / half) ** 2
    return ((mean - t.published) / half) ** 2


def evaluate(targets: validation.Targets, values: dict[str, float], replicates: int | dict[str, int],
             executor) -> pd.DataFrame:
    """Every target's simulated mean under the given parameter values (replicates: one count, or one per
    scenario file)."""
    reps = replicates if isinstance(replicates, dict) else dict.fromkeys(targets.scenarios, replicates)
    frames = {name: frames_of(with_parameters(ls, values), reps[name], executor)
              for name, ls in targets.scenarios.items()}
    out = validation.evaluate(targets, frames)
    out["loss"] = [target_loss(t, m) for t, m in zip(targets.targets, out["mean"])]
    return out


def sensitivity(targets: validation.Targets, values: dict[str, float], replicates: int, executor,
                step: float = 0.1, log=print) -> pd.DataFrame:
    """Which target constrains which parameter: for each free parameter moved by +-`step` of its search
    range around `values`, the shift of each target's simulated mean in half accept bands (same seeds, so
    the difference is the parameter's effect, not noise). Rows are targets, columns parameters."""
    half = {t.id: ((t.accept[1] - t.accept[0]) / 2 or 1.0) for t in targets.targets}
    out = {}
    for k, (lo, hi) in FREE.items():
        d = step * (hi - lo)
        p = parameters.BY_NAME[k]
        high, low = min(values[k] + d, p.high), max(values[k] - d, p.low)  # stay inside the declared range
        up = evaluate(targets, {**values, k: high}, replicates, executor).set_index("id")["mean"]
        down = evaluate(targets, {**values, k: low}, replicates, executor).set_index("id")["mean"]
        out[k] = (up - down) / pd.Series(half) * (2 * d / (high - low))  # per the same +-step move
        log(f"sensitivity of {k}: done")
    return pd.DataFrame(out)


def sensitivity_markdown(table: pd.DataFrame) -> str:
    """The sensitivity table as markdown, with each target's most influential parameter."""
    cols = list(table.columns)
    lines = ["| target | " + " | ".join(f"`{c}`" for c in cols) + " | most influential |",
             "|---|" + "---:|" * len(cols) + "---|"]
    for tid, row in table.iterrows():
        top = row.abs().idxmax()
        lines.append(f"| {tid} | " + " | ".join(f"{v:+.2f}" for v in row) + f" | `{top}` |")
    return "\n".join(lines)


def subset(targets: validation.Targets, files: tuple[str, ...]) -> validation.Targets:
    """The targets (and their scenarios) of some trial replicas only."""
    keep = [t for t in targets.targets if t.scenario in files]
    return dataclasses.replace(targets, targets=keep,
                               scenarios={k: v for k, v in targets.scenarios.items() if k in files})


def without(targets: validation.Targets, ids: set[str] | frozenset[str]) -> validation.Targets:
    """The targets minus those with the given ids (scenarios left without a target are dropped)."""
    keep = [t for t in targets.targets if t.id not in ids]
    files = {t.scenario for t in keep}
    return dataclasses.replace(targets, targets=keep,
                               scenarios={k: v for k, v in targets.scenarios.items() if k in files})


def fit_stage(part: validation.Targets, name: str, values: dict[str, float], trials: int, replicates: int,
              executor, seed: int = 0, warm_start: bool = True, log=print) -> dict:
    """One Optuna study of stage `name` on the targets in `part` (other parameters fixed at `values`);
    trial 0 is `values` when `warm_start`, else the search starts from the sampler's random draws. Returns
    the best values of the stage's parameters, its best loss and the spread of its best 10% of trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    free = STAGES[name]["free"]
    if not part.targets:
        raise ValueError(f"stage {name!r} has no target left to fit (all held out)")

    def objective(trial: "optuna.Trial") -> float:
        vals = {**values, **{k: trial.suggest_float(k, lo, hi) for k, (lo, hi) in free.items()}}
        table = evaluate(part, vals, replicates, executor)
        loss = float(table.loss.sum())
        inside = int(((table.accept_low <= table["mean"]) & (table["mean"] <= table.accept_high)).sum())
        log(f"{name} trial {trial.number:3d}: loss {loss:8.3f}  means in band {inside}/{len(table)}")
        return loss

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    if warm_start:
        study.enqueue_trial({k: min(max(values[k], lo), hi) for k, (lo, hi) in free.items()})
    study.optimize(objective, n_trials=trials)
    done = sorted((t for t in study.trials if t.value is not None), key=lambda t: t.value)
    top = done[: max(3, len(done) // 10)]
    spread = {k: {"low": float(np.min([t.params[k] for t in top])), "high": float(np.max([t.params[k] for t in top]))}
              for k in free}
    return {"best": dict(study.best_params), "loss": float(study.best_value), "spread": spread}


def calibrate(targets: validation.Targets, trials: int, replicates: int, executor, seed: int = 0,
              stages: list[str] | None = None, log=print, hold_out: frozenset[str] = frozenset(),
              with_sensitivity: bool = True) -> dict:
    """Run one Optuna study per stage (in STAGES order, earlier stages' best values fixed) on every target
    except the held-out ones; returns the best values, the per-target table over all targets (held-out
    ones marked), each stage's spread of its best 10% and the sensitivity."""
    held = validation.held_out(targets, hold_out)
    fitted = without(targets, held)
    values = dict(parameters.DEFAULTS)
    spread, losses = {}, {}
    for name in stages or list(STAGES):
        part = subset(fitted, STAGES[name]["scenarios"])
        if not part.targets:
            log(f"stage {name}: every target held out; its parameters keep their values")
            continue
        fit = fit_stage(part, name, values, trials, replicates, executor, seed, log=log)
        values.update(fit["best"])
        spread.update(fit["spread"])
        losses[name] = fit["loss"]
    best = {k: values[k] for k in FREE}
    table = evaluate(targets, values, replicates, executor)
    table["held_out"] = table.id.isin(held)
    sens = sensitivity(fitted, values, replicates, executor, log=log) if with_sensitivity else pd.DataFrame()
    return {"best": best, "loss": float(table.loss[~table.held_out].sum()), "stage_losses": losses,
            "spread_of_best_10pct": spread, "held_out": sorted(held), "sensitivity": sens.to_dict("index"),
            "targets": table[["id", "published", "mean", "accept_low", "accept_high", "passed", "loss", "held_out"]]
            .to_dict("records"), "trials_per_stage": trials, "replicates": replicates,
            "model_hash": provenance.model_hash(), "code_version": provenance.code_version()}


def main(argv: list[str] | None = None) -> int:
    """Command line of the calibration."""
    ap = argparse.ArgumentParser(prog="python -m sim.analysis.calibration", description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=Path, default=validation.DEFAULT_TARGETS,
                    help=f"targets file (default {validation.DEFAULT_TARGETS})")
    ap.add_argument("--trials", type=int, default=80, help="Optuna trials per stage (default 80)")
    ap.add_argument("--replicates", type=int, default=12, help="replicate trials per scenario and trial (default 12)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="runs computed at once: this process and N - 1 workers (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    ap.add_argument("--stage", action="append", choices=list(STAGES),
                    help="fit only this stage (repeatable; default: every stage in order)")
    ap.add_argument("--hold-out", nargs="+", default=[], metavar="ID",
                    help="leave these targets out of the loss, besides those marked `holdout: true` in the "
                         "targets file (default: none)")
    ap.add_argument("--out", type=Path, default=Path("results/calibration.json"),
                    help="JSON result to write (default results/calibration.json)")
    ap.add_argument("--sensitivity-only", action="store_true",
                    help="skip the search; print which target constrains which parameter around the defaults")
    args = ap.parse_args(argv)
    try:
        targets = validation.load_targets(args.targets)
        validation.held_out(targets, args.hold_out)
    except scenario.ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.sensitivity_only:
        with executors.executor("processes", args.jobs) as ex:
            table = sensitivity(targets, dict(parameters.DEFAULTS), args.replicates, ex)
        print(f"shift of each target's mean, in half accept bands, for +-10% of each search range "
              f"({args.replicates} replicates, {time.perf_counter() - t0:.0f} s):")
        print(sensitivity_markdown(table))
        return 0
    with executors.executor("processes", args.jobs) as ex:
        result = calibrate(targets, args.trials, args.replicates, ex, args.seed, args.stage,
                           hold_out=frozenset(args.hold_out))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps({"best": result["best"], "loss": result["loss"]}, indent=2))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
