"""Shared helpers: scenarios built from small dicts, so tests do not depend on scenarios/*.yaml."""

from __future__ import annotations

import copy
import os
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml

# SIM_TEST_SEED lets one check that the statistical tests hold over other seeds.
from sim import scenario
from sim.runs import runner

TEST_SEED = int(os.environ.get("SIM_TEST_SEED", "12345"))

BASE: dict = {
    "name": "test",
    "seed": TEST_SEED,
    "replicates": 2,
    "weeks": 12,
    "follow_up_weeks": 0,
    "population": {"size": 200},
    "arms": {"usual_care": {}},
}

# A standard supervised-class exercise arm and an unsupervised one, as arm dicts.
EXERCISE = {"prescription": {"sessions_per_week": 3, "minutes": 50, "intensity": 0.6}}
CLASS = {**EXERCISE, "support": {"kind": "class", "level": 0.8}}


def _merge(base: dict, over: dict) -> dict:
    """Recursive dict merge; values in `over` win (a None value deletes the key)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and k != "arms":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def scenario_dict(**overrides) -> dict:
    """BASE with top-level overrides (nested dicts merge; `arms` replaces)."""
    return _merge(BASE, overrides)


def make_scenario(**overrides) -> scenario.LoadedScenario:
    """A validated LoadedScenario from BASE plus overrides, without touching the scenario library."""
    data = scenario_dict(**overrides)
    s, arms = scenario.parse(data, "<test>")
    return scenario.LoadedScenario(scenario=s, path="<test>", text=yaml.safe_dump(data), sha256="test",
                                   arms=arms)


def run_arms(loaded: scenario.LoadedScenario, replicates: int | None = None, arms=None) -> dict:
    """{arm: [RunRecords per replicate]} for the scenario (common random numbers across arms)."""
    n = replicates or loaded.scenario.replicates
    arms = list(arms or loaded.scenario.arms)
    return {a: [runner.run_task(loaded, runner.Task(a, r)) for r in range(n)] for a in arms}


def participants(runs: list) -> pd.DataFrame:
    """Participant frames of several replicates stacked, with a `replicate` column."""
    return pd.concat([r.participants.assign(replicate=r.replicate) for r in runs], ignore_index=True)


def weekly(runs: list) -> pd.DataFrame:
    return pd.concat([r.weekly.assign(replicate=r.replicate) for r in runs], ignore_index=True)


def mean_weekly_severity(runs: list, week: int) -> float:
    """Arm mean severity at a week, averaged over replicates."""
    return float(np.mean([r.weekly.loc[r.weekly.week == week, "severity"].mean() for r in runs]))


@pytest.fixture
def make():
    """Fixture form of make_scenario."""
    return make_scenario


# A two-arm scenario file small enough for command-line, store and report tests.
TINY = textwrap.dedent("""\
    # Question: a tiny trial for tests
    name: tiny
    seed: 7
    replicates: 2
    weeks: 4
    follow_up_weeks: 2
    population: {size: 30}
    arms:
      usual_care: {}
      exercise:
        prescription: {sessions_per_week: 3, minutes: 30, intensity: 0.5}
        support: {kind: partner}
    checks:
      - {id: some_dropout, metric: dropout_rate, arm: exercise, week: 4, accept: [0, 1]}
    """)
