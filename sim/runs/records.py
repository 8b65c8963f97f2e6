"""Records of a finished run as pandas frames: arm-level days, participant endpoints, the trial's
assessments and the weekly panel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim import scales
from sim.model.dynamics import current_reward_control
from sim.model.model import AdherenceModel
from sim.vocabulary import HABIT_LEVELS, TRAITS

HABIT_COLUMNS = tuple(f"days_to_habit_{round(100 * level)}" for level in HABIT_LEVELS)
# each baseline trait as the trial measured it (with the measure's reliability), next to its true value
MEASURED_COLUMNS = tuple(f"measured_{t}" for t in TRAITS)

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
    assessments: pd.DataFrame  # pid, week, score: the trial's assessments (rows only where one was made)
    wall_seconds: float = 0.0


def from_model(model: AdherenceModel, replicate: int, seed: str, wall_seconds: float = 0.0,
               panel: bool = True) -> RunRecords:
    """Turn a finished model into records (with the weekly panel if `panel`).

    The assessments are always recorded: one row per participant and scheduled week at which the trial
    assessed them (score on the scenario's scale, rater error included); a participant who left the trial
    has no rows after it."""
    sc = model.loaded.scenario
    daily = pd.DataFrame(model.daily, columns=list(DAILY_COLUMNS))
    daily.insert(0, "day", np.arange(model.days + 1))
    st, eop = model.state, model.end_of_programme
    prog_w, fu_w = sc.weeks, sc.follow_up_weeks
    dropout_day = np.where(st.dropout_day >= 0, st.dropout_day + 1, np.nan)  # 1-based day of dropout
    coef = model.coef
    reward_eop, control_eop = current_reward_control(eop, coef)
    parts = pd.DataFrame({
        "pid": np.arange(model.n),
        "subgroup": model.cohort.subgroup.astype(str),
        **{k: v for k, v in model.cohort.traits.items()},
        **{f"measured_{t}": model.cohort.measured[t] for t in TRAITS},
        "habit_rate": model.cohort.habit_rate,
        "augmented": model.plan.augmented,
        "dropout_day": dropout_day,
        "sessions_planned": model.planned_count,
        "sessions_done": model.done_count,
        "adherence": np.where(model.planned_count > 0, model.done_count / np.maximum(model.planned_count, 1), np.nan),
        "minutes_per_week_programme": model.minutes_programme / prog_w,
        "minutes_per_week_follow_up": model.minutes_follow_up / fu_w if fu_w else np.nan,
        "severity_end_programme": scales.from_internal(sc.outcomes.scale, eop.S),
        "severity_end": scales.from_internal(sc.outcomes.scale, st.S),
        "self_efficacy_end_programme": eop.E,
        "habit_end_programme": eop.H,
        "reserve_end_programme": eop.P,
        "cognitive_control_end_programme": control_eop,
        "reward_sensitivity_end_programme": reward_eop,
        **dict(zip(HABIT_COLUMNS, model.days_to_habit().T)),
    })
    weekly = None
    if panel:
        severity, minutes = model.severity_weekly, model.minutes_weekly
        n, weeks = severity.shape
        weekly = pd.DataFrame({
            "pid": np.repeat(np.arange(n), weeks),
            "week": np.tile(np.arange(weeks), n),
            "severity": severity.ravel(),
            "minutes": np.column_stack([np.zeros(n), minutes]).ravel(),
            "sessions": np.column_stack([np.zeros(n, int), model.sessions_weekly]).ravel().astype(int),
        })
    return RunRecords(scenario=sc.name, arm=model.arm, replicate=replicate, seed=seed, daily=daily,
                      participants=parts, weekly=weekly, assessments=assessments_frame(model),
                      wall_seconds=wall_seconds)


def assessments_frame(model: AdherenceModel) -> pd.DataFrame:
    """The trial's assessments as rows (pid, week, score), participants in order, weeks ascending; a
    participant not assessed at a week (gone from the trial) has no row for it."""
    scores = np.asarray(model.assessed, float)
    n, k = scores.shape
    out = pd.DataFrame({"pid": np.repeat(np.arange(n), k), "week": np.tile(np.asarray(model.assessment_weeks, int), n),
                        "score": scores.ravel()})
    return out[out.score.notna()].reset_index(drop=True)
