"""Run a scenario's arms x replicates, with common random numbers across the arms of a replicate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np

from sim import parameters
from sim.model import population
from sim.model.model import AdherenceModel
from sim.model.stack import Stack
from sim.runs import records
from sim.scenario import LoadedScenario

T = TypeVar("T")
STACK_RUNS = 64  # runs advanced together in one stack, at most


@dataclass(frozen=True)
class Task:
    """One run: an arm of a scenario in one replicate."""

    arm: str
    replicate: int

    def seed_label(self, scenario_seed: int) -> str:
        return f"{scenario_seed}/{self.replicate}"


def replicate_streams(seed: int, replicate: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Generators for the cohort and for the daily draws of one replicate (shared by all its arms)."""
    cohort_ss, days_ss = np.random.SeedSequence(seed, spawn_key=(replicate,)).spawn(2)
    return np.random.default_rng(cohort_ss), np.random.default_rng(days_ss)


def build_model(loaded: LoadedScenario, arm: str, replicate: int, reference: bool = False,
                panel: bool | None = None) -> AdherenceModel:
    """The model for one arm of one replicate, with that replicate's cohort and random stream."""
    return build_models(loaded, [Task(arm, replicate)], reference, panel)[0]


def build_models(loaded: LoadedScenario, todo: list[Task], reference: bool = False,
                 panel: bool | None = None) -> list[AdherenceModel]:
    """The models of several tasks; the arms of one replicate share its cohort, drawn once."""
    return _build([(loaded, t) for t in todo], reference, panel)


def _build(pairs: list[tuple[LoadedScenario, Task]], reference: bool = False,
           panel: bool | None = None) -> list[AdherenceModel]:
    cohorts, models = {}, []
    for ls, t in pairs:
        sc = ls.scenario
        cohort_rng, days_rng = replicate_streams(sc.seed, t.replicate)
        key = (id(ls), t.replicate)
        if key not in cohorts:
            cohorts[key] = population.draw(sc.population, sc.outcomes, parameters.resolve(sc.parameters), cohort_rng)
        models.append(AdherenceModel(ls, arm=t.arm, cohort=cohorts[key], rng=days_rng, reference=reference,
                                     panel=panel, habit_history=True))  # records hold days to habit
    return models


def run_pairs(pairs: list[tuple[LoadedScenario, Task]], panel: bool = True) -> list[records.RunRecords]:
    """Run tasks of scenarios that share their structure (`structure`) advanced together in one stack, and
    return their records; each run's records are those it gives alone. Wall time is shared equally."""
    start = time.perf_counter()
    models = Stack(_build(pairs, panel=panel)).run()
    each = (time.perf_counter() - start) / len(models)
    return [records.from_model(m, t.replicate, t.seed_label(ls.scenario.seed), each, panel=panel)
            for m, (ls, t) in zip(models, pairs)]


def run_tasks(loaded: LoadedScenario, todo: list[Task], panel: bool = True) -> list[records.RunRecords]:
    """Run several tasks of one scenario advanced together (one stack) and return their records."""
    return run_pairs([(loaded, t) for t in todo], panel)


def structure(loaded: LoadedScenario) -> tuple:
    """What runs stacked together must share: days, scale and the number of assessments."""
    sc = loaded.scenario
    return sc.days, sc.outcomes.scale, len(sc.outcomes.assessments(sc.weeks + sc.follow_up_weeks))


def run_task(loaded: LoadedScenario, task: Task, panel: bool = True) -> records.RunRecords:
    """Run one task to completion and return its records (with the weekly panel if `panel`)."""
    return run_tasks(loaded, [task], panel)[0]


def stacks(todo: list[T], workers: int = 1, runs: int = STACK_RUNS, heads: int = 0,
           key: Callable[[T], object] | None = None) -> list[list[T]]:
    """Split tasks, in order, into stacks of at most `runs`: for a pool, `heads` short ones first, then each
    about what is left / (2 x workers), down to single runs; for one worker, equal ones (two, if `runs`
    allows). A stack never holds tasks of two `key`s."""
    # Guided self-scheduling (Polychronopoulos & Kuck 1987): big stacks while much is left cost little per run,
    # and the last ones are single runs, so no worker is left computing (nor the writer storing) a long stack
    # after the others are done. The heads (a quarter of the first stack each, one per worker) let a writer
    # waiting on a pool start storing after a few runs rather than a whole stack. With one worker there is
    # nothing to balance, and a serial batch that alternates computing and storing more often is ~4% slower.
    share = 2 * max(workers, 1)

    def guided(left: int) -> int:
        return max(1, min(runs, -(-(left if workers > 1 else len(todo)) // share)))

    head, out, k = max(1, guided(len(todo)) // 4), [], 0
    while k < len(todo):
        stack = todo[k:k + (head if len(out) < heads else guided(len(todo) - k))]
        if key is not None:
            first = key(stack[0])
            stack = stack[:next((j for j, t in enumerate(stack) if key(t) != first), len(stack))]
        out.append(stack)
        k += len(stack)
    return out


def tasks(loaded: LoadedScenario, replicates: int | None = None) -> list[Task]:
    """All (arm, replicate) tasks of a scenario, replicate-major."""
    n = replicates or loaded.scenario.replicates
    return [Task(arm, r) for r in range(n) for arm in loaded.scenario.arms]
