"""Records of a finished run as pandas frames: arm-level days, participant endpoints, weekly panel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.model.model import AdherenceModel
from sim.vocabulary import HABIT_LEVELS

HABIT_COLUMNS = tuple(f"days_to_habit_{round(100 * level)}" for level in HABIT_LEVELS)

# Arm-level aggregates per day (day 0 = baseline); severity_sd has ddof=1. Response and remission
# use the scenario's outcome definitions, so effect sizes and rates at any week need no panel.
DAILY_COLUMNS = ("severity_mean", "severity_sd", "enrolled_share", "exercising_share", "minutes_mean",
                 "response_share", "remission_share")


@dataclass
class RunRecords:
    """Everything one run (scenario x arm x replicate) produced."""

    scenario: str
    arm: str
    replicate: int
    seed: str
    daily: pd.DataFrame
    participants: pd.DataFrame
    weekly: pd.DataFrame | None  # the per-participant weekly panel, when asked for
    wall_seconds: float = 0.0


def from_model(model: AdherenceModel, replicate: int, seed: str, wall_seconds: float = 0.0,
               panel: bool = True) -> RunRecords:
    """Turn a finished model into records (with the weekly panel if `panel`)."""
    sc = model.loaded.scenario
    daily = pd.DataFrame(model.daily, columns=list(DAILY_COLUMNS))
    daily.insert(0, "day", np.arange(model.days + 1))
    st, eop = model.state, model.end_of_programme
    prog_w, fu_w = sc.weeks, sc.follow_up_weeks
    minutes = model.minutes_weekly
    dropout_day = np.where(st.dropout_day >= 0, st.dropout_day + 1, np.nan)  # 1-based day of dropout
    coef = model.coef
    control = lambda s: np.clip(s.C0 + coef.plasticity_control_gain * s.P + s.M, 0, 1)  # noqa: E731
    reward = lambda s: np.clip(s.R0 + coef.plasticity_reward_sensitization * s.P, 0, 1)  # noqa: E731
    parts = pd.DataFrame({
        "pid": np.arange(model.n),
        "subgroup": model.cohort.subgroup.astype(str),
        **{k: v for k, v in model.cohort.traits.items()},
        "habit_rate": model.cohort.habit_rate,
        "augmented": model.plan.augmented,
        "dropout_day": dropout_day,
        "sessions_planned": model.planned_count,
        "sessions_done": model.done_count,
        "adherence": np.where(model.planned_count > 0, model.done_count / np.maximum(model.planned_count, 1), np.nan),
        "minutes_per_week_programme": minutes[:, :prog_w].mean(axis=1),
        "minutes_per_week_follow_up": minutes[:, prog_w:].mean(axis=1) if fu_w else np.nan,
        "severity_end_programme": model.severity_weekly[:, prog_w],
        "severity_end": model.severity_weekly[:, -1],
        "self_efficacy_end_programme": eop.E,
        "habit_end_programme": eop.H,
        "reserve_end_programme": eop.P,
        "cognitive_control_end_programme": control(eop),
        "reward_sensitivity_end_programme": reward(eop),
        **dict(zip(HABIT_COLUMNS, model.days_to_habit().T)),
    })
    weekly = None
    if panel:
        n, weeks = model.severity_weekly.shape
        weekly = pd.DataFrame({
            "pid": np.repeat(np.arange(n), weeks),
            "week": np.tile(np.arange(weeks), n),
            "severity": model.severity_weekly.ravel(),
            "minutes": np.column_stack([np.zeros(n), minutes]).ravel(),
        })
    return RunRecords(scenario=sc.name, arm=model.arm, replicate=replicate, seed=seed, daily=daily,
                      participants=parts, weekly=weekly, wall_seconds=wall_seconds)
